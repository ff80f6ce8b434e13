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
    """Runs blocking storage work (data I/O, fsync) in worker threads, a few at a time."""

    def __init__(self, threads: int = 8):
        self._limiter = trio.CapacityLimiter(threads)

    async def __call__(self, fn, *args):
        return await trio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._limiter)


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
