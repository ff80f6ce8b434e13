"""The ninep server: listeners, sessions, exports and the commit loop."""

from __future__ import annotations

import errno
import functools
import gc
import os
import signal
import socket
import stat
import sys
import time
from pathlib import Path

import structlog
import trio

from cas import FsError, Store

from .access import host_identity
from .address import Address, parse_address
from .config import ConfigError, Reserve, ServerConfig, load_config
from . import protocol as p
from .fids import LIVE, SNAPDIR, SNAPSHOT, View
from . import __version__
from .admin.jobs import JobManager
from .admin.operations import Operations
from .admission import Admission
from .locks import LockTable
from .ratelimit import LogLimiter
from .metrics import ServerMetrics
from .scheduler import SnapshotScheduler, parse_schedules
from .session import Session
from .snapdir import SNAPDIR_NAME, SNAPDIR_QID_BASE, SnapshotDirectory, snapshot_qid_base

log = structlog.get_logger(__name__)


class Server:
    """Serves the datasets of one open store to any number of sessions."""

    def __init__(self, store: Store, config: ServerConfig | None = None):
        self.store = store
        self.config = config or ServerConfig()
        self.locks = LockTable(self.config.max_locks_per_connection, self.config.lock_waits_per_connection)
        self.admission = Admission(self.config.max_connections, self.config.max_handshakes)
        #: Rate limit for log lines about refused or failed requests (all sessions).
        self.refusal_log = LogLimiter()
        self.metrics = ServerMetrics()
        self.metrics.add_gauges(self._gauges)
        self.started = time.time()
        self.sessions: dict[int, Session] = {}
        self.shutdown_grace = 10.0
        self._next_session = 1
        self._views: dict[str, View] = {}
        self._identities: dict[int, tuple | None] = {}
        self._io_limiter = trio.CapacityLimiter(8)
        self.operations = Operations(store)
        self.jobs = JobManager()
        self._space_cache: tuple[float, tuple[int, int, float]] | None = None
        self._schedules_changed = trio.Event()
        self.scheduler = SnapshotScheduler(self.create_snapshot, self.delete_snapshot, self._snapshot_names, time.time)
        self.admin_listening: list[str] = []
        self._commit_lock = trio.Lock()
        self.listening: list[str] = []
        self._accept_scope = trio.CancelScope()
        self._sessions_scope = trio.CancelScope()
        self._stopped = trio.Event()

    # -- what sessions use ------------------------------------------------------

    def view_for(self, aname: str, peer_host: str | None) -> View:
        """The live view of the dataset an attach names, after access checks."""
        export = self.config.export(aname)
        if export is None or aname not in self.store.datasets():
            raise FsError(errno.ENOENT, f"no export named {aname!r}")
        if not export.allows_peer(peer_host):
            raise FsError(errno.EACCES, f"{peer_host} may not attach to {aname!r}")
        view = self._views.get(aname)
        if view is None:
            volume = self.store.volume(aname)
            read_only = export.read_only or self.store.dataset_properties(aname)["read_only"]
            view = View(aname, volume, export, read_only=read_only, kind=LIVE, dataset=aname)
            self._views[aname] = view
        return view

    # -- /.snapshots -------------------------------------------------------------

    def _snapdir_view(self, live: View) -> View:
        key = f"{live.dataset}/.snapshots"
        view = self._views.get(key)
        if view is None:
            directory = SnapshotDirectory(self.store, live.dataset, live.volume.root)
            view = View(key, directory, live.export, True, SNAPDIR_QID_BASE, SNAPDIR, live.dataset, outer=live)
            self._views[key] = view
        return view

    def _snapshot_view(self, snapdir: View, name: bytes) -> View:
        snap = snapdir.volume.find(name)
        key = f"{snap.dataset}@{snap.name}"
        view = self._views.get(key)
        if view is None or view.qid_base != snapshot_qid_base(snap.id):
            volume = self.store.snapshot_volume(snap.dataset, snap.name)
            view = View(key, volume, snapdir.export, True, snapshot_qid_base(snap.id), SNAPSHOT, snap.dataset, outer=snapdir)
            self._views[key] = view
        return view

    def cross(self, view: View, ino: int, name: bytes) -> tuple[View, int] | None:
        """Where a walk of ``name`` from (view, ino) leaves the view, if it does."""
        if view.kind == LIVE and name == SNAPDIR_NAME and ino == view.volume.root:
            snapdir = self._snapdir_view(view)
            return snapdir, snapdir.volume.root
        if view.kind == SNAPDIR:
            snap = self._snapshot_view(view, name)
            return snap, snap.volume.root
        return None

    def root_extras(self, live: View) -> list[p.Dirent]:
        """Synthetic entries of an export's root directory listing."""
        if self.config.snapdir_hidden:
            return []
        snapdir = self._snapdir_view(live)
        qid = p.Qid(p.QidType.DIR, 1, snapdir.qid_base + snapdir.volume.root)
        return [p.Dirent(qid, 3, p.DT_DIR, SNAPDIR_NAME)]

    async def create_snapshot(self, dataset: str, name: str):
        """Take a snapshot (a barrier in the commit stream) in a worker thread."""
        async with self._commit_lock:
            info = await trio.to_thread.run_sync(self.store.create_snapshot, dataset, name)
        log.info("snapshot created", dataset=dataset, snapshot=name, generation=info.gen)
        return info

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

    def properties_changed(self, dataset: str, props: dict) -> None:
        """Apply a dataset's new properties to what is being served."""
        view = self._views.get(dataset)
        if view is not None:
            view.read_only = view.export.read_only or props["read_only"]
        self._schedules_changed.set()
        self._schedules_changed = trio.Event()

    async def _snapshot_names(self, dataset: str) -> list[str]:
        return [s.name for s in await trio.to_thread.run_sync(self.store.snapshots, dataset)]

    async def delete_snapshot(self, dataset: str, name: str) -> None:
        async with self._commit_lock:
            await trio.to_thread.run_sync(self.store.delete_snapshot, dataset, name)
        self._views.pop(f"{dataset}@{name}", None)
        log.info("snapshot deleted", dataset=dataset, snapshot=name)

    def host_identity(self, uid: int):
        """Host user-database identity of a uid, looked up once per server."""
        if uid not in self._identities:
            self._identities[uid] = host_identity(uid)
        return self._identities[uid]

    async def run_io(self, fn, *args):
        """Run blocking storage work (data I/O, fsync) in a worker thread."""
        return await trio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._io_limiter)

    def observe(self, request: str, seconds: float) -> None:
        self.metrics.observe(request, seconds)

    def metrics_read(self, n: int) -> None:
        self.metrics.read_bytes += n

    def metrics_written(self, n: int) -> None:
        self.metrics.written_bytes += n

    def _gauges(self) -> dict[str, tuple[str, float]]:
        """Figures read at scrape time (in a worker thread)."""
        volumes = [v.volume for v in list(self._views.values()) if v.kind == LIVE]
        hits = sum(v.cache_hits for v in volumes)
        misses = sum(v.cache_misses for v in volumes)
        space = self._space_figures()
        return {
            "ninep_connected_clients": ("Connected 9P sessions", len(self.sessions)),
            "ninep_uptime_seconds": ("Seconds since the server started", time.time() - self.started),
            "ninep_dirty_bytes": ("File data buffered in memory, not yet stored", sum(v.dirty_bytes for v in volumes)),
            "ninep_cache_hit_ratio": ("Inode lookups served from memory", hits / (hits + misses) if hits + misses else 1.0),
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

    # -- admin -----------------------------------------------------------------

    async def admin_call(self, fn, *args):
        """Run ``fn(operations, *args)`` in a worker thread, between commits."""
        async with self._commit_lock:
            return await trio.to_thread.run_sync(lambda: fn(self.operations, *args))

    async def admin_read(self, fn, *args):
        """Run a read-only ``fn(operations, *args)`` in a worker thread (no commit lock)."""
        return await trio.to_thread.run_sync(lambda: fn(self.operations, *args))

    def start_job(self, kind: str, params: dict, work):
        """Start ``work(operations, progress)`` as a background job."""
        return self.jobs.start(kind, params, lambda progress: work(self.operations, progress))

    async def render_metrics(self) -> bytes:
        return await trio.to_thread.run_sync(self.metrics.render)

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
        }

    def check_dataset_deletable(self, name: str) -> None:
        """Refuse to delete a dataset that clients use or the config exports."""
        from .admin.errors import ApiError

        if name in self.config.exports:
            raise ApiError(409, "dataset_exported", f"{name!r} is exported by the configuration file")
        for session in self.sessions.values():
            if session.uses_dataset(name):
                raise ApiError(409, "dataset_in_use", f"{name!r} is attached by session {session.id} ({session.peer})")

    def forget_snapshot_view(self, dataset: str, name: str) -> None:
        self._views.pop(f"{dataset}@{name}", None)

    def forget_dataset(self, dataset: str) -> None:
        """Drop every cached view of a deleted dataset."""
        for key in [k for k, v in self._views.items() if v.dataset == dataset]:
            del self._views[key]
        self._schedules_changed.set()
        self._schedules_changed = trio.Event()

    async def _serve_admin(self, sock: socket.socket, token: str | None, *, task_status=trio.TASK_STATUS_IGNORED):
        from hypercorn.config import Config as HypercornConfig
        from hypercorn.trio import serve as hypercorn_serve

        from .admin.app import create_app

        config = HypercornConfig()
        # hypercorn owns the descriptor from here on (and closes it at shutdown).
        config.bind = [f"fd://{sock.detach()}"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 2
        await hypercorn_serve(create_app(self, token=token), config, task_status=task_status)

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

        while self.config.gc_interval > 0:
            await trio.sleep(self.config.gc_interval)
            try:
                await trio.to_thread.run_sync(functools.partial(collect, self.store, commit=False))
            except Exception:
                log.exception("background gc failed; will retry")

    async def _handle(self, stream: trio.abc.Stream, peer: str) -> None:
        # ``max_connections`` counts sessions past Tversion (Session checks it
        # there); connections still negotiating have their own, smaller cap,
        # and the oldest of them makes room for a new one.
        session_id = self._next_session
        self._next_session += 1
        session = Session(self, stream, session_id, peer)
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
                nursery.start_soon(self._commit_loop)
                nursery.start_soon(self._gc_loop)
                self.jobs.bind(nursery)
                nursery.start_soon(self.scheduler.run, self._schedules, lambda: self._schedules_changed)
                for sock, token in admin:
                    await nursery.start(self._serve_admin, sock, token)
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
        with trio.move_on_after(self.shutdown_grace + 1):
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


def bind_socket(address: Address, unix_mode: int = 0o600) -> tuple[socket.socket, str]:
    """A bound, listening stdlib socket for ``address``, and the address it got.

    A unix socket is created with ``unix_mode`` (a stale one left by a dead
    server is replaced; a live one is an error).
    """
    if address.kind == "tcp":
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return sock, f"tcp:{shown}:{port}"
    path = Path(address.path)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(path))
            except ConnectionRefusedError:
                path.unlink()  # a stale socket from a server that died
            else:
                raise OSError(errno.EADDRINUSE, f"another server is listening on {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~unix_mode)
    try:
        sock.bind(str(path))
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, unix_mode)
    sock.listen(128)
    return sock, f"unix:{path}"


async def open_listener(address: Address, unix_mode: int = 0o600) -> tuple[trio.SocketListener, str]:
    """Bind one 9P listener; returns it and the address actually bound."""
    sock, shown = bind_socket(address, unix_mode)
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock)), shown


def open_admin_sockets(server: Server) -> list[tuple[socket.socket, str | None]]:
    """Bind the admin API: the owner-only unix socket, and TCP if configured."""
    config = server.config
    out = []
    path = config.admin_socket if config.admin_socket is not None else str(Path(server.store.path) / "admin.sock")
    if path:
        sock, shown = bind_socket(Address("unix", path=path), 0o600)
        out.append((sock, None))
        server.admin_listening.append(shown)
    if config.admin_listen:
        sock, shown = bind_socket(parse_address(config.admin_listen))
        out.append((sock, config.admin_token))
        server.admin_listening.append(shown)
    return out


async def _serve_until_signalled(server: Server, listen: list[Address]) -> None:
    listeners = []
    try:
        for address in listen:
            listener, shown = await open_listener(address, server.config.unix_socket_mode)
            listeners.append(listener)
            server.listening.append(shown)
        admin = open_admin_sockets(server)
    except OSError as exc:
        for listener in listeners:
            await listener.aclose()
        raise SystemExit(f"ninep: cannot listen: {exc.strerror or exc}") from None
    exports = server.store.datasets() if server.config.export_unlisted else sorted(server.config.exports)
    log.info("serving", listen=server.listening, admin=server.admin_listening, exports=exports, store=str(server.store.path),
             free_space_reserve=server.store.reserve_bytes)
    # Everything loaded so far (modules, the store) lives as long as the
    # process: keep it out of the cyclic collector, whose full passes would
    # otherwise walk it all and stall every client (~100 ms here).
    gc.collect()
    gc.freeze()
    _warn_if_exposed(server)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, listeners, admin)
            for shown in server.listening:
                print(f"listening {shown}", flush=True)
            for shown in server.admin_listening:
                print(f"admin {shown}", flush=True)
            async for signum in signals:
                log.info("signal received", signal=signal.Signals(signum).name)
                break
            await server.shutdown()
    for shown in server.listening + server.admin_listening:
        if shown.startswith("unix:"):
            Path(shown[5:]).unlink(missing_ok=True)


def _warn_if_exposed(server: Server) -> None:
    if not any(addr.startswith("tcp:") for addr in server.listening):
        return
    names = server.store.datasets()
    risky = [n for n in names if (e := server.config.export(n)) and not e.read_only and e.squash == "none"]
    if risky:
        log.warning(
            "TCP clients are trusted to say which uid they are: these exports are writable without squash; "
            "prefer a unix socket (mode 0600), read_only, or squash (see README, Security)",
            exports=risky,
        )


def run_server(store_path: str, listen: list[Address], config_path: str | None = None,
               reserve: Reserve | None = None) -> int:
    """Entry point of ``ninep serve``; ``reserve`` overrides the configured free-space reserve."""
    # Whatever this process creates is owner-only unless it says otherwise: the
    # store sets its own modes, but DuckDB creates its WAL and spill files
    # with the umask (cas/perms.py).
    os.umask(0o077)
    try:
        config = load_config(config_path) if config_path else ServerConfig()
    except ConfigError as exc:
        print(f"ninep: {exc}", file=sys.stderr)
        return 2
    try:
        reserve_bytes = (reserve or config.free_space_reserve).resolve(store_path)
        store = Store.open(store_path, create=True, commit_interval=config.commit_interval,
                           reserve_bytes=reserve_bytes)
    except Exception as exc:  # the store explains what is wrong (lock, format version, ...)
        print(f"ninep: cannot open store {store_path}: {exc}", file=sys.stderr)
        return 1
    try:
        if "main" not in store.datasets():
            store.create_dataset("main")
        trio.run(_serve_until_signalled, Server(store, config), listen)
    finally:
        store.close()
        log.info("store closed", store=store_path)
    return 0
