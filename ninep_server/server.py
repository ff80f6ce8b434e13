"""The ninep server: listeners, sessions, exports and the commit loop."""

from __future__ import annotations

import errno
import functools
import os
import signal
import socket
import stat
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import structlog
import trio

from cas import FsError, Store

from .access import host_identity
from .address import Address
from .config import ConfigError, ServerConfig, load_config
from . import protocol as p
from .fids import LIVE, SNAPDIR, SNAPSHOT, View
from .locks import LockTable
from .session import Session
from .snapdir import SNAPDIR_NAME, SNAPDIR_QID_BASE, SnapshotDirectory, snapshot_qid_base

log = structlog.get_logger(__name__)


@dataclass
class Metrics:
    """Counters the server keeps (exported by the admin API later)."""

    requests: Counter = field(default_factory=Counter)
    seconds: defaultdict = field(default_factory=lambda: defaultdict(float))
    bytes_read: int = 0
    bytes_written: int = 0
    commits: int = 0
    commit_seconds: float = 0.0
    commit_failures: int = 0


class Server:
    """Serves the datasets of one open store to any number of sessions."""

    def __init__(self, store: Store, config: ServerConfig | None = None):
        self.store = store
        self.config = config or ServerConfig()
        self.locks = LockTable()
        self.metrics = Metrics()
        self.sessions: dict[int, Session] = {}
        self.shutdown_grace = 10.0
        self._next_session = 1
        self._views: dict[str, View] = {}
        self._identities: dict[int, tuple | None] = {}
        self._io_limiter = trio.CapacityLimiter(8)
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
            view = View(aname, volume, export, read_only=export.read_only, kind=LIVE, dataset=aname)
            self._views[aname] = view
        return view

    # -- /.snapshots -------------------------------------------------------------

    def _snapdir_view(self, live: View) -> View:
        key = f"{live.dataset}/.snapshots"
        view = self._views.get(key)
        if view is None:
            directory = SnapshotDirectory(self.store, live.dataset, live.volume.root)
            view = View(key, directory, live.export, True, SNAPDIR_QID_BASE, SNAPDIR, live.dataset)
            self._views[key] = view
        return view

    def _snapshot_view(self, snapdir: View, name: bytes) -> View:
        snap = snapdir.volume.find(name)
        key = f"{snap.dataset}@{snap.name}"
        view = self._views.get(key)
        if view is None or view.qid_base != snapshot_qid_base(snap.id):
            volume = self.store.snapshot_volume(snap.dataset, snap.name)
            view = View(key, volume, snapdir.export, True, snapshot_qid_base(snap.id), SNAPSHOT, snap.dataset)
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
        self.metrics.requests[request] += 1
        self.metrics.seconds[request] += seconds

    def metrics_read(self, n: int) -> None:
        self.metrics.bytes_read += n

    def metrics_written(self, n: int) -> None:
        self.metrics.bytes_written += n

    # -- serving ---------------------------------------------------------------

    async def commit(self) -> None:
        """One group commit, in a worker thread."""
        async with self._commit_lock:
            started = trio.current_time()
            try:
                await trio.to_thread.run_sync(self.store.commit)
            except Exception:
                self.metrics.commit_failures += 1
                log.exception("commit failed; will retry")
                return
            self.metrics.commits += 1
            self.metrics.commit_seconds += trio.current_time() - started

    async def _commit_loop(self) -> None:
        while True:
            await trio.sleep(self.config.commit_interval)
            await self.commit()

    async def _handle(self, stream: trio.abc.Stream, peer: str) -> None:
        if len(self.sessions) >= self.config.max_connections:
            log.warning("refusing connection: too many clients", peer=peer, limit=self.config.max_connections)
            await stream.aclose()
            return
        session_id = self._next_session
        self._next_session += 1
        session = Session(self, stream, session_id, peer)
        self.sessions[session_id] = session
        try:
            await session.run()
        finally:
            del self.sessions[session_id]

    async def serve(self, listeners: list[trio.SocketListener], *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Accept connections on ``listeners`` until cancelled or :meth:`shutdown`."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._commit_loop)
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


async def open_listener(address: Address, unix_mode: int = 0o600) -> tuple[trio.SocketListener, str]:
    """Bind one listener; returns it and the address actually bound."""
    if address.kind == "tcp":
        listeners = await trio.open_tcp_listeners(address.port, host=address.host)
        listener = listeners[0]
        for extra in listeners[1:]:
            await extra.aclose()
        host, port = listener.socket.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return listener, f"tcp:{shown}:{port}"
    path = Path(address.path)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(str(path))
            probe.close()
            raise OSError(errno.EADDRINUSE, f"another server is listening on {path}")
        except ConnectionRefusedError:
            path.unlink()  # a stale socket from a server that died
        finally:
            probe.close()
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~unix_mode)
    try:
        await sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, unix_mode)
    sock.listen(128)
    return trio.SocketListener(sock), f"unix:{path}"


async def _serve_until_signalled(server: Server, listen: list[Address]) -> None:
    listeners = []
    try:
        for address in listen:
            listener, shown = await open_listener(address, server.config.unix_socket_mode)
            listeners.append(listener)
            server.listening.append(shown)
    except OSError as exc:
        for listener in listeners:
            await listener.aclose()
        raise SystemExit(f"ninep: cannot listen: {exc.strerror or exc}") from None
    exports = server.store.datasets() if server.config.export_unlisted else sorted(server.config.exports)
    log.info("serving", listen=server.listening, exports=exports, store=str(server.store.path))
    _warn_if_exposed(server)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, listeners)
            for shown in server.listening:
                print(f"listening {shown}", flush=True)
            async for signum in signals:
                log.info("signal received", signal=signal.Signals(signum).name)
                break
            await server.shutdown()
    for shown in server.listening:
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


def run_server(store_path: str, listen: list[Address], config_path: str | None = None) -> int:
    """Entry point of ``ninep serve``."""
    try:
        config = load_config(config_path) if config_path else ServerConfig()
    except ConfigError as exc:
        print(f"ninep: {exc}", file=sys.stderr)
        return 2
    try:
        store = Store.open(store_path, create=True, commit_interval=config.commit_interval)
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
