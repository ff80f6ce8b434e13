"""What a connection works with: the server's shared services, passed in.

A :class:`~.session.Session` and its :class:`~.handlers.Handlers` see the
server only through these: the namespace of views, a runner for blocking
storage work, metrics, the lock table, identities and limits.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import trio

from .access import HostIdentities
from .admission import Admission
from .config import ServerConfig
from .locks import LockTable
from .metrics import ServerMetrics
from .namespace import Namespace
from .ratelimit import LogLimiter


class IoRunner:
    """Runs blocking storage work (data I/O, fsync) in worker threads, a few at a time.

    :meth:`drain` waits for the calls already running (a read-only replica
    closes its old working copy once no request uses it any more).
    """

    def __init__(self, threads: int = 8):
        self._limiter = trio.CapacityLimiter(threads)
        self._epoch = 0
        self._running: dict[int, int] = {}  # epoch -> calls running
        self._finished: trio.Event | None = None

    async def __call__(self, fn, *args):
        epoch = self._epoch
        self._running[epoch] = self._running.get(epoch, 0) + 1
        try:
            return await trio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._limiter)
        finally:
            left = self._running[epoch] - 1
            if left:
                self._running[epoch] = left
            else:
                del self._running[epoch]
                if self._finished is not None:
                    self._finished.set()
                    self._finished = None

    async def drain(self) -> None:
        """Wait until every call started before this one has finished (not later ones)."""
        self._epoch += 1
        mark = self._epoch
        while any(epoch < mark for epoch in self._running):
            if self._finished is None:
                self._finished = trio.Event()
            await self._finished.wait()


@dataclass(frozen=True, eq=False)
class HandlerContext:
    """What the 9P operations of every connection share."""

    namespace: Namespace
    run_io: IoRunner
    metrics: ServerMetrics
    locks: LockTable
    host_identity: HostIdentities
    max_fids: int
    max_file_size: int


@dataclass(eq=False)
class SessionContext:
    """What a connection needs beyond its operations: limits, admission, logging."""

    handlers: HandlerContext
    config: ServerConfig
    admission: Admission
    refusal_log: LogLimiter
    #: How long requests in flight may take to finish once the server stops.
    shutdown_grace: float = 10.0

    @property
    def metrics(self) -> ServerMetrics:
        """The server's metrics (the same object the handlers count into)."""
        return self.handlers.metrics
