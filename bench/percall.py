"""python -m bench.percall: what one request costs each server, in CPU.

A client with one request outstanding (diodls, ``ls -l``, an untar in a
guest: the kernel's v9fs waits for each reply before its next request) is
served at the speed of the server's cost per request, not of its
throughput. This benchmark sends requests one at a time from a blocking
socket (the project's sans-I/O codec, no event loop on the client side, so
the client adds little) and reads, from ``/proc/PID/stat``, the CPU the
server process spent on them: user time (the server's own code) and system
time (the kernel's share: socket reads and writes, waking the client, the
server's sleeps and wake-ups). Measured against ninep and diod in the same
run, repetitions interleaved, and against a floor (bench/floor.py): a bare
trio loop answering each request with a reply made in advance, the least
any trio 9P server spends per request. ninep's user time above the floor
is its own code; the floor is what CPython and trio cost on the machine.

The requests, each sent ``--requests`` times per repetition:

- ``getattr``: Tgetattr on the attached root;
- ``walk_clunk``: Twalk to a new fid (no names: a clone) then Tclunk of it,
  the two requests that surround every lookup;
- ``bad_fid``: Tgetattr on a fid never attached, answered with Rlerror
  (EBADF), so the error path is timed too;
- ``read``: Tread of ``READ_COUNT`` bytes (what diodcat asks for at msize
  64 KiB), sequential, round and round a ``READ_FILE_MIB`` MiB file of
  random bytes: the data path with every chunk held in memory (ninep) or in
  the page cache (diod).

Writes ``--out``/percall-<UTC time>.{md,json} (or ``--name``). CPU times
come in clock ticks (10 ms here): keep ``--requests`` in the thousands.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import socket
import time
from pathlib import Path
from statistics import median

from ninep_server import protocol as p

from . import report
from .servers import BenchError, Diod, Floor, Ninep, Server, process_cpu, rotate, tempdir

HERE = Path(__file__).resolve().parent
MSIZE = 65536
ROOT_FID, CLONE_FID, UNKNOWN_FID, FILE_FID = 1, 2, 99, 3
READ_FILE = "percall-read"
READ_FILE_MIB = 16
#: the most data one Tread or Twrite carries at MSIZE (diodcat's count): reads straddle chunks
READ_COUNT = MSIZE - p.IOHDRSZ
#: the servers measured, in the report's order
SERVERS = ("ninep", "diod", "floor")
#: measure -> what it sends
KINDS = {
    "getattr": "Tgetattr of the root",
    "walk_clunk": "Twalk (clone) + Tclunk",
    "bad_fid": "Tgetattr of an unknown fid (Rlerror)",
    "read": f"Tread of {READ_COUNT:,} bytes, sequential",
}


def _frames(kind: str) -> list[bytes]:
    """The frames one unit of ``kind`` sends; ``read`` lists one frame per offset, sent in turn."""
    if kind == "getattr":
        return [p.encode(p.Tgetattr(tag=1, fid=ROOT_FID, request_mask=p.GetattrMask.ALL))]
    if kind == "walk_clunk":
        return [p.encode(p.Twalk(tag=1, fid=ROOT_FID, newfid=CLONE_FID, wnames=[])),
                p.encode(p.Tclunk(tag=1, fid=CLONE_FID))]
    if kind == "bad_fid":
        return [p.encode(p.Tgetattr(tag=1, fid=UNKNOWN_FID, request_mask=p.GetattrMask.ALL))]
    if kind == "read":
        size = READ_FILE_MIB << 20
        return [p.encode(p.Tread(tag=1, fid=FILE_FID, offset=off, count=READ_COUNT))
                for off in range(0, size - READ_COUNT, READ_COUNT)]
    raise ValueError(kind)


def _per_unit(kind: str) -> int:
    """Requests one unit of ``kind`` sends."""
    return 1 if kind == "read" else len(_frames(kind))


class RawClient:
    """A blocking 9P2000.L client on one TCP connection: one request at a time."""

    def __init__(self, server: Server):
        host, port = server.address.split(":", 1)[1].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._frames = p.FrameBuffer(max_size=MSIZE)
        self.rpc(p.Tversion(tag=p.NOTAG, msize=MSIZE, version=p.VERSION_9P2000L))
        reply = self.rpc(p.Tattach(tag=1, fid=ROOT_FID, afid=p.NOFID, uname=b"root",
                                   aname=server.aname.encode(), n_uname=0))
        if not isinstance(reply, p.Rattach):
            raise BenchError(f"{server.kind}: attach failed: {reply}")

    def rpc(self, msg: p.Message) -> p.Message:
        self.sock.sendall(p.encode(msg))
        return p.decode(self._reply())

    def _reply(self) -> bytes:
        while (frame := self._frames.next_frame()) is None:
            got = self.sock.recv(1 << 20)
            if not got:
                raise BenchError("the server closed the connection")
            self._frames.feed(got)
        return frame

    def run(self, frames: list[bytes], requests: int) -> None:
        """Send ``requests`` frames, going round ``frames``, each after the previous one's reply."""
        k = len(frames)
        for i in range(requests):
            self.sock.sendall(frames[i % k])
            self._reply()

    def open_file(self, name: str) -> None:
        """Walk ``FILE_FID`` to ``name`` in the root and open it for reading."""
        for msg in (p.Twalk(tag=1, fid=ROOT_FID, newfid=FILE_FID, wnames=[name.encode()]),
                    p.Tlopen(tag=1, fid=FILE_FID, flags=0)):
            reply = self.rpc(msg)
            if isinstance(reply, p.Rlerror):
                raise BenchError(f"opening {name}: errno {reply.ecode}")

    def create_file(self, name: str, data: bytes) -> None:
        """Create ``name`` in the root with ``data`` (written in ``READ_COUNT`` pieces)."""
        msgs = [p.Twalk(tag=1, fid=ROOT_FID, newfid=FILE_FID, wnames=[]),
                p.Tlcreate(tag=1, fid=FILE_FID, name=name.encode(), flags=p.OpenFlags.RDWR,
                           mode=0o644, gid=0)]
        msgs += [p.Twrite(tag=1, fid=FILE_FID, offset=off, data=data[off:off + READ_COUNT])
                 for off in range(0, len(data), READ_COUNT)]
        msgs += [p.Tfsync(tag=1, fid=FILE_FID), p.Tclunk(tag=1, fid=FILE_FID)]
        for msg in msgs:
            reply = self.rpc(msg)
            if isinstance(reply, p.Rlerror):
                raise BenchError(f"writing {name}: errno {reply.ecode}")

    def close(self) -> None:
        self.sock.close()


def measure(server: Server, kind: str, units: int) -> dict[str, float]:
    """Microseconds per request: wall, server user CPU and server system CPU."""
    frames = _frames(kind)
    n = units * _per_unit(kind)
    client = RawClient(server)
    try:
        if kind == "read":
            client.open_file(READ_FILE)
        client.run(frames, max(len(frames), min(200, n)))          # warm up
        u0, s0 = process_cpu(server.pid())
        t0 = time.perf_counter()
        client.run(frames, n)
        wall = time.perf_counter() - t0
        u1, s1 = process_cpu(server.pid())
    finally:
        client.close()
    return {"wall_us": wall / n * 1e6, "user_us": (u1 - u0) / n * 1e6,
            "sys_us": (s1 - s0) / n * 1e6}


def markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [f"# Per-request cost, ninep and diod: {meta['started']}", "",
             f"One request outstanding, {meta['requests']:,} requests per measure, "
             f"{meta['reps']} interleaved repetitions, medians. Server CPU from /proc "
             f"(user: the server's own code; system: the kernel's part). *floor*: a bare "
             f"trio loop with replies made in advance (bench/floor.py), the least a trio "
             f"server spends per request. Load average "
             f"before {', '.join(f'{x:.2f}' for x in meta['load_before'])}, after "
             f"{', '.join(f'{x:.2f}' for x in meta['load_after'])}.", "",
             "| request | server | wall µs/request | user CPU µs | system CPU µs | CPU µs, ninep/diod |",
             "|---|---|---|---|---|---|"]
    for kind, desc in KINDS.items():
        by = results["figures"][kind]
        med = {srv: {k: median(r[k] for r in runs) for k in ("wall_us", "user_us", "sys_us")}
               for srv, runs in by.items()}
        cpu = {srv: m["user_us"] + m["sys_us"] for srv, m in med.items()}
        for srv in SERVERS:
            ratio = f"{cpu['ninep'] / cpu['diod']:.2f}" if srv == "ninep" and cpu.get("diod") else ""
            m = med[srv]
            lines.append(f"| {desc} | {srv} | {m['wall_us']:.1f} | {m['user_us']:.1f} | "
                         f"{m['sys_us']:.1f} | {ratio} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.percall", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=30_000, help="requests per measure (default 30000)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="where results go")
    ap.add_argument("--name", default=None, help="results file stem (default: percall-<UTC time>)")
    ap.add_argument("--dir", default=None, help="scratch directory (default: $TMPDIR)")
    ap.add_argument("--no-save", action="store_true", help="print the table only")
    args = ap.parse_args(argv)
    if args.requests < 1 or args.reps < 1:
        ap.error("--requests and --reps must be at least 1")
    started = _dt.datetime.now(_dt.timezone.utc)
    meta = {"started": started.strftime("%Y-%m-%d %H:%M UTC"), "requests": args.requests,
            "reps": args.reps, "load_before": os.getloadavg()}
    work = tempdir("bench-percall.", args.dir)
    figures: dict[str, dict[str, list[dict]]] = {k: {} for k in KINDS}
    servers: dict[str, Server] = {}
    try:
        export = work / "export"
        export.mkdir()
        content = os.urandom(READ_FILE_MIB << 20)
        (export / READ_FILE).write_bytes(content)
        servers["diod"] = Diod(export, work)
        servers["ninep"] = Ninep(work / "store", work)
        servers["floor"] = Floor(work)
        writer = RawClient(servers["ninep"])
        try:
            writer.create_file(READ_FILE, content)
        finally:
            writer.close()
        for r in range(args.reps):
            for kind in KINDS:
                for name in rotate(list(servers), r):
                    units = args.requests // _per_unit(kind) or 1
                    figures[kind].setdefault(name, []).append(measure(servers[name], kind, units))
    finally:
        for srv in servers.values():
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    meta["load_after"] = os.getloadavg()
    results = {"meta": meta, "figures": figures}
    md = markdown(results)
    print(md, end="")
    if not args.no_save:
        stem = args.name or f"percall-{started.strftime('%Y%m%dT%H%M%SZ')}"
        print(f"wrote {report.save(args.out, stem, results, md)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
