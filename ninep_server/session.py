"""One client connection: framing, version negotiation, tags, Tflush.

A session runs one reader task (decodes frames and dispatches them), one
writer task (sends the replies of tasks, batching what is ready) and one task
per request that has to wait (data I/O, fsync, blocking locks). Metadata
requests and reads served from memory are answered inline by the reader,
which sends those replies itself, with no writer wakeup: after each batch of
received frames (one send per request for a client with one request
outstanding: diodcat, the kernel's sequential I/O), and within a batch after
every ``_SEND_EVERY`` replies, so that a client with many requests
outstanding works on the first replies while the server makes the next ones
(pipelined Tgetattr, 16 outstanding: 34k -> 39k/s here, and less server CPU
than diod's for the same work).

Whoever sends holds ``_send_lock`` and takes the task replies queued so far
before its own, so a reply queued before an Rflush is never sent after it.

Tflush cancels the request's task and answers Rflush only after that task
has finished, so if the original reply was queued first it is also sent
first, as the protocol requires.

Bounds. Every request that becomes a task (a Tflush too) holds one of
``max_requests_per_connection`` slots; when none is free the reader stops
reading until one is (backpressure, so the connection's memory is bounded
whatever it sends). Tasks finish on their own except Tlocks waiting for a
lock, which may wait for a later request of this same connection; the lock
table keeps those below the cap, so the reader always goes on. A TCP
connection must complete Tversion within ``handshake_timeout`` and, once
negotiated, is closed after ``idle_timeout`` without any fid or request.
Unix-socket connections have neither deadline: QEMU's socket chardevs (the
``trans=fd`` recipe) connect one per virtio-serial port when the VM starts,
and send Tversion only when the guest mounts through that port, maybe
hours later, and again on a later mount; they never reconnect. Only the
socket's owner can connect (mode 0600), and they still count against
``max_handshakes``.
"""

from __future__ import annotations

import errno
import math
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
import structlog
import trio

from . import protocol as p
from .context import SessionContext
from .handlers import Handlers
from .transport import Transport

log = structlog.get_logger(__name__)

_RECV_SIZE = 1 << 20
_MIN_MSIZE = 4096
# The reader sends its replies once they add up to this much, even mid-batch.
_INLINE_SEND_AT = 4 << 20
# ... and after this many replies (the client starts on them while the rest are made).
_SEND_EVERY = 4
# The reader lets other tasks run after this many frames of one receive.
_YIELD_EVERY = 64
# A reply's data blob at least this long is sent as a buffer of its own (a view
# of the data); shorter ones are joined to their header, a cheap copy.
_SEPARATE_DATA = 2048


class ProtocolViolation(Exception):
    """The client broke the protocol badly enough that the connection closes."""


class _Refused(Exception):
    """The server has no room for another negotiated session."""


@dataclass(slots=True)
class _Active:
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)


class Session:
    """Serves one connected client until it disconnects or the server stops."""

    def __init__(self, ctx: SessionContext, stream: trio.abc.Stream, session_id: int, peer: str):
        self.ctx = ctx
        self.stream = stream
        self.transport = Transport(stream)
        self.id = session_id
        self.peer = peer
        peer_host = None if peer.startswith("unix") else peer.rsplit(":", 1)[0].strip("[]")
        self.handlers = Handlers(ctx.handlers, session_id, peer_host)
        self.msize = p.MAX_MSIZE
        self.negotiated = False
        self.active: dict[int, _Active] = {}
        self._outq: deque = deque()    # buffers of task replies, for the writer
        self._inline: list = []        # buffers of inline replies, sent by the reader
        self._inline_bytes = 0
        self._inline_count = 0         # replies in _inline
        self._outq_ready = trio.Event()
        self._send_lock = trio.Lock()
        self._slots = trio.Semaphore(ctx.config.max_requests_per_connection)
        # The reader runs in this scope: its deadline is the handshake
        # deadline, then the idle deadline while no fid is held.
        self._timed = not peer.startswith("unix")  # see the module docstring
        self._handshake_deadline = (trio.current_time() + ctx.config.handshake_timeout
                                    if self._timed else math.inf)
        self._deadline_scope = trio.CancelScope(deadline=self._handshake_deadline)
        self._close_reason = ""
        self._fidless_since: float | None = None
        self._stopping = trio.Event()
        # Stopping cancels the reader only while it waits for input: a reply
        # being sent is never cut in half.
        self._reading = True
        self._read_scope = trio.CancelScope()
        self.log = log.bind(session=session_id, peer=peer)

    async def run(self) -> None:
        """Serve until EOF, a fatal protocol error, or :meth:`stop`."""
        self.log.info("client connected")
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                try:
                    with self._deadline_scope:
                        await self._reader(nursery)
                except (p.ProtocolError, ProtocolViolation) as exc:
                    self._log_refusal("warning", "closing connection: protocol violation", reason=str(exc))
                except _Refused:
                    self._log_refusal("warning", "refusing session: too many clients",
                                      limit=self.ctx.config.max_connections)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                if self._deadline_scope.cancelled_caught:
                    self.log.info("closing connection", reason=self._close_reason or self._timeout_reason())
                # Let requests already accepted finish (graceful stop), then close.
                if self._stopping.is_set():
                    with trio.move_on_after(self.ctx.shutdown_grace):
                        await self._wait_idle()
                nursery.cancel_scope.cancel()
        finally:
            self.handlers.release_all()
            with trio.CancelScope(shield=True):
                await self.stream.aclose()
            self.log.info("client disconnected")

    def evict(self, reason: str) -> None:
        """Close this connection now (it holds nothing: it has not negotiated)."""
        self._close_reason = reason
        self._deadline_scope.cancel()

    def _timeout_reason(self) -> str:
        if not self.negotiated:
            return f"no Tversion within {self.ctx.config.handshake_timeout} s"
        return f"idle without a fid for {self.ctx.config.idle_timeout} s"

    def _refresh_deadline(self) -> None:
        """Arm the idle deadline while the session holds no fid and runs nothing.

        The deadline counts from when the last fid went: requests that
        create none (errors, Tstatfs on a bad fid...) do not extend it.
        """
        if not self.negotiated:
            deadline = self._handshake_deadline  # a failed renegotiation gets no new window
        elif not self._timed or self.active or len(self.handlers.fids):
            self._fidless_since = None
            deadline = math.inf
        else:
            if self._fidless_since is None:
                self._fidless_since = trio.current_time()
            deadline = self._fidless_since + self.ctx.config.idle_timeout
        if deadline != self._deadline_scope.deadline:
            self._deadline_scope.deadline = deadline

    def describe(self) -> dict:
        """A summary for `ninep status`."""
        return {"id": self.id, "peer": self.peer, "msize": self.msize, "fids": len(self.handlers.fids), "in_flight": len(self.active)}

    def uses_dataset(self, dataset: str) -> bool:
        return any(f.view.dataset == dataset for f in self.handlers.fids.values())

    def stop(self) -> None:
        """Stop reading new requests; finish the ones in flight, then close."""
        self._stopping.set()
        self._stop_reading()

    def _stop_reading(self) -> None:
        self._reading = False
        if self.transport.waiting:
            self._read_scope.cancel()

    async def _wait_idle(self) -> None:
        while self.active:
            await next(iter(self.active.values())).done.wait()
        # Let the writer flush what is queued.
        while self._outq or self._send_lock.locked():
            await trio.sleep(0.01)

    # -- reading and dispatch ---------------------------------------------------

    async def _reader(self, nursery: trio.Nursery) -> None:
        frames = p.FrameBuffer(max_size=self.msize)
        with self._read_scope:
            while self._reading:
                data = await self.transport.receive_some(_RECV_SIZE)
                if not data:
                    return
                frames.feed(data)
                count = 0
                while (frame := frames.next_frame()) is not None:
                    await self._dispatch(frame, nursery)
                    frames.max_size = self.msize
                    if self._inline_count >= _SEND_EVERY or self._inline_bytes > _INLINE_SEND_AT:
                        await self._send_inline()  # don't hold answers back behind later requests
                    count += 1
                    if count % _YIELD_EVERY == 0:
                        # A megabyte of small requests answered inline takes a
                        # while: let other connections in between.
                        await trio.lowlevel.checkpoint()
                await self._send_inline()
                self._refresh_deadline()
                # a frame begun: wake when all of it is there (see transport.py)
                self.transport.expect(frames.needed() if len(frames) else 1)

    async def _dispatch(self, frame: bytes, nursery: trio.Nursery) -> None:
        try:
            msg = p.decode(frame)
        except p.ProtocolError as exc:
            if exc.tag is None or exc.type is None or exc.type % 2:
                raise
            code = errno.EOPNOTSUPP if p.message_class(exc.type) is None else errno.EINVAL
            self._log_refusal("warning", "bad request", reason=exc.reason, type=exc.type, tag=exc.tag)
            self._reply_error(exc.tag, code, inline=True)
            return
        cls = type(msg)
        if cls is p.Tversion:
            await self._version(msg)
            return
        if cls is p.Tflush:
            if msg.oldtag in self.active:
                await self._take_slot()
                nursery.start_soon(self._flush, msg)
            else:  # nothing to cancel; its reply, if any, is already queued
                self._queue_inline(p.Rflush(tag=msg.tag))
            return
        if msg.tag in self.active:
            raise ProtocolViolation(f"tag {msg.tag} reused while its request is in flight")
        if not self.negotiated:
            self._reply_error(msg.tag, errno.EPROTO, inline=True)
            return
        inline = self.handlers.inline.get(cls)
        if inline is not None:
            self._answer(msg, inline)
            return
        fast = self.handlers.fast.get(cls)
        if fast is not None and self._answer(msg, fast):
            return
        task = self.handlers.tasks.get(cls)
        if task is None:
            self._reply_error(msg.tag, errno.EOPNOTSUPP, inline=True)
            return
        await self._take_slot()
        active = _Active()
        self.active[msg.tag] = active
        nursery.start_soon(self._run_task, task, msg, active)

    async def _take_slot(self) -> None:
        """A request slot; at the cap, stop reading until a task finishes."""
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            await self._send_inline()  # don't hold answers back while we wait
            await self._slots.acquire()

    def _answer(self, msg: p.Message, method) -> bool:
        """Answer ``msg`` inline; False if ``method`` declined (returned None).

        Errors become Rlerror as in :meth:`_errors_as_rlerror`, without the
        context manager: a generator-based one costs more per request than
        the rest of a small reply's bookkeeping.
        """
        started = time.perf_counter()
        try:
            reply = method(msg)
            if reply is None:
                return False
            reply.tag = msg.tag
            self._queue_inline(reply)
        except Exception as exc:
            self._answer_failure(msg, exc, True)
        self.ctx.metrics.observe(type(msg).__name__, time.perf_counter() - started)
        return True

    async def _run_task(self, method, msg: p.Message, active: _Active) -> None:
        started = time.perf_counter()
        try:
            with active.scope, self._errors_as_rlerror(msg):
                self._reply(msg, await method(msg))
        finally:
            self._slots.release()
            self.active.pop(msg.tag, None)
            active.done.set()
            if not self.active:
                self._refresh_deadline()
            self.ctx.metrics.observe(type(msg).__name__, time.perf_counter() - started)

    @contextmanager
    def _errors_as_rlerror(self, msg: p.Message, inline: bool = False):
        """Answer a failed request with Rlerror; a flush (Cancelled) passes through."""
        try:
            yield
        except Exception as exc:
            self._answer_failure(msg, exc, inline)

    def _answer_failure(self, msg: p.Message, exc: Exception, inline: bool) -> None:
        """Rlerror for a failed request: its errno for an OSError, else EIO (logged with the trace)."""
        if isinstance(exc, OSError):
            self._log_error(msg, exc)
            self._reply_error(msg.tag, exc.errno or errno.EIO, inline)
        else:
            self._log_refusal("error", "request failed", exc_info=exc, request=type(msg).__name__)
            self._reply_error(msg.tag, errno.EIO, inline)

    def _reply(self, msg: p.Message, reply: p.Message) -> None:
        reply.tag = msg.tag
        self._queue(reply)

    async def _flush(self, msg: p.Tflush) -> None:
        try:
            active = self.active.get(msg.oldtag)
            if active is not None:
                active.scope.cancel()
                await active.done.wait()
            self._queue(p.Rflush(tag=msg.tag))
        finally:
            self._slots.release()

    async def _version(self, msg: p.Tversion) -> None:
        # A Tversion aborts everything outstanding and starts a new session.
        for active in list(self.active.values()):
            active.scope.cancel()
        while self.active:
            await next(iter(self.active.values())).done.wait()
        self.handlers.release_all()
        # Only the exact string: "9P2000.Lx" stripped of its suffix is "9P2000"
        # (version(5)), which this server does not speak.
        if msg.version == p.VERSION_9P2000L and msg.msize >= _MIN_MSIZE:
            if not self.ctx.admission.negotiated(self):
                raise _Refused()
            self.msize = min(msg.msize, p.MAX_MSIZE)
            self.handlers.msize = self.msize
            self.negotiated = True
            version, msize = p.VERSION_9P2000L, self.msize
        else:
            self.negotiated = False
            # A refusal never offers more than the client asked for.
            version, msize = p.VERSION_UNKNOWN, min(msg.msize, self.msize)
        if self.negotiated:
            self.log.info("version", version=version.decode(), msize=msize)
        else:
            self._log_refusal("info", "version refused", asked=msg.version.decode("utf-8", "replace"), msize=msize)
        self._queue(p.Rversion(msize=msize, version=version, tag=msg.tag))

    # -- replies ---------------------------------------------------------------

    def _log_refusal(self, level: str, event: str, **kw) -> None:
        """Log a refused or failed request, within the server's rate limit."""
        dropped = self.ctx.refusal_log.allow()
        if dropped is None:
            return
        if dropped:
            kw["suppressed"] = dropped
        getattr(self.log, level)(event, **kw)

    def _log_error(self, msg: p.Message, exc: OSError) -> None:
        # Expected errnos (ENOENT on lookup, EEXIST, ...) are routine: debug level.
        self.log.debug("request error", request=type(msg).__name__, errno=exc.errno, reason=str(exc))

    def _reply_error(self, tag: int, code: int, inline: bool = False) -> None:
        reply = p.Rlerror(ecode=code, tag=tag)
        if inline:
            self._queue_inline(reply)
        else:
            self._queue(reply)

    @staticmethod
    def _add(out, reply: p.Message) -> int:
        """Append the buffers of ``reply``'s frame to ``out``; returns its length."""
        head, data = p.encode_parts(reply)
        if type(data) is tuple:    # pieces of a read across chunks: one buffer each
            out.append(head)
            out.extend(data)
            return len(head) + p.blob_length(data)
        n = len(data)
        if n >= _SEPARATE_DATA:
            out.append(head)
            out.append(data)
        else:
            out.append(head + data if n else head)
        return len(head) + n

    def _queue(self, reply: p.Message) -> None:
        """Queue a task's reply for the writer."""
        self._add(self._outq, reply)
        self._outq_ready.set()

    def _queue_inline(self, reply: p.Message) -> None:
        """Queue a reply made by the reader; :meth:`_send_inline` sends it."""
        self._inline_bytes += self._add(self._inline, reply)
        self._inline_count += 1

    def _take(self, own: list) -> list:
        """The buffers of everything queued for the writer, then ``own`` (emptied)."""
        if not self._outq:
            parts = own[:]
        else:
            parts = list(self._outq)
            self._outq.clear()
            parts += own
        own.clear()
        return parts

    async def _send_inline(self) -> None:
        """Send the reader's replies (after the writer's, if it is sending: backpressure)."""
        if not self._inline:
            return
        self._inline_bytes = self._inline_count = 0
        if self._send_lock.locked():
            async with self._send_lock:
                await self.transport.send_all(self._take(self._inline))
            return
        self._send_lock.acquire_nowait()  # no checkpoint: the common case costs nothing
        try:
            await self.transport.send_all(self._take(self._inline))
        finally:
            self._send_lock.release()

    async def _writer(self) -> None:
        try:
            while True:
                if not self._outq:
                    self._outq_ready = trio.Event()
                    await self._outq_ready.wait()
                async with self._send_lock:
                    while self._outq:
                        await self.transport.send_all(self._take([]))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The client is gone: stop reading too.
            self._stop_reading()
