"""Listening: binding sockets, running a server until it is signalled, ``ninep serve``.

9P listeners are TCP or unix sockets (owner-only by default); the admin API
listens on the store's ``admin.sock`` and, if configured, on TCP with a
bearer token. :func:`run_server` opens the store, serves until SIGINT or
SIGTERM, shuts down gracefully and closes the store.
"""

from __future__ import annotations

import errno
import gc
import os
import signal
import socket
import stat
import sys
from pathlib import Path

import structlog
import trio

from cas import Store

from .address import Address, parse_address
from .config import ConfigError, Reserve, ServerConfig, load_config
from .server import Server
from .storeopen import open_hint, open_options

log = structlog.get_logger(__name__)


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


async def serve_until_signalled(server: Server, listen: list[Address]) -> None:
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
             chunks=server.store.chunks.location,
             chunk_memory=server.store.chunks.stats().memory_limit,
             metadata_memory=server.store.cache_bytes,
             free_space_reserve=server.store.reserve_bytes)
    # Everything loaded so far (modules, the store) lives as long as the
    # process: keep it out of the cyclic collector, whose full passes would
    # otherwise walk it all and stall every client (~100 ms here).
    gc.collect()
    gc.freeze()
    warn_if_exposed(server)
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


def warn_if_exposed(server: Server) -> None:
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
               reserve: Reserve | None = None, chunks: str | None = None,
               chunk_memory: int | None = None, metadata_memory: int | None = None) -> int:
    """Entry point of ``ninep serve``.

    ``reserve`` overrides the configured free-space reserve, ``chunks``
    (``s3://BUCKET/PREFIX``) the configured chunk location of a new store,
    ``chunk_memory`` the configured bound of the memory cache of verified chunks
    and ``metadata_memory`` that of each dataset's metadata cache.
    """
    # Whatever this process creates is owner-only unless it says otherwise: the
    # store sets its own modes, but DuckDB creates its WAL and spill files
    # with the umask (cas/perms.py).
    os.umask(0o077)
    try:
        config = load_config(config_path) if config_path else ServerConfig()
    except ConfigError as exc:
        print(f"ninep: {exc}", file=sys.stderr)
        return 2
    options: dict = {}
    try:
        options = open_options(config, chunks=chunks)
        if chunk_memory is not None:
            options["chunk_memory_bytes"] = chunk_memory
        if metadata_memory is not None:
            options["cache_bytes"] = metadata_memory
        reserve_bytes = (reserve or config.free_space_reserve).resolve(store_path)
        store = Store.open(store_path, create=True, commit_interval=config.commit_interval,
                           reserve_bytes=reserve_bytes, **options)
    except Exception as exc:  # the store explains what is wrong (lock, format version, bucket, ...)
        detail = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
        print(f"ninep: cannot open store {store_path}: {detail}{open_hint(exc, options)}", file=sys.stderr)
        return 1
    try:
        if "main" not in store.datasets():
            store.create_dataset("main")
        trio.run(serve_until_signalled, Server(store, config), listen)
    finally:
        store.close()
        log.info("store closed", store=store_path)
    return 0
