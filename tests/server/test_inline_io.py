"""Requests the reader answers itself: reads and writes in memory, bursts, Tflush order."""

from __future__ import annotations

import os
import socket

import trio

from ninep_server import protocol as p
from ninep_server.address import parse_address

from .conftest import wait_for

MiB = 1 << 20


async def test_burst_of_large_reads_all_come_back_whole(live):
    data = os.urandom(12 * MiB)
    async with live.connect() as c:
        await c.write_file(b"big", data, fsync=True)
        f = await c.open(b"big")
        count = c.msize - p.IOHDRSZ
        # 12 reads of (nearly) 1 MiB sent in one write: more than the reader
        # buffers before sending, so it sends in the middle of the batch too.
        batch = await c.start_many([p.Tread(fid=f.fid, offset=i * count, count=count) for i in range(12)])
        got = b"".join([(await pd.result()).data for pd in batch])
        assert got == data[:12 * count]
        # sequential reads after that (served from memory or the page cache)
        assert await c.read_all(f.fid) == data
        await c.clunk(f.fid)


async def test_small_writes_answered_inline_are_durable_and_readable(live):
    async with live.connect() as c:
        f = await c.create(b"log")
        pieces = [bytes([i]) * (1000 + i) for i in range(200)]
        off = 0
        for piece in pieces:
            assert await c.write(f.fid, off, piece) == len(piece)
            off += len(piece)
        await c.fsync(f.fid)
        await c.clunk(f.fid)
        assert await c.read_file(b"log") == b"".join(pieces)
    assert live.server.metrics.request_count("Twrite") >= 200


async def test_rflush_never_overtakes_an_inline_reply(live):
    """Tread + Tflush of it in one segment: the Rread must come first."""
    async with live.connect() as c:
        await c.write_file(b"f", b"hello" * 1000)
    stream = await trio.open_tcp_stream("127.0.0.1", parse_address(live.tcp).port)
    async with stream:
        frames = p.FrameBuffer(max_size=p.MAX_MSIZE)

        async def rpc(*msgs):
            await stream.send_all(b"".join(p.encode(m) for m in msgs))
            out = []
            while len(out) < len(msgs):
                while (frame := frames.next_frame()) is None:
                    frames.feed(await stream.receive_some(1 << 20))
                out.append(p.decode(frame))
            return out

        await rpc(p.Tversion(tag=p.NOTAG, msize=65536, version=p.VERSION_9P2000L))
        await rpc(p.Tattach(tag=1, fid=1, afid=p.NOFID, uname=b"0", aname=b"", n_uname=0))
        await rpc(p.Twalk(tag=1, fid=1, newfid=2, wnames=[b"f"]))
        await rpc(p.Tlopen(tag=1, fid=2, flags=0))
        for _ in range(20):
            replies = await rpc(p.Tread(tag=7, fid=2, offset=0, count=5000), p.Tflush(tag=8, oldtag=7))
            assert [type(r) for r in replies] == [p.Rread, p.Rflush]
            assert replies[0].data == b"hello" * 1000


def _metric(text: str, name: str) -> float:
    line = next(ln for ln in text.splitlines() if ln.startswith(name + "{") or ln.startswith(name + " "))
    return float(line.rsplit(" ", 1)[1])


async def test_rereads_are_served_by_the_memory_cache_and_counted(live):
    """A re-read hits the memory cache of verified chunks; /metrics and status count it."""
    data = os.urandom(3 * 128 * 1024 + 5000)
    async with live.connect() as c:
        await c.write_file(b"f", data, fsync=True)
    live.store.chunks.drop_cache()
    before = live.store.chunks.stats()
    async with live.connect() as c:
        assert await c.read_file(b"f") == data     # from disk: misses, verified into memory
        mid = live.store.chunks.stats()
        assert await c.read_file(b"f") == data     # from memory: hits
    after = live.store.chunks.stats()
    assert mid.memory_misses > before.memory_misses
    assert after.memory_hits > mid.memory_hits and after.memory_misses == mid.memory_misses
    assert 0 < after.memory_bytes <= after.memory_limit == 256 << 20
    text = live.server.metrics.render().decode()
    assert _metric(text, "ninep_chunk_memory_hits_total") == after.memory_hits
    assert _metric(text, "ninep_chunk_memory_misses_total") == after.memory_misses
    assert _metric(text, "ninep_chunk_memory_limit_bytes") == 256 << 20
    assert _metric(text, "ninep_chunk_memory_hit_ratio") == after.memory_hit_ratio > 0
    chunks = live.server.status()["chunks"]
    assert chunks["memory_hits"] == after.memory_hits and chunks["memory_hit_ratio"] == after.memory_hit_ratio


def _session_lowat(live) -> int:
    """SO_RCVLOWAT of the server's end of its one connection."""
    (session,) = live.server.sessions.values()
    return session.transport.stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)


async def test_a_frame_arriving_in_pieces_wakes_the_reader_when_whole(live):
    """While part of a Twrite is buffered the server's socket asks the kernel to wake
    it only once the rest can be read (SO_RCVLOWAT); when the frame is whole the mark
    goes back to 1, so the next small request is answered at once, and the bytes
    written are exactly those sent."""
    stream = await trio.open_tcp_stream("127.0.0.1", parse_address(live.tcp).port)
    async with stream:
        frames = p.FrameBuffer(max_size=p.MAX_MSIZE)

        async def reply():
            while (frame := frames.next_frame()) is None:
                frames.feed(await stream.receive_some(1 << 20))
            return p.decode(frame)

        async def rpc(msg):
            await stream.send_all(p.encode(msg))
            return await reply()

        await rpc(p.Tversion(tag=p.NOTAG, msize=65536, version=p.VERSION_9P2000L))
        await rpc(p.Tattach(tag=1, fid=1, afid=p.NOFID, uname=b"0", aname=b"", n_uname=0))
        await rpc(p.Twalk(tag=1, fid=1, newfid=2, wnames=[]))
        assert isinstance(await rpc(p.Tlcreate(tag=1, fid=2, name=b"w", flags=p.OpenFlags.RDWR,
                                               mode=0o644, gid=0)), p.Rlcreate)
        assert _session_lowat(live) == 1
        data = os.urandom(60_000)
        frame = p.encode(p.Twrite(tag=3, fid=2, offset=0, data=data))
        for cut in (5, 2_000):   # just past the size field, then inside the data
            await stream.send_all(frame[:cut])
            await wait_for(lambda cut=cut: _session_lowat(live) == len(frame) - cut, timeout=10)
            await stream.send_all(frame[cut:])
            written = await reply()
            assert isinstance(written, p.Rwrite) and written.count == len(data)
            await wait_for(lambda: _session_lowat(live) == 1, timeout=10)
        assert isinstance(await rpc(p.Tgetattr(tag=4, fid=2, request_mask=p.GetattrMask.ALL)), p.Rgetattr)
        back = await rpc(p.Tread(tag=5, fid=2, offset=0, count=60_000))
        assert back.data == data
