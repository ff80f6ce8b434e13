"""python -m bench.floor: the least a trio 9P server can spend on a request.

The reference ``bench.percall`` measures ninep against: a bare trio loop,
one task per connection, that frames requests with the codec's
FrameBuffer and answers each with a reply encoded once at start (only its
tag is written per request). It pays what any trio 9P server pays per
request (the event loop's wake-up, one read, one write) and nothing for a
file system: it has none, and answers whatever fid it is asked about.
ninep's CPU above this floor is its own code; the floor itself is the
price of CPython and trio on the machine.

It listens on an ephemeral 127.0.0.1 port and prints ``listening tcp:HOST:PORT``.
"""
from __future__ import annotations

import errno
import os
import struct

import trio

from ninep_server import protocol as p

MSIZE = 65536
_QID = p.Qid(type=0x80, version=0, path=1)
_TAG = struct.Struct("<H")


def canned_replies() -> dict[int, bytearray]:
    """Request type -> its reply frame (tag 0); anything else gets Rlerror(EOPNOTSUPP)."""
    replies = {
        p.Tversion: p.Rversion(msize=MSIZE, version=p.VERSION_9P2000L),
        p.Tattach: p.Rattach(qid=_QID),
        p.Tgetattr: p.Rgetattr(valid=p.GetattrMask.BASIC, qid=_QID, mode=0o40755, nlink=2,
                               size=4096, blksize=4096, blocks=8),
        p.Twalk: p.Rwalk(qids=[]),
        p.Tclunk: p.Rclunk(),
        p.Tlopen: p.Rlopen(qid=_QID, iounit=0),
        p.Tread: p.Rread(data=bytes(MSIZE - p.IOHDRSZ)),   # percall's read: diodcat's count
    }
    out = {}
    for request, reply in replies.items():
        reply.tag = 0
        out[int(request.TYPE)] = bytearray(p.encode(reply))
    return out


async def serve_connection(sock: trio.socket.SocketType, replies: dict[int, bytearray]) -> None:
    """Answer ``sock``'s requests until it closes: raw reads and writes on the fd,
    waiting only when the kernel has nothing (as ninep_server/transport.py does)."""
    frames = p.FrameBuffer(max_size=MSIZE)
    replies = {t: bytearray(frame) for t, frame in replies.items()}  # tags written per connection
    other = bytearray(p.encode(p.Rlerror(tag=0, ecode=errno.EOPNOTSUPP)))
    buf = memoryview(bytearray(MSIZE))
    fd = sock.fileno()
    with sock:
        while True:
            try:
                n = os.readv(fd, (buf,))
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
                continue
            if not n:
                return
            frames.feed(buf[:n])
            while (frame := frames.next_frame()) is not None:
                _, type_, tag = p.decode_header(frame)
                reply = replies.get(type_, other)
                _TAG.pack_into(reply, 5, tag)
                await _send(fd, reply)


async def _send(fd: int, data: bytearray) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            await trio.lowlevel.wait_writable(fd)


async def main() -> None:
    replies = canned_replies()
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    print(f"listening tcp:127.0.0.1:{listener.getsockname()[1]}", flush=True)
    async with trio.open_nursery() as nursery:
        while True:
            sock, _ = await listener.accept()
            sock.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
            nursery.start_soon(serve_connection, sock, replies)


if __name__ == "__main__":
    trio.run(main)
