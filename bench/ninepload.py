"""Timed workloads through a running ``ninep serve`` with the project's async client.

Every workload checks what it did (bytes written and read, content hash,
files created), so a broken server cannot produce a figure.

- :func:`seq_write`: one file of ``total`` bytes, Twrite at msize 1 MiB with
  8 requests outstanding, then Tfsync (the time includes the commit that makes
  the data durable: for an S3 store, the chunk uploads);
- :func:`seq_read`: the same file read back, Tread at msize 1 MiB with 8
  outstanding, hashed and compared with what was written;
- :func:`creates`: ``n`` small files, each Tlcreate + one Twrite + Tclunk,
  one after another, then a Tfsync of the directory.
"""
from __future__ import annotations

import time

import blake3
import trio

from ninep_server import protocol as p
from ninep_server.client import connect

from .servers import BenchError, Server

MiB = 1 << 20
OUTSTANDING = 8


class Content:
    """Deterministic, incompressible file content: windows of a random pool.

    Block i of stream ``salt`` is the ``block``-byte window of ``pool`` at an
    offset depending on both, so streams with different salts share no chunk
    (no dedup between repetitions) and a stream can be regenerated to verify.
    """

    def __init__(self, pool: memoryview, salt: int, block: int):
        self.pool, self.salt, self.block = pool, salt, block
        self.span = len(pool) - block

    def piece(self, i: int, n: int) -> memoryview:
        o = (i * 1_000_003 + self.salt * 7_919) % self.span
        return self.pool[o:o + n]

    def digest(self, total: int) -> bytes:
        h = blake3.blake3()
        for i, off in enumerate(range(0, total, self.block)):
            h.update(self.piece(i, min(self.block, total - off)))
        return h.digest()


def _connect(server: Server):
    return connect(server.address, msize=MiB, uname=b"root", n_uname=0,
                   aname=server.aname.encode())


async def _seq_write(server: Server, name: bytes, total: int, content: Content) -> float:
    async with _connect(server) as c:
        if c.msize - p.IOHDRSZ < content.block:
            raise BenchError(f"msize {c.msize} too small for {content.block}-byte writes")
        t0 = time.perf_counter()
        f = await c.create(name, p.OpenFlags.RDWR, 0o644)
        window: list = []
        off = i = 0
        while off < total or window:
            while off < total and len(window) < OUTSTANDING:
                n = min(content.block, total - off)
                msg = p.Twrite(fid=f.fid, offset=off, data=bytes(content.piece(i, n)))
                window.append((await c.start(msg), n))
                off += n
                i += 1
            pend, n = window.pop(0)
            r = await pend.result()
            if r.count != n:
                raise BenchError(f"{server.kind}: short write {r.count} of {n}")
        await c.fsync(f.fid)
        dt = time.perf_counter() - t0
        await c.clunk(f.fid)
        return dt


def seq_write(server: Server, name: str, total: int, content: Content) -> float:
    """Write ``name`` (``total`` bytes of ``content``), fsync; return MB/s."""
    server.check_alive()
    return total / trio.run(_seq_write, server, name.encode(), total, content) / 1e6


async def read_window(c, fid: int, total: int, chunk: int, outstanding: int, kind: str,
                      sink=None) -> int:
    """Read ``total`` bytes of open ``fid`` from offset 0 with a sliding window of
    ``outstanding`` Treads of ``chunk`` bytes; pass each reply's data to ``sink``.

    Returns the bytes read; a short read raises BenchError naming ``kind``.
    """
    window: list = []
    off = got = 0
    while off < total or window:
        while off < total and len(window) < outstanding:
            n = min(chunk, total - off)
            window.append((await c.start(p.Tread(fid=fid, offset=off, count=n)), n))
            off += n
        pend, n = window.pop(0)
        r = await pend.result()
        if len(r.data) != n:
            raise BenchError(f"{kind}: short read {len(r.data)} of {n}")
        if sink is not None:
            sink(r.data)
        got += n
    return got


async def _seq_read(server: Server, name: bytes, total: int, chunk: int) -> tuple[float, bytes]:
    async with _connect(server) as c:
        h = blake3.blake3()
        t0 = time.perf_counter()
        f = await c.open(name, p.OpenFlags.RDONLY)
        await read_window(c, f.fid, total, chunk, OUTSTANDING, server.kind, h.update)
        dt = time.perf_counter() - t0
        await c.clunk(f.fid)
        return dt, h.digest()


def seq_read(server: Server, name: str, total: int, content: Content) -> float:
    """Read ``name`` back and check its hash against ``content``; return MB/s."""
    server.check_alive()
    dt, digest = trio.run(_seq_read, server, name.encode(), total, content.block)
    if digest != content.digest(total):
        raise BenchError(f"{server.kind}: {name} read back different content")
    return total / dt / 1e6


async def _creates(server: Server, dirname: bytes, n: int, size: int, content: Content) -> float:
    async with _connect(server) as c:
        await c.mkdir(c.root_fid, dirname, 0o755)
        t0 = time.perf_counter()
        for i in range(n):
            f = await c.create(dirname + b"/f%06d" % i, p.OpenFlags.WRONLY, 0o644)
            if await c.write(f.fid, 0, bytes(content.piece(i, size))) != size:
                raise BenchError(f"{server.kind}: short write creating file {i}")
            await c.clunk(f.fid)
        dfid = await c.walk_path(dirname)
        await c.fsync(dfid)
        dt = time.perf_counter() - t0
        names = await c.listdir(dirname)
        await c.clunk(dfid)
        if len(names) != n:
            raise BenchError(f"{server.kind}: {len(names)} files in {dirname!r}, expected {n}")
        return dt


def creates(server: Server, dirname: str, n: int, size: int, content: Content) -> float:
    """Create ``n`` files of ``size`` bytes in a new directory, fsync it; return files/s."""
    server.check_alive()
    return n / trio.run(_creates, server, dirname.encode(), n, size, content)
