#!/usr/bin/env python3
"""Soak a live `ninep serve`: many concurrent clients for a long time, every byte verified.

``--clients`` connections (default 64, each with the project's async client,
``ninep_server.client``) work for ``--duration`` seconds (default 600), each
in its own directory of dataset ``main``: create and write files (sizes from
empty to several chunks; at most 48 per client, so disk use stays bounded), overwrite parts of them, read them back, rename,
unlink and fsync, checking every read against what the client wrote. At the
end every client re-reads all its files, the server is stopped with
SIGTERM, `ninep fsck` checks the store, and every file is read once more from
the stopped store.

Reports operations per second, errors (must be 0) and the server's peak RSS
(VmHWM from /proc/PID/status), to ``bench/results/soak.md`` and ``.json``.

    python bench/soak.py [--clients 64] [--duration 600] [--seed N]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import trio  # noqa: E402

from bench import livecheck  # noqa: E402
from bench.servers import BenchError, Ninep, tempdir  # noqa: E402
from ninep_server import protocol as p  # noqa: E402
from ninep_server.client import connect  # noqa: E402

SIZES = (0, 1, 100, 4096, 65536, 131071, 131072, 131073, 300_000, 1 << 20)
MAX_FILES = 48  # per client


@dataclasses.dataclass
class Worker:
    """One client: its own directory, a model of its files, counters."""

    index: int
    rng: random.Random
    files: dict = dataclasses.field(default_factory=dict)   # name -> bytes
    ops: Counter = dataclasses.field(default_factory=Counter)
    errors: list = dataclasses.field(default_factory=list)
    serial: int = 0

    @property
    def dir(self) -> str:
        return f"c{self.index:03d}"

    def path(self, name: str) -> str:
        return f"{self.dir}/{name}"

    def fail(self, what: str) -> None:
        self.errors.append(what)

    async def step(self, c) -> None:
        r = self.rng
        x = r.random()
        if len(self.files) >= MAX_FILES:
            x = 0.95  # bounded disk use over long runs: unlink instead
        if x < 0.30 or len(self.files) < 3:
            name = f"f{self.serial}"
            self.serial += 1
            data = r.randbytes(r.choice(SIZES) if r.random() < 0.7 else r.randrange(200_000))
            sync = r.random() < 0.3
            await c.write_file(self.path(name), data, fsync=sync)
            self.files[name] = data
            self.ops["create+write" + ("+fsync" if sync else "")] += 1
        elif x < 0.45:
            name = r.choice(sorted(self.files))
            data = bytearray(self.files[name])
            off = r.randrange(len(data) + 1)
            patch = r.randbytes(r.randrange(1, 150_000))
            f = await c.open(self.path(name), p.OpenFlags.RDWR)
            try:
                await c.write_all(f.fid, patch, offset=off)
                if r.random() < 0.5:
                    await c.fsync(f.fid)
                    self.ops["fsync"] += 1
            finally:
                await c.clunk(f.fid)
            data[off:off + len(patch)] = patch
            self.files[name] = bytes(data)
            self.ops["overwrite"] += 1
        elif x < 0.75:
            name = r.choice(sorted(self.files))
            got = await c.read_file(self.path(name))
            if got != self.files[name]:
                self.fail(f"{self.path(name)}: read {len(got)} bytes that differ from the "
                          f"{len(self.files[name])} written")
            self.ops["read+verify"] += 1
        elif x < 0.87:
            old = r.choice(sorted(self.files))
            new = f"r{self.serial}"
            self.serial += 1
            async with c.fid(self.dir) as d:
                await c.renameat(d, old.encode(), d, new.encode())
            self.files[new] = self.files.pop(old)
            self.ops["rename"] += 1
        else:
            name = r.choice(sorted(self.files))
            await c.unlink(self.path(name))
            del self.files[name]
            self.ops["unlink"] += 1

    async def run(self, address: str, deadline: float) -> None:
        try:
            async with connect(address, uname=b"root", n_uname=0) as c:
                await c.makedirs(self.dir)
                while time.monotonic() < deadline:
                    try:
                        await self.step(c)
                    except Exception as exc:  # noqa: BLE001 - any failure is what the soak looks for
                        self.fail(f"{type(exc).__name__}: {exc}")
                        await trio.sleep(0.05)
                for name, data in sorted(self.files.items()):
                    try:
                        got = await c.read_file(self.path(name))
                    except Exception as exc:  # noqa: BLE001
                        self.fail(f"final check {self.path(name)}: {type(exc).__name__}: {exc}")
                        continue
                    if got != data:
                        self.fail(f"final check: {self.path(name)} differs")
                    self.ops["final read+verify"] += 1
        except Exception as exc:  # noqa: BLE001
            self.fail(f"connection: {type(exc).__name__}: {exc}")


async def _soak(server: Ninep, workers: list[Worker], duration: float) -> dict:
    samples: list[tuple[float, float]] = []
    t0 = time.monotonic()
    deadline = t0 + duration
    died = [False]

    async def watch(stop: trio.Event):
        while not stop.is_set():
            if not server.alive():
                died[0] = True
                return
            rss = _rss_mib(server.pid())
            if rss is not None:
                samples.append((round(time.monotonic() - t0, 1), rss))
            with trio.move_on_after(max(1.0, duration / 60)):
                await stop.wait()

    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch, stop)
        async with trio.open_nursery() as clients:
            for w in workers:
                clients.start_soon(w.run, server.address, deadline)
        seconds = time.monotonic() - t0
        stop.set()
    return {"seconds": seconds, "rss_samples": samples, "died": died[0]}


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _verify_after_restart(store: Path, workers: list[Worker]) -> tuple[int, list[str]]:
    from cas import Store

    checked, bad = 0, []
    with Store.open(str(store)) as s:
        vol = s.volume("main")
        for w in workers:
            try:
                d = vol.lookup(vol.root, w.dir.encode()).ino
            except OSError as exc:
                bad.append(f"{w.dir}: {exc}")
                continue
            for name, data in w.files.items():
                checked += 1
                try:
                    got = vol.read(vol.lookup(d, name.encode()).ino, 0, len(data) + 1)
                except OSError as exc:
                    bad.append(f"{w.path(name)}: {exc}")
                    continue
                if got != data:
                    bad.append(f"{w.path(name)}: differs after restart")
    return checked, bad


def run(clients: int, duration: float, seed: int, workdir: Path | None = None) -> dict:
    work = Path(workdir) if workdir else tempdir("ninep-soak-")
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store"
    t_start = time.monotonic()
    workers = [Worker(i, random.Random(seed * 1000 + i)) for i in range(clients)]
    server = Ninep(store, work)
    try:
        soak = trio.run(_soak, server, workers, duration)
        alive = server.alive() and not soak["died"]
        peak = livecheck.peak_rss_mib(server.pid())
    finally:
        server.stop()
    exit_code = server.proc.returncode
    fsck = livecheck.fsck(store)
    checked, lost = _verify_after_restart(store, workers) if fsck["exit"] in (0, 1) else (0, ["store did not open"])
    ops: Counter = Counter()
    for w in workers:
        ops.update(w.ops)
    during = sum(n for k, n in ops.items() if not k.startswith("final"))
    errors = [e for w in workers for e in w.errors]
    rss = [r for _, r in soak["rss_samples"]]
    result = {
        "clients": clients,
        "duration_requested": duration,
        "duration_seconds": round(soak["seconds"], 1),
        "ops": during,
        "ops_per_s": round(during / soak["seconds"], 1) if soak["seconds"] else 0,
        "ops_by_kind": dict(sorted(ops.items())),
        "errors": len(errors),
        "error_samples": errors[:20],
        "files_at_end": sum(len(w.files) for w in workers),
        "bytes_at_end": sum(len(d) for w in workers for d in w.files.values()),
        "files_checked_after_restart": checked,
        "files_lost_after_restart": lost[:20],
        "server_alive": alive,
        "server_exit_code": exit_code,
        "server_peak_rss_mib": round(peak, 1) if peak else None,
        "server_rss_mib_min_max": [min(rss), max(rss)] if rss else None,
        "rss_samples": soak["rss_samples"],
        "fsck_clean": fsck["clean"],
        "fsck": fsck,
        "server_log": livecheck.log_findings(server.log_path),
        "whole_run_seconds": round(time.monotonic() - t_start, 1),
        "seed": seed,
    }
    result["passed"] = (not errors and alive and exit_code == 0 and fsck["clean"] and not lost)
    if result["passed"] and not workdir:
        shutil.rmtree(work, ignore_errors=True)
    else:
        result["workdir"] = str(work)
    return result


def report(result: dict, out: Path, name: str) -> None:
    rows = [
        ("clients", result["clients"]),
        ("duration", f"{result['duration_seconds']} s"),
        ("operations", f"{result['ops']:,}"),
        ("operations/s", f"{result['ops_per_s']:,.0f}"),
        ("errors", result["errors"]),
        ("files at the end (bytes)", f"{result['files_at_end']:,} ({result['bytes_at_end']:,})"),
        ("files intact after restart",
         f"{result['files_checked_after_restart'] - len(result['files_lost_after_restart'])} of "
         f"{result['files_checked_after_restart']}"),
        ("server peak RSS (VmHWM)", f"{result['server_peak_rss_mib']} MiB"),
        ("server RSS sampled, min-max", f"{result['server_rss_mib_min_max']} MiB"),
        ("server alive throughout", result["server_alive"]),
        ("server exit status after SIGTERM", result["server_exit_code"]),
        ("fsck", "clean" if result["fsck_clean"] else "DAMAGED"),
        ("server log: errors / warnings", f"{result['server_log']['errors']} / {result['server_log']['warnings']}"),
        ("verdict", "PASS" if result["passed"] else "FAIL"),
    ]
    sections = [
        ("Operations by kind", [f"- {k}: {n:,}" for k, n in result["ops_by_kind"].items()]),
        ("Errors", [f"- {e}" for e in result["error_samples"]]),
        ("fsck damage", [f"- {d}" for d in result["fsck"].get("damage", [])]),
    ]
    intro = (f"`python bench/soak.py --clients {result['clients']} --duration {result['duration_requested']:g} "
             f"--seed {result['seed']}`: concurrent clients of `ninep_server.client` against a live `ninep serve`, "
             "each creating, writing, overwriting, reading (verified), renaming, unlinking and fsyncing files.")
    livecheck.write_results(out, name, "Soak", intro, rows, result, sections)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=64, help="concurrent clients (default 64)")
    ap.add_argument("--duration", type=float, default=600, help="seconds of work (default 600)")
    livecheck.add_common_options(ap, "soak")
    args = ap.parse_args(argv)
    seed = livecheck.seed_of(args)
    try:
        result = run(args.clients, args.duration, seed, Path(args.workdir) if args.workdir else None)
    except BenchError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    result["note"] = args.note
    report(result, Path(args.out), args.name)
    print(f"{result['clients']} clients, {result['duration_seconds']} s: {result['ops']:,} ops "
          f"({result['ops_per_s']:,.0f}/s), {result['errors']} errors, peak RSS {result['server_peak_rss_mib']} MiB, "
          f"fsck {'clean' if result['fsck_clean'] else 'DAMAGED'}: {'PASS' if result['passed'] else 'FAIL'}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
