"""``ninep serve --replica``: serve a store's snapshots read-only from its catalog copies.

A replica on another host restores the newest catalog copy that a store
ships to its bucket (cas/replicacopy.py) and serves it read-only through the
ordinary :class:`~.server.Server`: every export is read-only, and no commit,
gc, snapshot-schedule or catalog-copy loop runs. Instead :class:`Replica`
runs in the server's nursery. Every ``poll`` seconds it looks for a newer
copy; when one appears it restores it in a worker thread, publishes the
chunks of both copies in the pool, moves every client's views to the new
copy at once (:meth:`.namespace.Namespace.replace_store`), waits for the
requests still running on the old copy (:meth:`.context.IoRunner.drain`),
closes and deletes the old working copy, and publishes the new copy's
chunks alone. It republishes every pool refresh interval, so the primary's
gc keeps every chunk the replica may read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys

import structlog
import trio

from cas import Store

from .config import ConfigError, ServerConfig, load_config
from .server import Server

log = structlog.get_logger(__name__)

#: seconds between looks for a newer catalog copy
DEFAULT_POLL = 60.0


@dataclasses.dataclass(frozen=True)
class ReplicaConfig(ServerConfig):
    """A server configuration whose every export is read-only and schedules nothing."""

    def export(self, dataset: str):
        export = super().export(dataset)
        return None if export is None else dataclasses.replace(export, read_only=True, schedules=())


def replica_config(config: ServerConfig) -> ReplicaConfig:
    """``config`` for a replica: read-only exports, no gc, no admin API (it would write)."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    values.update(gc_interval=0.0, admin_socket="", admin_listen=None, admin_token=None)
    return ReplicaConfig(**values)


def default_workdir(url: str) -> str:
    """Where a replica of the copies at ``url`` works unless told: the user's cache."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "ninep", "replicas", hashlib.sha256(url.encode()).hexdigest()[:16])


class Replica:
    """Keeps a server on the newest catalog copy of ``copies`` (a cas WorkingCopies)."""

    def __init__(self, copies, name: str, hashes: frozenset[str], *, poll: float = DEFAULT_POLL):
        self.copies = copies
        self.name = name            # the copy served
        self.hashes = hashes        # the chunks it names (published)
        self.poll = poll
        self.refreshes = 0

    async def run(self, server: Server, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Poll for newer copies and republish the chunk set until cancelled."""
        task_status.started()
        now = trio.current_time()
        next_poll, next_publish = now + self.poll, now + self.copies.refresh_interval
        while True:
            await trio.sleep_until(min(next_poll, next_publish))
            if trio.current_time() >= next_poll:
                next_poll = trio.current_time() + self.poll
                try:
                    with trio.CancelScope(shield=True):  # a restored copy is swapped in or discarded
                        if await self.refresh(server):
                            next_publish = trio.current_time() + self.copies.refresh_interval
                except Exception as exc:
                    log.error("replica refresh failed; the current copy is still served, will retry",
                              error=str(exc) or type(exc).__name__, copy=self.name)
            if trio.current_time() >= next_publish:
                next_publish = trio.current_time() + self.copies.refresh_interval
                try:
                    await trio.to_thread.run_sync(self.copies.publish, self.hashes)
                except Exception as exc:
                    log.error("publishing the replica's chunk set failed; will retry",
                              error=str(exc) or type(exc).__name__)

    async def refresh(self, server: Server) -> bool:
        """Move to the newest copy if it is newer than the one served; whether it moved."""
        newest = await trio.to_thread.run_sync(self.copies.newest)
        if newest is None or newest <= self.name:
            return False
        store = await trio.to_thread.run_sync(self.copies.checkout, newest)
        try:
            hashes = await trio.to_thread.run_sync(self.copies.hashes, newest)
            # both copies may be read until the old one is closed
            await trio.to_thread.run_sync(self.copies.publish, self.hashes | hashes)
        except BaseException:
            await trio.to_thread.run_sync(self.copies.discard, store)
            raise
        old, old_name = server.store, self.name
        server.replace_store(store)
        self.name, self.hashes = newest, hashes
        await server.drain_io()
        await trio.to_thread.run_sync(self.copies.discard, old)
        await trio.to_thread.run_sync(self.copies.publish, hashes)
        self.refreshes += 1
        log.info("replica refreshed", copy=newest, previous=old_name, chunks=len(hashes))
        return True


def run_replica(source: str, listen: list, *, workdir: str | None = None, store_id: str | None = None,
                poll: float = DEFAULT_POLL, config_path: str | None = None,
                chunk_memory: int | None = None, metadata_memory: int | None = None) -> int:
    """Entry point of ``ninep serve --replica``."""
    from cas.replicacopy import WorkingCopies
    from cas.catalogcopy import resolve_url

    from .listen import serve_until_signalled
    from .storeopen import resolve_s3

    os.umask(0o077)
    try:
        config = load_config(config_path) if config_path else ServerConfig()
        values = config.s3.file_values()
        settings = resolve_s3(values) if values else None
    except ConfigError as exc:
        print(f"ninep: {exc}", file=sys.stderr)
        return 2
    try:
        url = resolve_url(source, store_id, settings)
        workdir = workdir or default_workdir(url)
        copies = WorkingCopies(workdir, url, settings, refresh_interval=config.s3.pool_refresh,
                               grace=config.s3.pool_grace, chunk_cache_bytes=config.s3.cache_size,
                               chunk_memory_bytes=chunk_memory if chunk_memory is not None
                               else config.chunk_memory,
                               cache_bytes=metadata_memory if metadata_memory is not None
                               else config.metadata_memory)
        copies.__enter__()
    except Exception as exc:
        print(f"ninep: cannot start a replica of {source}: {exc}", file=sys.stderr)
        return 1
    store: Store | None = None
    server: Server | None = None
    try:
        try:
            name = copies.newest()
            if name is None:
                raise OSError(f"{url}: no complete catalog copy yet")
            hashes = copies.hashes(name)
            copies.publish(hashes)            # before serving: the primary's gc keeps them
            store = copies.checkout(name)
        except Exception as exc:
            print(f"ninep: cannot start a replica of {source}: {exc}", file=sys.stderr)
            return 1
        log.info("replica serving", copy=name, source=url, workdir=workdir,
                 replica_id=copies.pool.store_id, chunks=len(hashes))
        replica = Replica(copies, name, hashes, poll=poll)
        server = Server(store, replica_config(config), replica=replica)
        trio.run(serve_until_signalled, server, listen)
    finally:
        current = server.store if server is not None else store
        if current is not None:
            copies.discard(current)
        copies.close()
    return 0
