"""The byte stream of one connection, with a fast path for sockets.

trio's socket methods end every call with a scheduling checkpoint, even when
the kernel had data ready or took the whole buffer at once. For a client with
one request outstanding (diodcat, the kernel's sequential reads) each of those
checkpoints is a pass of the scheduler on the critical path. :class:`Transport`
calls ``recv``/``send`` on the socket directly and only waits (through trio)
when the kernel would block, plus a checkpoint every few calls so that other
tasks are never starved. Other streams go through their trio methods.
"""

from __future__ import annotations

import errno
import os

import trio

_CHECKPOINT_EVERY = 8


class Transport:
    """Receives and sends the bytes of one connection (one reader, one sender at a time)."""

    def __init__(self, stream: trio.abc.Stream):
        self.stream = stream
        sock = getattr(stream, "socket", None)
        self._fd = sock.fileno() if isinstance(stream, trio.SocketStream) else None
        self._calls = 0
        self.waiting = False   # blocked until the client sends something
        self._drained = False

    async def _maybe_checkpoint(self) -> None:
        self._calls += 1
        if self._calls >= _CHECKPOINT_EVERY:
            self._calls = 0
            await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` bytes; b"" at end of stream."""
        fd = self._fd
        if fd is None:
            self.waiting = True
            try:
                return await self.stream.receive_some(max_bytes)
            finally:
                self.waiting = False
        while True:
            if self._drained:
                # The last read took all the kernel had: a client waiting for our
                # replies has sent nothing since, so wait rather than try a read
                # that would fail with EAGAIN.
                await self._wait_readable(fd)
            try:
                data = os.read(fd, max_bytes)
            except BlockingIOError:
                self._drained = True
                continue
            except OSError as exc:
                if exc.errno in (errno.ECONNRESET, errno.ETIMEDOUT):
                    return b""
                raise trio.BrokenResourceError(str(exc)) from exc
            self._drained = len(data) < max_bytes
            if not self._drained:
                await self._maybe_checkpoint()
            return data

    async def _wait_readable(self, fd: int) -> None:
        self._calls = 0
        self._drained = False
        self.waiting = True
        try:
            await trio.lowlevel.wait_readable(fd)
        finally:
            self.waiting = False

    async def send_all(self, data: bytes) -> None:
        """Send all of ``data`` (the caller holds the connection's send lock)."""
        fd = self._fd
        if fd is not None:
            try:
                n = os.write(fd, data)
            except BlockingIOError:
                n = 0
            except OSError as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            if n == len(data):
                await self._maybe_checkpoint()
                return
            data = memoryview(data)[n:]
        await self.stream.send_all(data)
