"""What the admin API works with while a server runs: its narrow view of the server.

Catalog changes run between commits (under the server's commit lock) in a
worker thread; what they change in the served namespace (views of deleted
snapshots and datasets, a dataset turned read-only, snapshot schedules) is
applied here afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import trio

from ..config import ServerConfig
from ..metrics import ServerMetrics
from ..namespace import Namespace
from .errors import ApiError
from .jobs import JobManager
from .operations import Operations


@dataclass(eq=False)
class AdminContext:
    """The server's parts the admin API uses, and the few callbacks it needs."""

    operations: Operations
    namespace: Namespace
    jobs: JobManager
    metrics: ServerMetrics
    config: ServerConfig
    commit_lock: trio.Lock
    #: What `ninep status` shows (listeners, exports, sessions, commits).
    status: Callable[[], dict]
    #: A description of a session attaching a dataset ("3 (unix:)"), or None.
    dataset_user: Callable[[str], str | None]
    #: Tell the snapshot scheduler that schedules may have changed.
    schedules_changed: Callable[[], None]

    async def call(self, fn, *args):
        """Run ``fn(operations, *args)`` in a worker thread, between commits."""
        async with self.commit_lock:
            return await trio.to_thread.run_sync(lambda: fn(self.operations, *args))

    async def read(self, fn, *args):
        """Run a read-only ``fn(operations, *args)`` in a worker thread (no commit lock)."""
        return await trio.to_thread.run_sync(lambda: fn(self.operations, *args))

    def start_job(self, kind: str, params: dict, work):
        """Start ``work(operations, progress)`` as a background job."""
        return self.jobs.start(kind, params, lambda progress: work(self.operations, progress))

    async def render_metrics(self) -> bytes:
        return await trio.to_thread.run_sync(self.metrics.render)

    def check_dataset_deletable(self, name: str) -> None:
        """Refuse to delete a dataset that clients use or the config exports."""
        if name in self.config.exports:
            raise ApiError(409, "dataset_exported", f"{name!r} is exported by the configuration file")
        user = self.dataset_user(name)
        if user is not None:
            raise ApiError(409, "dataset_in_use", f"{name!r} is attached by session {user}")

    def dataset_deleted(self, name: str) -> None:
        self.namespace.forget_dataset(name)
        self.schedules_changed()

    def properties_changed(self, dataset: str, props: dict) -> None:
        """Apply a dataset's new properties to what is being served."""
        self.namespace.properties_changed(dataset, props)
        self.schedules_changed()

    def snapshot_deleted(self, dataset: str, name: str) -> None:
        self.namespace.forget_snapshot_view(dataset, name)
