"""The byte stream of one connection, with a fast path for sockets.

trio's socket methods end every call with a scheduling checkpoint, even when
the kernel had data ready or took the whole buffer at once. For a client with
one request outstanding (diodcat, the kernel's sequential reads) each of those
checkpoints is a pass of the scheduler on the critical path. :class:`Transport`
calls ``recv``/``send`` on the socket directly and only waits (through trio)
when the kernel would block, plus a checkpoint every few calls so that other
tasks are never starved. Other streams go through their trio methods.

Replies go out as a list of buffers in one ``writev``: a reply carrying data
(Rread, Rreaddir) is its header and a view of the data, never copied into one
frame first.

A large request reaches a TCP socket in pieces: a guest's 64 KiB Twrite
through QEMU's user networking came in about four, and each piece woke the
reader for a pass of the event loop. While part of a frame is buffered, the
reader asks the kernel (``SO_RCVLOWAT``, see :meth:`Transport.expect`) to
report the socket readable only once the rest is there: one wake-up per
piece becomes about two per frame (128 MiB written by `dd` in the guest:
9,100 reads and 9,300 epoll waits became 4,200 and 4,400, and the server's
CPU 1.3 -> 0.95 s). Linux still wakes a reader below the mark at end of
stream, on an error, under memory pressure, or when the receive window
closes, so a client that stops mid-frame is no worse off than before: its
deadlines apply as usual.
"""

from __future__ import annotations

import errno
import os
import socket

import trio

_CHECKPOINT_EVERY = 8
# writev takes at most IOV_MAX (1024 on Linux) buffers at once
_IOV_MAX = 1024


class Transport:
    """Receives and sends the bytes of one connection (one reader, one sender at a time)."""

    def __init__(self, stream: trio.abc.Stream):
        self.stream = stream
        sock = getattr(stream, "socket", None)
        self._fd = sock.fileno() if isinstance(stream, trio.SocketStream) else None
        # SO_RCVLOWAT counts for poll only on TCP (not on unix sockets)
        self._tcp = self._fd is not None and sock.family in (socket.AF_INET, socket.AF_INET6)
        self._lowat = 1
        self._calls = 0
        self.waiting = False   # blocked until the client sends something
        self._drained = False
        # Received bytes land in this one buffer: ``os.read(fd, 1 MiB)`` allocates
        # (and frees) a megabyte per call, measured at ~27 µs, more than a whole
        # small request costs otherwise.
        self._rbuf = memoryview(b"")

    def expect(self, n: int) -> None:
        """Have the reader woken only once ``n`` bytes can be read (1: any).

        The session calls it with what the frame it has begun still needs,
        and with 1 once no frame is pending; only a change costs a syscall.
        """
        if not self._tcp or n == self._lowat:
            return
        try:
            self.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, n)
        except OSError:
            self._tcp = False   # not worth another try: reads work without it
            return
        self._lowat = n

    async def _maybe_checkpoint(self) -> None:
        self._calls += 1
        if self._calls >= _CHECKPOINT_EVERY:
            self._calls = 0
            await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int) -> bytes | memoryview:
        """Up to ``max_bytes`` bytes; empty at end of stream.

        On a socket the bytes are a view of the transport's receive buffer,
        valid until the next call: the caller copies what it keeps.
        """
        fd = self._fd
        if fd is None:
            self.waiting = True
            try:
                return await self.stream.receive_some(max_bytes)
            finally:
                self.waiting = False
        if len(self._rbuf) != max_bytes:
            self._rbuf = memoryview(bytearray(max_bytes))
        buf = self._rbuf
        while True:
            if self._drained:
                # The last read took all the kernel had: a client waiting for our
                # replies has sent nothing since, so wait rather than try a read
                # that would fail with EAGAIN.
                await self._wait_readable(fd)
            try:
                n = os.readv(fd, (buf,))
            except BlockingIOError:
                self._drained = True
                continue
            except OSError as exc:
                if exc.errno in (errno.ECONNRESET, errno.ETIMEDOUT):
                    return b""
                raise trio.BrokenResourceError(str(exc)) from exc
            self._drained = n < max_bytes
            if not self._drained:
                await self._maybe_checkpoint()
            return buf[:n]

    async def _wait_readable(self, fd: int) -> None:
        self._calls = 0
        self._drained = False
        self.waiting = True
        try:
            await trio.lowlevel.wait_readable(fd)
        finally:
            self.waiting = False

    async def send_all(self, parts: list) -> None:
        """Send the buffers of ``parts``, in order (the caller holds the connection's send lock)."""
        fd = self._fd
        if fd is None:
            for part in parts:
                await self.stream.send_all(part)
            return
        if len(parts) > _IOV_MAX:
            parts = [b"".join(parts)]
        try:
            n = os.write(fd, parts[0]) if len(parts) == 1 else os.writev(fd, parts)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        i = 0
        for i, part in enumerate(parts):  # skip what the kernel took
            if n < len(part):
                break
            n -= len(part)
        else:
            await self._maybe_checkpoint()
            return
        # the socket buffer is full: the rest goes through trio, which waits for room
        await self.stream.send_all(memoryview(parts[i])[n:])
        for part in parts[i + 1:]:
            await self.stream.send_all(part)
