"""Snapshots of datasets: create, list, delete, roll back, clone, diff, browse.

The Store delegates its snapshot methods here (docs/volume-api.md, "Snapshots").
Everything that changes the catalog runs under the store's commit lock, after
a group commit of whatever is dirty, so a snapshot is a barrier in the commit
stream: it holds every operation completed before the call and none started
after it returns. Creation costs one commit of the dirty data plus three
constant-size statements (cas/snaprows.py); nothing is copied.

Rollback replaces the live tree under the store lock and drops the live
Volume's cache, so readers see the rolled-back tree at once. Handles to files
that do not exist in the snapshot (including open-but-unlinked files) become
stale: using them raises ENOENT. Handles to files that do exist see the
snapshot's content.
"""

from __future__ import annotations

import errno
import time
from typing import Protocol

import structlog

from . import snapdiff, snaprows
from .errors import FsError
from .names import check_label
from .catalog import Catalog
from .commit import GroupCommit
from .records import DiffEntry, SnapshotInfo
from .snapview import SnapshotVolume
from .volume import Volume


class Host(Protocol):
    """What the snapshot operations need of the open Store."""

    catalog: Catalog
    commits: GroupCommit

    def dataset_row(self, name: str) -> tuple[int, str, int]: ...
    def datasets(self) -> list[str]: ...
    def commit(self) -> None: ...
    def live_volume(self, name: str) -> Volume | None: ...

log = structlog.get_logger(__name__)

class Snapshots:
    """The snapshot operations of one open Store."""

    def __init__(self, store: Host):
        self._s = store
        self._cat = store.catalog
        #: ids of existing snapshots; SnapshotVolumes go stale when theirs leaves
        self.alive: set[int] = {r[0] for r in self._cat.query("SELECT id FROM snapshots")}

    # ----------------------------------------------------------------- queries
    def list(self, dataset: str | None = None) -> list[SnapshotInfo]:
        """Snapshots (of ``dataset``, or all), in creation order."""
        if dataset is not None:
            self._s.dataset_row(dataset)  # ENOENT for an unknown dataset
        rows = self._cat.query(
            "SELECT s.id, d.name, s.name, s.gen, s.created_ns FROM snapshots s "
            "JOIN datasets d ON d.id = s.dataset "
            "WHERE ?::VARCHAR IS NULL OR d.name = ? ORDER BY s.id", [dataset, dataset])
        return [SnapshotInfo(*r) for r in rows]

    def find(self, dataset: str, name: str) -> tuple[SnapshotInfo, int, int]:
        """(info, dataset id, root inode) of ``dataset@name``; ENOENT if either is missing."""
        ds, _, root = self._s.dataset_row(dataset)
        rows = self._cat.query(
            "SELECT id, ?, name, gen, created_ns FROM snapshots WHERE dataset = ? AND name = ?",
            [dataset, ds, name])
        if not rows:
            raise FsError(errno.ENOENT, f"ENOENT: no snapshot {dataset}@{name}")
        return SnapshotInfo(*rows[0]), ds, root

    def volume(self, dataset: str, name: str) -> SnapshotVolume:
        """A read-only view (SnapshotVolume) of ``dataset@name`` (cheap: loads nothing up front)."""
        info, ds, root = self.find(dataset, name)
        return SnapshotVolume(self._s.commits, ds, root, info, self.alive)

    # ----------------------------------------------------------------- changes
    def create(self, dataset: str, name: str) -> SnapshotInfo:
        """Take snapshot ``dataset@name``: commit what is dirty, record the generation."""
        check_label(name)
        s = self._s
        c = s.commits
        with c.commit_lock:
            ds, _, _ = s.dataset_row(dataset)
            if self._cat.query("SELECT 1 FROM snapshots WHERE dataset = ? AND name = ?",
                               [ds, name]):
                raise FsError(errno.EEXIST, f"EEXIST: snapshot {dataset}@{name} exists")
            c.commit_locked()
            now = time.time_ns()
            sid, gen = snaprows.add_snapshot(self._cat, ds, name, now)
            self.alive.add(sid)
        log.info("snapshot created", dataset=dataset, snapshot=name, id=sid, generation=gen)
        return SnapshotInfo(sid, dataset, name, gen, now)

    def delete(self, dataset: str, name: str) -> None:
        """Delete ``dataset@name``, the rows only it saw, and chunks nothing else uses."""
        c = self._s.commits
        with c.commit_lock:
            info, _, _ = self.find(dataset, name)
            c.commit_locked()
            hashes = snaprows.delete_snapshot(self._cat, info.id)
            self.alive.discard(info.id)
            freed = c.gc_hashes(hashes)
        log.info("snapshot deleted", dataset=dataset, snapshot=name, chunks_freed=freed)

    def rollback(self, dataset: str, name: str) -> None:
        """Make ``dataset``'s live tree equal to ``dataset@name``; later snapshots stay."""
        s = self._s
        c = s.commits
        with c.commit_lock:
            info, ds, _ = self.find(dataset, name)
            with c.lock.priority():  # no operation may slip in between commit and reset
                c.commit_locked()
                hashes = snaprows.rollback(self._cat, ds, info.gen)
                vol = s.live_volume(dataset)
                if vol is not None:
                    vol.invalidate()
            c.gc_hashes(hashes)
        log.info("rolled back", dataset=dataset, snapshot=name)

    def clone(self, dataset: str, name: str, new_dataset: str) -> None:
        """Create dataset ``new_dataset`` whose live tree is ``dataset@name`` (chunks shared)."""
        check_label(new_dataset, "dataset")
        s = self._s
        c = s.commits
        with c.commit_lock:
            info, ds, root = self.find(dataset, name)
            if new_dataset in s.datasets():
                raise FsError(errno.EEXIST, f"EEXIST: dataset {new_dataset!r} exists")
            n = snaprows.count_inodes(self._cat, ds, info.gen)
            with c.lock:
                base = c.alloc_inos(n)
            snaprows.clone(self._cat, ds, root, info.gen, new_dataset, base, time.time_ns())
        log.info("cloned", dataset=dataset, snapshot=name, new_dataset=new_dataset, inodes=n)

    def diff(self, dataset: str, a: str, b: str | None = None) -> list[DiffEntry]:
        """Changes from ``dataset@a`` to ``dataset@b`` (or the live tree), sorted by path."""
        s = self._s
        ia, ds, root = self.find(dataset, a)
        if b is None:
            s.commit()
            gb = None
        else:
            gb = self.find(dataset, b)[0].gen
        return snapdiff.diff(self._cat, ds, root, ia.gen, gb)

    def forget_dataset(self, ds_snapshot_ids: list[int]) -> None:
        """Mark the snapshots of a deleted dataset stale."""
        self.alive.difference_update(ds_snapshot_ids)
