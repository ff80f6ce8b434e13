#!/usr/bin/env python3
"""Fuzz a live `ninep serve` while a canary client checks that nothing it stored is hurt.

Several connections send ``--frames`` frames in all: well-formed messages of
every T-type whose integer fields take extreme values (0, 1, 2^31±1, 2^32-1,
2^63±1, 2^64-1, clamped to the field's width) and random ones, those frames
mutated (bit flips, overwritten integers, bad size fields, truncation,
garbage tails), and random bytes. Frames are built with the sans-I/O codec
(``ninep_server.protocol``); replies are read and discarded. A connection
the server closes is opened again. Each connection works in the dataset
``main``.

Meanwhile a canary client (dataset ``canary``, which no fuzzed frame names)
creates, writes, fsyncs, reads back, renames and unlinks files, comparing
every byte with what it wrote. At the end the canary re-reads everything,
the server is stopped with SIGTERM, `ninep fsck` checks the store, and the
canary's files are read once more from the stopped store.

Passes when: zero canary errors, the server never died (and exited 0),
fsck is clean and the canary's files survived the restart. Figures go to
``bench/results/fuzz-live.md`` and ``.json`` (``--out``, ``--name``).

    python bench/fuzz_live.py [--frames 1000000] [--connections 4] [--seed N]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import struct
import sys
import time
import typing
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import trio  # noqa: E402

from bench import livecheck  # noqa: E402
from bench.servers import BenchError, Ninep, tempdir  # noqa: E402
from ninep_server import protocol as p  # noqa: E402
from ninep_server.client import connect  # noqa: E402

EXTREMES = (0, 1, 2**31 - 1, 2**31, 2**31 + 1, 2**32 - 1, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1)
WIDTH = {"B": 8, "H": 16, "I": 32, "Q": 64}
FUZZ_MSIZE = 16384  # small: bounds the data a fuzzed Twrite can store
NAMES = (b"", b".", b"..", b"/", b"a/b", b"nul\x00x", b".snapshots", b"f0", b"f1", b"f2", b"d0", b"d1",
         b"\xff\xfe", b"x" * 255, b"y" * 256, b"..." , b"lnk", b"fifo")
ANAMES = (b"", b"main", b"nosuch", b"main/..", b"\x00")
VERSIONS = (b"9P2000.L", b"9P2000.L", b"9P2000", b"9P2000.Lx", b"", b"9P2000.L\x00")
T_TYPES = [c for c in p.ALL_MESSAGES if c.__name__.startswith("T")]
CANARY = "canary"


def _kinds(cls) -> list[tuple[str, str]]:
    """(field name, wire kind) of a message class, from its annotations (the codec's source of truth)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return [(f.name, hints[f.name].__metadata__[0]) for f in dataclasses.fields(cls) if f.name != "tag"]


KINDS = {cls: _kinds(cls) for cls in T_TYPES}


class FrameMaker:
    """Random frames: well-formed with extreme values, mutated, or garbage."""

    def __init__(self, rng: random.Random):
        self.r = rng
        self.fids = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, p.NOFID]
        weights = []
        for cls in T_TYPES:
            name = cls.__name__
            weights.append(0.05 if name == "Tversion" else 0.5 if name in ("Tattach", "Tauth") else 1.0)
        self.weights = weights

    def integer(self, kind: str, name: str) -> int:
        r = self.r
        width = WIDTH[kind]
        if name in ("fid", "newfid", "dfid", "afid", "olddirfid", "newdirfid", "dirfid") and r.random() < 0.8:
            return r.choice(self.fids)
        x = r.random()
        if x < 0.5:
            v = r.choice(EXTREMES)
            return v if v < 1 << width else (1 << width) - 1 - r.choice((0, 1))
        if x < 0.75:
            return r.randrange(1 << width)
        return r.randrange(0, 4096)

    def value(self, kind: str, name: str):
        r = self.r
        if kind in WIDTH:
            return self.integer(kind, name)
        if kind == "qid":
            return p.Qid(r.randrange(256), r.randrange(1 << 32), r.choice(EXTREMES))
        if kind == "s":
            if name == "aname":
                return r.choice(ANAMES)
            if name == "version":
                return r.choice(VERSIONS)
            if r.random() < 0.85:
                return r.choice(NAMES)
            return bytes(r.randrange(256) for _ in range(r.randrange(0, 40)))
        if kind == "d":
            n = r.choice((0, 1, 7, 4096, FUZZ_MSIZE - 23, FUZZ_MSIZE - 24, r.randrange(0, FUZZ_MSIZE)))
            return bytes([r.randrange(256)]) * n  # one byte repeated: fuzzed writes dedup to little
        if kind == "names":
            return [r.choice(NAMES) for _ in range(r.choice((0, 1, 2, 16, 17, r.randrange(0, 20))))]
        return [p.Qid(0, 0, 0)] * r.randrange(0, 3)

    def message(self) -> p.Message:
        cls = self.r.choices(T_TYPES, self.weights)[0]
        msg = cls(**{n: self.value(k, n) for n, k in KINDS[cls]})
        msg.tag = self.r.choice((0, 1, 2, 3, p.NOTAG, self.r.randrange(SYNC_TAG)))
        return msg

    def valid(self) -> bytes:
        while True:
            try:
                return p.encode(self.message())
            except ValueError:
                continue  # a value the layout cannot carry (e.g. 2^16+ names): draw again

    def mutated(self) -> bytes:
        r = self.r
        frame = bytearray(self.valid())
        for _ in range(r.randrange(1, 4)):
            op = r.randrange(6)
            if op == 0 and frame:  # flip bits
                i = r.randrange(len(frame))
                frame[i] ^= 1 << r.randrange(8)
            elif op == 1 and len(frame) > 8:  # an extreme integer over any 2, 4 or 8 bytes
                w = r.choice((2, 4, 8))
                i = r.randrange(4, max(5, len(frame) - w))
                v = r.choice(EXTREMES) & ((1 << (8 * w)) - 1)
                frame[i:i + w] = v.to_bytes(w, "little")
            elif op == 2:  # the size field lies
                frame[0:4] = struct.pack("<I", r.choice((0, 1, 6, 7, len(frame) - 1, len(frame) + 1,
                                                          FUZZ_MSIZE + 1, 2**31, 2**32 - 1)))
            elif op == 3 and len(frame) > 7:  # truncated, size field patched to match
                frame = frame[:r.randrange(7, len(frame))]
                frame[0:4] = struct.pack("<I", len(frame))
            elif op == 4:  # garbage tail, size patched
                frame += bytes(r.randrange(256) for _ in range(r.randrange(1, 32)))
                frame[0:4] = struct.pack("<I", len(frame))
            else:  # another type number
                if len(frame) > 4:
                    frame[4] = r.randrange(256)
        return bytes(frame)

    def garbage(self) -> bytes:
        r = self.r
        body = bytes(r.randrange(256) for _ in range(r.randrange(0, 64)))
        size = len(body) + 7 if r.random() < 0.8 else r.choice(EXTREMES) & 0xFFFFFFFF
        return struct.pack("<IBH", size, r.randrange(256), r.randrange(1 << 16)) + body

    def frame(self) -> bytes:
        x = self.r.random()
        if x < 0.55:
            return self.valid()
        if x < 0.9:
            return self.mutated()
        return self.garbage()


@dataclasses.dataclass
class Stats:
    frames: int = 0           # frames the server read (see fuzz_connection)
    bytes: int = 0
    connections: int = 0
    closed_by_server: int = 0
    stalls: int = 0           # batches neither answered nor closed within the timeout
    replies: int = 0


async def _preamble(stream) -> None:
    """Tversion + Tattach as root to ``main`` on fid 0, so fuzzed frames reach real files."""
    await stream.send_all(p.encode(p.Tversion(msize=FUZZ_MSIZE, version=p.VERSION_9P2000L, tag=p.NOTAG))
                          + p.encode(p.Tattach(fid=0, afid=p.NOFID, uname=b"root", aname=b"", n_uname=0, tag=1)))


SYNC_TAG = 0xFFFE    # never used by a fuzzed frame: the reply to the batch's sentinel
SYNC_FID = 0xFFFFFFFE


def hostile(frame: bytes) -> bool:
    """Whether the server must drop the connection on this frame (it cannot be framed,
    or is a reply) rather than answer it: such a frame may only end a batch."""
    if len(frame) < 7:
        return True
    size, type_, _ = struct.unpack_from("<IBH", frame)
    return size != len(frame) or size > FUZZ_MSIZE or type_ % 2 == 1


async def fuzz_connection(address: str, quota: int, seed: int, stats: Stats, batch: int = 48,
                          timeout: float = 10.0) -> None:
    """Send ``quota`` frames over one connection, reconnecting whenever the server closes it.

    Frames go in batches, each followed by a sentinel (Tclunk of an unused
    fid, tag ``SYNC_TAG``); the next batch waits for its reply or for the
    server to close, so the count is of frames the server read, not of bytes
    left in a dead socket. A frame that makes the server drop the connection
    (:func:`hostile`) only ever ends a batch, after the sentinel; the
    connection is then opened again.
    """
    host, port = address[4:].rsplit(":", 1)
    maker = FrameMaker(random.Random(seed))
    sentinel = p.encode(p.Tclunk(fid=SYNC_FID, tag=SYNC_TAG))
    sent = 0
    tags = iter(range(1 << 62))

    def own_tag(frame: bytes) -> bytes:
        # Mostly a tag of its own: a tag reused while in flight closes the
        # connection (correctly), which would cut batches short. A few keep
        # the fuzzed one; Tversion keeps NOTAG.
        if len(frame) < 7 or frame[4] == p.MsgType.TVERSION or maker.r.random() < 0.03:
            return frame
        return frame[:5] + struct.pack("<H", 16 + next(tags) % 0xFF00) + frame[7:]

    while sent < quota:
        stream = await trio.open_tcp_stream(host, int(port))
        stats.connections += 1
        synced = [0]
        wake = trio.Event()
        closed = [False]

        async def drain():
            buf = bytearray()
            try:
                while data := await stream.receive_some(1 << 16):
                    buf += data
                    while len(buf) >= 7:
                        size, _, tag = struct.unpack_from("<IBH", buf)
                        if len(buf) < size:
                            break
                        del buf[:max(size, 7)]
                        stats.replies += 1
                        if tag == SYNC_TAG:
                            synced[0] += 1
                            wake.set()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            closed[0] = True
            wake.set()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                await _preamble(stream)
                batches = 0
                while sent < quota and not closed[0]:
                    n = min(batch, quota - sent)
                    frames = [f for f in (maker.frame() for _ in range(n * 2)) if not hostile(f)][:n - 1]
                    frames.append(maker.frame())  # the last one may be hostile
                    frames = [own_tag(f) for f in frames[:n]]
                    if maker.r.random() < 0.02:  # now and then, start over cleanly
                        frames.insert(0, p.encode(p.Tversion(msize=FUZZ_MSIZE, version=p.VERSION_9P2000L,
                                                             tag=p.NOTAG)))
                        frames.insert(1, p.encode(p.Tattach(fid=0, afid=p.NOFID, uname=b"root", aname=b"",
                                                            n_uname=0, tag=1)))
                    last = frames.pop() if hostile(frames[-1]) else b""
                    blob = b"".join(frames) + sentinel + last
                    wake = trio.Event()
                    try:
                        await stream.send_all(blob)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        break  # closed by an earlier batch's last frame: this one was not read
                    batches += 1
                    with trio.move_on_after(timeout) as waited:
                        while synced[0] < batches and not closed[0]:
                            await wake.wait()
                            wake = trio.Event()
                    if waited.cancelled_caught:
                        stats.stalls += 1  # e.g. a size field that swallowed the sentinel
                        break
                    n = len(frames) + (1 if last else 0)
                    sent += n
                    stats.frames += n
                    stats.bytes += len(blob) - len(sentinel)
                    if last:
                        break  # it was read after the sentinel (bytes before EOF always are): start over
                nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            if closed[0]:
                stats.closed_by_server += 1
            await stream.aclose()


@dataclasses.dataclass
class Canary:
    """Writes, fsyncs and verifies files in its own dataset; every surprise is an error."""

    address: str
    seed: int
    ops: int = 0
    errors: list = dataclasses.field(default_factory=list)
    files: dict = dataclasses.field(default_factory=dict)  # name -> content

    def fail(self, what: str) -> None:
        if len(self.errors) < 50:
            self.errors.append(what)
        else:
            self.errors.append("...")

    async def run(self, stop: trio.Event) -> None:
        r = random.Random(self.seed)
        serial = 0
        try:
            async with connect(self.address, uname=b"root", n_uname=0, aname=CANARY.encode()) as c:
                while not stop.is_set():
                    x = r.random()
                    try:
                        if x < 0.45 or len(self.files) < 4:
                            name = f"c{serial}"
                            serial += 1
                            data = r.randbytes(r.choice((0, 1, 100, 4096, 131072, 131073, r.randrange(300_000))))
                            await c.write_file(name, data, fsync=True)
                            self.files[name] = data
                        elif x < 0.6:
                            name = r.choice(sorted(self.files))
                            data = bytearray(self.files[name])
                            off = r.randrange(len(data) + 1)
                            patch = r.randbytes(r.randrange(1, 70_000))
                            f = await c.open(name, p.OpenFlags.RDWR)
                            try:
                                await c.write_all(f.fid, patch, offset=off)
                                await c.fsync(f.fid)
                            finally:
                                await c.clunk(f.fid)
                            data[off:off + len(patch)] = patch
                            self.files[name] = bytes(data)
                        elif x < 0.8:
                            name = r.choice(sorted(self.files))
                            got = await c.read_file(name)
                            if got != self.files[name]:
                                self.fail(f"{name}: read {len(got)} bytes that differ from the "
                                          f"{len(self.files[name])} written")
                        elif x < 0.9:
                            old = r.choice(sorted(self.files))
                            new = f"r{serial}"
                            serial += 1
                            await c.renameat(c.root_fid, old.encode(), c.root_fid, new.encode())
                            self.files[new] = self.files.pop(old)
                        else:
                            name = r.choice(sorted(self.files))
                            await c.unlink(name)
                            del self.files[name]
                        self.ops += 1
                    except Exception as exc:  # noqa: BLE001 - any failure of the canary is the finding
                        self.fail(f"op {self.ops}: {type(exc).__name__}: {exc}")
                        await trio.sleep(0.05)
                for name, data in sorted(self.files.items()):
                    got = await c.read_file(name)
                    self.ops += 1
                    if got != data:
                        self.fail(f"final check: {name} differs")
        except Exception as exc:  # noqa: BLE001
            self.fail(f"canary connection: {type(exc).__name__}: {exc}")


async def _run_live(server: Ninep, frames: int, connections: int, seed: int, canary: Canary,
                    min_canary_ops: int) -> dict:
    stats = Stats()
    stop = trio.Event()
    t0 = time.monotonic()
    alive_checks = [0, 0]

    async def watch():
        while not stop.is_set():
            alive_checks[0] += 1
            if not server.alive():
                alive_checks[1] += 1
                stop.set()
                return
            await trio.sleep(0.5)

    async def canary_at_least(n: int) -> None:
        while canary.ops < n and not canary.errors and not stop.is_set():
            await trio.sleep(0.02)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(canary.run, stop)
        nursery.start_soon(watch)
        await canary_at_least(1)  # the canary works before the first fuzzed frame
        t0 = time.monotonic()
        async with trio.open_nursery() as fuzzers:
            share = [frames // connections + (1 if i < frames % connections else 0) for i in range(connections)]
            for i, quota in enumerate(share):
                fuzzers.start_soon(fuzz_connection, server.address, quota, seed * 1000 + i, stats)
        fuzz_seconds = time.monotonic() - t0
        await canary_at_least(min_canary_ops)  # short runs: enough canary work to mean something
        stop.set()
    return {"stats": stats, "fuzz_seconds": fuzz_seconds, "died_during_run": alive_checks[1] > 0}


def _verify_after_restart(store: Path, files: dict) -> list[str]:
    from cas import Store

    bad = []
    with Store.open(str(store)) as s:
        vol = s.volume(CANARY)
        for name, data in files.items():
            try:
                ino = vol.lookup(vol.root, name.encode()).ino
                got = vol.read(ino, 0, len(data) + 1)
            except OSError as exc:
                bad.append(f"{name}: {exc}")
                continue
            if got != data:
                bad.append(f"{name}: {len(got)} bytes differ from the {len(data)} fsynced")
    return bad


def run(frames: int, connections: int, seed: int, workdir: Path | None = None, min_canary_ops: int = 100) -> dict:
    """The whole run; returns the figures (see the module docstring)."""
    work = Path(workdir) if workdir else tempdir("ninep-fuzz-")
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store"
    t_start = time.monotonic()
    server = Ninep(store, work)
    peak = None
    try:
        livecheck.create_dataset(store, CANARY)
        canary = Canary(server.address, seed)
        live = trio.run(_run_live, server, frames, connections, seed, canary, min_canary_ops)
        alive = server.alive()
        peak = livecheck.peak_rss_mib(server.pid())
    finally:
        server.stop()
    exit_code = server.proc.returncode
    findings = livecheck.log_findings(server.log_path)
    fsck = livecheck.fsck(store)
    lost = _verify_after_restart(store, canary.files) if fsck["exit"] in (0, 1) else ["store did not open"]
    stats: Stats = live["stats"]
    result = {
        "frames_sent": stats.frames,
        "frames_per_s": round(stats.frames / live["fuzz_seconds"], 1) if live["fuzz_seconds"] else 0,
        "bytes_sent": stats.bytes,
        "connections": connections,
        "connections_opened": stats.connections,
        "connections_closed_by_server": stats.closed_by_server,
        "canary_ops": canary.ops,
        "canary_errors": len(canary.errors),
        "canary_error_samples": canary.errors[:20],
        "canary_files_checked_after_restart": len(canary.files),
        "canary_files_lost_after_restart": lost,
        "server_alive": alive and not live["died_during_run"],
        "server_exit_code": exit_code,
        "server_peak_rss_mib": round(peak, 1) if peak else None,
        "fsck_clean": fsck["clean"],
        "fsck": fsck,
        "server_log": findings,
        "fuzz_seconds": round(live["fuzz_seconds"], 1),
        "duration_seconds": round(time.monotonic() - t_start, 1),
        "seed": seed,
    }
    result["passed"] = (result["canary_errors"] == 0 and result["server_alive"] and exit_code == 0
                        and result["fsck_clean"] and not lost)
    if result["passed"] and not workdir:
        shutil.rmtree(work, ignore_errors=True)
    else:
        result["workdir"] = str(work)
    return result


def report(result: dict, out: Path, name: str) -> None:
    rows = [
        ("frames sent", f"{result['frames_sent']:,}"),
        ("frames/s", f"{result['frames_per_s']:,.0f}"),
        ("connections (opened in all; closed by the server)",
         f"{result['connections']} ({result['connections_opened']}; {result['connections_closed_by_server']})"),
        ("canary operations", f"{result['canary_ops']:,}"),
        ("canary errors", result["canary_errors"]),
        ("canary files intact after restart",
         f"{result['canary_files_checked_after_restart'] - len(result['canary_files_lost_after_restart'])}"
         f" of {result['canary_files_checked_after_restart']}"),
        ("server alive throughout", result["server_alive"]),
        ("server exit status after SIGTERM", result["server_exit_code"]),
        ("server peak RSS (VmHWM)", f"{result['server_peak_rss_mib']} MiB"),
        ("fsck", "clean" if result["fsck_clean"] else "DAMAGED"),
        ("server log: errors / warnings", f"{result['server_log']['errors']} / {result['server_log']['warnings']}"),
        ("fuzzing time", f"{result['fuzz_seconds']} s"),
        ("whole run", f"{result['duration_seconds']} s"),
        ("verdict", "PASS" if result["passed"] else "FAIL"),
    ]
    sections = [
        ("Canary errors", [f"- {e}" for e in result["canary_error_samples"]]),
        ("fsck damage", [f"- {d}" for d in result["fsck"].get("damage", [])]),
    ]
    intro = (f"`python bench/fuzz_live.py --frames {result['frames_sent']} --connections {result['connections']} "
             f"--seed {result['seed']}`: random, mutated and extreme-valued 9P2000.L frames against a live "
             "`ninep serve`, while a canary client writes, fsyncs and verifies files in its own dataset.")
    livecheck.write_results(out, name, "Live fuzzing", intro, rows, result, sections)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000, help="frames to send in all (default 1,000,000)")
    ap.add_argument("--connections", type=int, default=4, help="fuzzing connections (default 4)")
    ap.add_argument("--json", action="store_true", help="also print the figures as JSON")
    livecheck.add_common_options(ap, "fuzz-live")
    args = ap.parse_args(argv)
    seed = livecheck.seed_of(args)
    try:
        result = run(args.frames, args.connections, seed, Path(args.workdir) if args.workdir else None)
    except BenchError as exc:
        print(f"fuzz_live: {exc}", file=sys.stderr)
        return 2
    result["note"] = args.note
    report(result, Path(args.out), args.name)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(f"{result['frames_sent']:,} frames at {result['frames_per_s']:,.0f}/s; canary {result['canary_ops']:,} ops, "
              f"{result['canary_errors']} errors; server alive {result['server_alive']}; fsck "
              f"{'clean' if result['fsck_clean'] else 'DAMAGED'}: {'PASS' if result['passed'] else 'FAIL'}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
