"""Host-side benchmarks: independent clients against ninep and diod.

No guest in the way, so the servers' own cost is what is measured:

- ``diodcat``: diodcat (msize 65536) reading the big file to /dev/null, MB/s
- ``diodls``: ``diodls -l`` of a directory with many entries, entries/s
- ``getattr_1`` / ``getattr_16``: Tgetattr/s from the project's async client
  with 1 and 16 requests outstanding (msize 65536)
- ``read8_64k``: Tread MB/s with 8 reads outstanding at msize 65536
- ``read8_1m``: the same at msize 1 MiB (ninep only; diod caps msize at 64 KiB)

Both servers serve the same content: diod exports a directory written on the
host; ninep gets the same bytes through its own client before the runs.
"""
from __future__ import annotations

import os
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from ninep_server import protocol as p
from ninep_server.client import connect

from .ninepload import read_window
from .servers import BenchError, Server

MiB = 1 << 20
BIG = "big.bin"
MANY = "many"


@dataclass
class HostSizes:
    big_mib: int = 256
    entries: int = 10_000
    getattr_ops: int = 20_000


def content_block(i: int) -> bytes:
    """1 MiB of incompressible, non-repeating data, the same on every call."""
    import blake3
    return blake3.blake3(i.to_bytes(8, "little")).digest(length=MiB)


def populate_dir(root: Path, sizes: HostSizes) -> None:
    with open(root / BIG, "wb") as f:
        for i in range(sizes.big_mib):
            f.write(content_block(i))
    many = root / MANY
    many.mkdir()
    for i in range(sizes.entries):
        with open(many / f"file-{i:05d}", "wb") as f:
            f.write(b"x" * (i % 100))
    os.chmod(root / BIG, 0o644)


async def _populate_ninep(server: Server, sizes: HostSizes) -> None:
    async with connect(server.address, msize=MiB, uname=b"root", n_uname=0,
                       aname=server.aname.encode()) as c:
        # the big file, with 8 writes outstanding
        f = await c.create(BIG.encode(), p.OpenFlags.RDWR, 0o644)
        chunk = c.msize - p.IOHDRSZ
        off = 0
        total = sizes.big_mib * MiB
        buf = b"".join(content_block(i) for i in range(min(sizes.big_mib, 16)))
        blk = 0
        while off < total:
            msgs = []
            for _ in range(8):
                if off >= total:
                    break
                # regenerate data lazily, 16 MiB at a time
                need_blk = off // MiB
                if need_blk >= blk + 16:
                    blk = need_blk
                    buf = b"".join(content_block(i) for i in range(blk, min(blk + 16, sizes.big_mib)))
                rel = off - blk * MiB
                n = min(chunk, total - off, len(buf) - rel)
                msgs.append(p.Twrite(fid=f.fid, offset=off, data=buf[rel:rel + n]))
                off += n
            for pend in await c.start_many(msgs):
                r = await pend.result()
                if r.count <= 0:
                    raise BenchError("ninep: short write while populating")
        await c.fsync(f.fid)
        await c.clunk(f.fid)
        # the directory, with Tmknod (one request per file) then a write for content
        await c.mkdir(c.root_fid, MANY.encode(), 0o755)
        dfid = await c.walk_path(MANY.encode())
        for base in range(0, sizes.entries, 64):
            msgs = [p.Tmknod(dfid=dfid, name=f"file-{i:05d}".encode(), mode=stat.S_IFREG | 0o644)
                    for i in range(base, min(base + 64, sizes.entries))]
            for pend in await c.start_many(msgs):
                await pend.result()
        for i in range(sizes.entries):
            if i % 100:
                fid = await c.walk_path(f"file-{i:05d}".encode(), start=dfid)
                await c.lopen(fid, p.OpenFlags.WRONLY)
                await c.write(fid, 0, b"x" * (i % 100))
                await c.clunk(fid)
        await c.fsync(dfid)
        await c.clunk(dfid)


def populate_ninep(server: Server, sizes: HostSizes) -> None:
    trio.run(_populate_ninep, server, sizes)


# ---------------------------------------------------------------- measurements

def _run_tool(cmd: list[str], timeout: float) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.decode(errors='replace')[-500:]}")
    return dt, r.stdout


def bench_diodcat(server: Server, sizes: HostSizes) -> float:
    """MB/s of diodcat reading the big file (output counted, then dropped)."""
    cmd = ["diodcat", "-s", server.hostport, "-a", server.aname, "-m", "65536", "-u", "0", BIG]
    # stdout through a pipe we count, so a truncated read cannot pass
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    n = 0
    while True:
        b = proc.stdout.read1(1 << 20)
        if not b:
            break
        n += len(b)
    err = proc.stderr.read()
    rc = proc.wait()
    dt = time.perf_counter() - t0
    if rc != 0 or n != sizes.big_mib * MiB:
        raise BenchError(f"diodcat on {server.kind}: rc={rc}, {n} bytes of {sizes.big_mib * MiB}: "
                         f"{err.decode(errors='replace')[-500:]}")
    return n / dt / 1e6


def bench_diodls(server: Server, sizes: HostSizes) -> float:
    """entries/s of diodls -l over the many-entries directory."""
    cmd = ["diodls", "-l", "-s", server.hostport, "-a", server.aname, "-m", "65536", "-u", "0", MANY]
    dt, out = _run_tool(cmd, timeout=600)
    lines = [ln for ln in out.splitlines() if b"file-" in ln]
    if len(lines) != sizes.entries:
        raise BenchError(f"diodls on {server.kind}: {len(lines)} entries, expected {sizes.entries}")
    return sizes.entries / dt


async def _getattr(server: Server, outstanding: int, ops: int) -> float:
    async with connect(server.address, msize=65536, uname=b"root", n_uname=0,
                       aname=server.aname.encode()) as c:
        fid = await c.walk_path(BIG.encode())
        for _ in range(200):                      # warm up
            await c.getattr(fid)
        done = 0
        t0 = time.perf_counter()
        if outstanding == 1:
            while done < ops:
                r = await c.getattr(fid)
                done += 1
        else:
            # windows of `outstanding` requests sent in one write (start_many),
            # the next window as soon as the previous one is answered: the
            # client spends little per request, so the server is what's timed
            while done < ops:
                msgs = [p.Tgetattr(fid=fid, request_mask=p.GetattrMask.ALL)
                        for _ in range(outstanding)]
                for pend in await c.start_many(msgs):
                    await pend.result()
                done += outstanding
            r = await c.getattr(fid)
        dt = time.perf_counter() - t0
        if not isinstance(r, p.Rgetattr):
            raise BenchError("getattr returned nothing")
        await c.clunk(fid)
        return done / dt


def bench_getattr(server: Server, outstanding: int, ops: int) -> float:
    return trio.run(_getattr, server, outstanding, ops)


async def _read(server: Server, msize: int, outstanding: int, total: int) -> float:
    async with connect(server.address, msize=msize, uname=b"root", n_uname=0,
                       aname=server.aname.encode()) as c:
        if c.msize != msize:
            raise BenchError(f"{server.kind} negotiated msize {c.msize}, not {msize}")
        f = await c.open(BIG.encode(), p.OpenFlags.RDONLY)
        t0 = time.perf_counter()
        got = await read_window(c, f.fid, total, msize - p.IOHDRSZ, outstanding, server.kind)
        dt = time.perf_counter() - t0
        await c.clunk(f.fid)
        return got / dt / 1e6


def bench_read(server: Server, msize: int, outstanding: int, total: int) -> float:
    return trio.run(_read, server, msize, outstanding, total)


# name -> (unit, servers it runs against, description)
HOST_BENCHES = {
    "diodcat": ("MB/s", ("ninep", "diod"), "diodcat read of the big file, msize 65536"),
    "diodls": ("entries/s", ("ninep", "diod"), "diodls -l of the many-entries directory"),
    "getattr_1": ("ops/s", ("ninep", "diod"), "async client Tgetattr, 1 outstanding"),
    "getattr_16": ("ops/s", ("ninep", "diod"), "async client Tgetattr, 16 outstanding"),
    "read8_64k": ("MB/s", ("ninep", "diod"), "async client Tread, 8 outstanding, msize 65536"),
    "read8_1m": ("MB/s", ("ninep",), "async client Tread, 8 outstanding, msize 1 MiB"),
}


def run_one(name: str, server: Server, sizes: HostSizes) -> float:
    server.check_alive()
    if name == "diodcat":
        v = bench_diodcat(server, sizes)
    elif name == "diodls":
        v = bench_diodls(server, sizes)
    elif name == "getattr_1":
        v = bench_getattr(server, 1, sizes.getattr_ops // 2)
    elif name == "getattr_16":
        v = bench_getattr(server, 16, sizes.getattr_ops)
    elif name == "read8_64k":
        v = bench_read(server, 65536, 8, sizes.big_mib * MiB)
    elif name == "read8_1m":
        v = bench_read(server, MiB, 8, sizes.big_mib * MiB)
    else:
        raise KeyError(name)
    server.check_alive()
    if not v or v <= 0:
        raise BenchError(f"{name} on {server.kind}: no result ({v})")
    return v
