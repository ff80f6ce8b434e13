"""The ninep server: sessions over one store, and its commit, gc and snapshot loops."""

from __future__ import annotations

import dataclasses
import errno
import functools
import socket
import time

import structlog
import trio

from cas import Store

from . import __version__
from .access import HostIdentities
from .admin.context import AdminContext
from .admin.jobs import JobManager
from .admin.operations import Operations
from .admission import Admission
from .catalogship import shipper_for
from .config import ServerConfig
from .context import HandlerContext, IoRunner, SessionContext
from .locks import LockTable
from .metrics import ServerMetrics
from .namespace import Namespace
from .ratelimit import LogLimiter
from .scheduler import SnapshotScheduler, parse_schedules
from .session import Session

log = structlog.get_logger(__name__)


class Server:
    """Serves the datasets of one open store to any number of sessions.

    It owns the store's services (namespace, locks, metrics, admin jobs),
    the sessions, the commit, gc and snapshot-schedule loops, and shutdown.
    Binding sockets and running until signalled is :mod:`.listen`'s job.
    """

    def __init__(self, store: Store, config: ServerConfig | None = None, *, replica=None):
        self.store = store
        #: a read-only replica's refresher (:mod:`.replica`), run instead of the commit, gc,
        #: pool, catalog-copy and schedule loops: a working copy is never written
        self.replica = replica
        self.config = config or ServerConfig()
        self.locks = LockTable(self.config.max_locks_per_connection, self.config.lock_waits_per_connection)
        self.admission = Admission(self.config.max_connections, self.config.max_handshakes)
        #: Rate limit for log lines about refused or failed requests (all sessions).
        self.refusal_log = LogLimiter()
        self.metrics = ServerMetrics()
        self.metrics.add_gauges(self._gauges)
        self.metrics.add_chunk_backend(store.chunks.location, store.chunks.stats)
        self.started = time.time()
        self.sessions: dict[int, Session] = {}
        self._next_session = 1
        self._commit_lock = trio.Lock()
        self.namespace = Namespace(store, self.config, self._commit_lock)
        self.sessions_context = SessionContext(
            HandlerContext(self.namespace, IoRunner(), self.metrics, self.locks, HostIdentities(),
                           self.config.max_fids_per_connection, store.max_file_size),
            self.config, self.admission, self.refusal_log,
        )
        self.operations = Operations(store)
        self.jobs = JobManager()
        self._space_cache: tuple[float, tuple[int, int, float]] | None = None
        self._schedules_changed = trio.Event()
        #: ships catalog copies to the bucket (stores on object storage only)
        self.catalog_shipper = shipper_for(store, self.config) if replica is None else None
        self.scheduler = SnapshotScheduler(self.namespace.create_snapshot, self.namespace.delete_snapshot,
                                           self.namespace.snapshot_names, time.time)
        self.admin = AdminContext(self.operations, self.namespace, self.jobs, self.metrics, self.config,
                                  self._commit_lock, self.status, self._dataset_user, self._wake_scheduler)
        self.admin_listening: list[str] = []
        self.listening: list[str] = []
        self._accept_scope = trio.CancelScope()
        self._sessions_scope = trio.CancelScope()
        self._stopped = trio.Event()

    async def _schedules(self) -> set:
        """Snapshot schedules from the configuration and from dataset properties."""
        wanted = {sch for e in self.config.exports.values() for sch in e.schedules}
        rows = await trio.to_thread.run_sync(self.operations.list_datasets)
        for row in rows:
            try:
                wanted |= set(parse_schedules(row["name"], row["schedule"]))
            except ValueError as exc:
                log.error("ignoring a bad snapshot schedule", dataset=row["name"], error=str(exc))
        return wanted

    def _wake_scheduler(self) -> None:
        self._schedules_changed.set()
        self._schedules_changed = trio.Event()

    def _dataset_user(self, dataset: str) -> str | None:
        for session in self.sessions.values():
            if session.uses_dataset(dataset):
                return f"{session.id} ({session.peer})"
        return None

    def _gauges(self) -> dict[str, tuple[str, float]]:
        """Figures read at scrape time (in a worker thread)."""
        volumes = self.namespace.live_volumes()
        hits = sum(v.cache_hits for v in volumes)
        misses = sum(v.cache_misses for v in volumes)
        space = self._space_figures()
        return {
            "ninep_connected_clients": ("Connected 9P sessions", len(self.sessions)),
            "ninep_uptime_seconds": ("Seconds since the server started", time.time() - self.started),
            "ninep_dirty_bytes": ("File data buffered in memory, not yet stored", sum(v.dirty_bytes for v in volumes)),
            "ninep_cache_hit_ratio": ("Inode lookups served from memory", hits / (hits + misses) if hits + misses else 1.0),
            "ninep_metadata_records": ("Inode records in the metadata caches of the datasets in use",
                                       sum(v.cached[0] for v in volumes)),
            "ninep_metadata_rows": ("Compact inode rows in the metadata caches of the datasets in use",
                                    sum(v.cached[1] for v in volumes)),
            "ninep_chunk_store_bytes": ("Bytes of unique chunks the catalog references", space[0]),
            "ninep_chunks": ("Unique chunks the catalog references", space[1]),
            "ninep_dedup_ratio": ("Bytes referenced by all files and snapshots / unique chunk bytes", space[2]),
        }

    def _space_figures(self) -> tuple[int, int, float]:
        """(unique bytes, chunks, dedup ratio) from the catalog, cached for 30 s."""
        now = time.monotonic()
        if self._space_cache is None or now - self._space_cache[0] > 30:
            unique, count = self.store.catalog.read(
                "SELECT coalesce(sum(length), 0), count(*) FROM (SELECT DISTINCT hash, length FROM extents)"
            )[0]
            (referenced,) = self.store.catalog.read("SELECT coalesce(sum(length), 0) FROM extents")[0]
            self._space_cache = (now, (int(unique), int(count), referenced / unique if unique else 1.0))
        return self._space_cache[1]

    def status(self) -> dict:
        """What `ninep status` shows: listeners, exports, sessions, commits."""
        return {
            "version": __version__,
            "store": str(self.store.path),
            "listening": self.listening,
            "admin": self.admin_listening,
            "exports": [
                {"name": name, "read_only": e.read_only, "squash": e.squash}
                for name in self.store.datasets()
                if (e := self.config.export(name)) is not None
            ],
            "sessions": [s.describe() for s in self.sessions.values()],
            "commits": {
                "count": int(self.metrics.registry.get_sample_value("ninep_commit_seconds_count") or 0),
                "seconds": self.metrics.registry.get_sample_value("ninep_commit_seconds_sum") or 0.0,
                "failures": int(self.metrics.registry.get_sample_value("ninep_commit_failures_total") or 0),
                "interval": self.config.commit_interval,
            },
            "uptime_seconds": time.time() - self.started,
            "chunks": self._chunk_figures(),
        }

    def _chunk_figures(self) -> dict:
        """Where the chunks live and the backend's counters since the server started."""
        counters = self.store.chunks.stats()
        return {"location": self.store.chunks.location, **dataclasses.asdict(counters),
                "cache_hit_ratio": counters.cache_hit_ratio,
                "memory_hit_ratio": counters.memory_hit_ratio}

    # -- serving ---------------------------------------------------------------

    async def commit(self) -> None:
        """One group commit, in a worker thread."""
        async with self._commit_lock:
            started = trio.current_time()
            try:
                await trio.to_thread.run_sync(self.store.commit)
            except Exception:
                self.metrics.commit_failures.inc()
                log.exception("commit failed; will retry")
                return
            self.metrics.commits.observe(trio.current_time() - started)

    async def _commit_loop(self) -> None:
        while True:
            await trio.sleep(self.config.commit_interval)
            await self.commit()

    async def _gc_loop(self) -> None:
        """Background gc every ``gc_interval`` seconds (0: off), in a worker thread.

        Not under ``self._commit_lock``: cas.gc is safe against concurrent
        commits by itself and takes the store's commit lock per sweep batch,
        so holding the trio lock would only stall the commit loop meanwhile.
        """
        from cas.gc import collect
        from cas.pool import PoolStaleError

        while self.config.gc_interval > 0:
            await trio.sleep(self.config.gc_interval)
            try:
                await trio.to_thread.run_sync(functools.partial(collect, self.store, commit=False))
            except PoolStaleError as exc:
                log.warning("background gc skipped", reason=str(exc))
            except Exception:
                log.exception("background gc failed; will retry")

    async def _pool_loop(self) -> None:
        """Publish the store's chunk set every ``refresh_interval`` seconds (a store in a
        chunk pool, cas/pool.py), in a worker thread; gc publishes before it runs, too."""
        pool = getattr(self.store, "pool", None)
        if pool is None:
            return
        while True:
            await trio.sleep(pool.refresh_interval)
            try:
                await trio.to_thread.run_sync(pool.publish)
            except Exception:
                log.exception("publishing the chunk set failed; will retry")

    def replace_store(self, store: Store) -> None:
        """Serve ``store`` from now on (a read-only replica's newer working copy); the
        caller closes the old one once :meth:`IoRunner.drain` says no request uses it."""
        self.store = store
        self.namespace.replace_store(store)

    async def drain_io(self) -> None:
        """Wait for the storage work running in worker threads now (not later work)."""
        await self.sessions_context.handlers.run_io.drain()

    async def _handle(self, stream: trio.abc.Stream, peer: str) -> None:
        # ``max_connections`` counts sessions past Tversion (Session checks it
        # there); connections still negotiating have their own, smaller cap,
        # and the oldest of them makes room for a new one.
        session_id = self._next_session
        self._next_session += 1
        session = Session(self.sessions_context, stream, session_id, peer)
        self.sessions[session_id] = session
        self.admission.arrive(session)
        try:
            await session.run()
        finally:
            self.admission.leave(session)
            del self.sessions[session_id]

    async def serve(
        self,
        listeners: list[trio.SocketListener],
        admin: list[tuple[socket.socket, str | None]] = (),
        *,
        task_status=trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept connections on ``listeners`` until cancelled or :meth:`shutdown`.

        ``admin`` holds bound sockets for the admin API, each with the bearer
        token it requires (None for the owner-only unix socket).
        """
        try:
            async with trio.open_nursery() as nursery:
                if self.replica is not None:
                    await nursery.start(self.replica.run, self)
                else:
                    nursery.start_soon(self._commit_loop)
                    nursery.start_soon(self._gc_loop)
                    nursery.start_soon(self._pool_loop)
                    if self.catalog_shipper is not None:
                        await nursery.start(self.catalog_shipper.run)
                    nursery.start_soon(self.scheduler.run, self._schedules, lambda: self._schedules_changed)
                self.jobs.bind(nursery)
                if admin:
                    from .admin.app import serve as serve_admin  # starlette and hypercorn load only when used

                    for sock, token in admin:
                        await nursery.start(serve_admin, self.admin, sock, token)
                async with trio.open_nursery() as sessions:
                    self._sessions_scope = sessions.cancel_scope
                    async with trio.open_nursery() as acceptors:
                        self._accept_scope = acceptors.cancel_scope
                        for listener in listeners:
                            acceptors.start_soon(self._accept_loop, listener, sessions)
                        task_status.started()
                nursery.cancel_scope.cancel()  # stops the commit loop
        finally:
            self._stopped.set()

    async def _accept_loop(self, listener: trio.SocketListener, sessions: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        log.error("accept failed; retrying", error=str(exc))
                        await trio.sleep(0.1)
                        continue
                    raise
                sessions.start_soon(self._handle, stream, _peer_name(stream))

    async def shutdown(self) -> None:
        """Stop accepting, finish requests in flight, close sessions, commit."""
        log.info("shutting down", sessions=len(self.sessions))
        self._accept_scope.cancel()
        for session in list(self.sessions.values()):
            session.stop()
        with trio.move_on_after(self.sessions_context.shutdown_grace + 1):
            while self.sessions:
                await trio.sleep(0.02)
        self._sessions_scope.cancel()
        await self._stopped.wait()
        await self.commit()


def _peer_name(stream: trio.abc.Stream) -> str:
    sock = getattr(stream, "socket", None)
    try:
        name = sock.getpeername()
    except (AttributeError, OSError):
        return "unknown"
    if sock.family == socket.AF_UNIX:
        return f"unix:{name or ''}"
    host, port = name[0], name[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
