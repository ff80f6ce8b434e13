"""The server's catalog shipper: a copy of the catalog to the bucket after every snapshot
and every ``catalog_copy_interval`` seconds (cas/catalogcopy.py).

A snapshot only wakes the shipper (a store snapshot hook, callable from any
thread), so the snapshot's reply never waits for the copy. The copy runs in
a worker thread; a failure is logged and retried at the next interval or
snapshot, and never reaches a client.
"""

from __future__ import annotations

import math

import structlog
import trio

from cas import Store

log = structlog.get_logger(__name__)


class CatalogShipper:
    """Ships catalog copies of ``store`` (whose chunks are on object storage)."""

    def __init__(self, store: Store, settings, *, interval: float, keep: int):
        self.store = store
        self.settings = settings
        self.interval = interval if interval > 0 else math.inf
        self.keep = keep
        self.shipped = 0        # copies shipped since start
        self.failures = 0       # attempts that failed since start
        self.last = None        # the newest CopyInfo shipped
        self._wanted = trio.Event()
        self._token: trio.lowlevel.TrioToken | None = None

    def request(self, _info=None) -> None:
        """Ask for a copy soon; callable from any thread, returns at once."""
        token = self._token
        if token is None:
            return
        try:
            token.run_sync_soon(self._wake)
        except trio.RunFinishedError:
            pass

    def _wake(self) -> None:
        self._wanted.set()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Ship on request and every interval until cancelled; a request still pending then
        (a snapshot just before shutdown) is shipped before returning."""
        self._token = trio.lowlevel.current_trio_token()
        self.store.snapshot_hooks.append(self.request)
        try:
            task_status.started()
            while True:
                with trio.move_on_after(self.interval):
                    await self._wanted.wait()
                await self._ship()
        finally:
            self.store.snapshot_hooks.remove(self.request)
            self._token = None
            if self._wanted.is_set():
                with trio.CancelScope(shield=True):
                    await self._ship()

    async def _ship(self) -> None:
        from cas import catalogcopy

        self._wanted = trio.Event()
        try:
            info = await trio.to_thread.run_sync(
                lambda: catalogcopy.ship(self.store, self.settings, keep=self.keep))
        except trio.Cancelled:
            # cancelled before the thread started (once started, it runs to its end):
            # the copy is still wanted, and run() ships it on the way out
            self._wanted.set()
            raise
        except Exception as exc:
            self.failures += 1
            log.error("catalog copy failed; retrying at the next interval or snapshot",
                      error=str(exc) or type(exc).__name__)
            return
        self.shipped += 1
        self.last = info
        log.info("catalog copy shipped", copy=info.url, generation=info.generation, bytes=info.bytes)


def shipper_for(store: Store, config) -> CatalogShipper | None:
    """The shipper of ``store`` under ``config`` (a ServerConfig), or None for local chunks."""
    from .storeopen import resolve_s3

    if not store.chunks.location.startswith("s3://"):
        return None
    values = config.s3.file_values()
    return CatalogShipper(store, resolve_s3(values) if values else None,
                          interval=config.catalog_copy_interval, keep=config.catalog_copy_keep)
