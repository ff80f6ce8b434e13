"""What an attach sees: which dataset or snapshot each fid's tree is.

An export's root holds its live dataset and, unless the configuration hides
it, the synthetic ``/.snapshots`` directory (:mod:`.snapdir`), whose entries
are the roots of read-only snapshot trees. Each of these trees is a
:class:`~.fids.View`; the namespace hands them out, caches them while the
server runs, and forgets them when a snapshot or dataset goes.

It also owns the policy of ``/.snapshots``: the name is reserved at a live
root, walking into it or into a snapshot crosses views, ``..`` from a view's
root leads to the view outside it, and ``mkdir`` / ``rmdir`` inside it take
and delete snapshots. Snapshots are barriers in the commit stream, so they
are taken under the server's commit lock.
"""

from __future__ import annotations

import errno

import structlog
import trio

from cas import FsError, Store
from cas.names import check_name

from . import protocol as p
from .access import Credentials
from .config import ServerConfig
from .fids import LIVE, SNAPDIR, SNAPSHOT, View
from .snapdir import SNAPDIR_NAME, SNAPDIR_QID_BASE, SnapshotDirectory, snapshot_qid_base
from .staletree import StaleTree

log = structlog.get_logger(__name__)


class Namespace:
    """The views of one store's datasets and snapshots, as exports show them."""

    def __init__(self, store: Store, config: ServerConfig, commit_lock: trio.Lock):
        self.store = store
        self.config = config
        self._commit_lock = commit_lock
        self._views: dict[str, View] = {}

    # -- views -------------------------------------------------------------------

    def attach(self, aname: str, peer_host: str | None) -> View:
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

    def live_volumes(self) -> list:
        """The volumes of the live datasets attached so far."""
        return [v.volume for v in list(self._views.values()) if v.kind == LIVE]

    # -- walking -----------------------------------------------------------------

    def cross(self, view: View, ino: int, name: bytes) -> tuple[View, int] | None:
        """Where a walk of ``name`` from (view, ino) leaves the view, if it does."""
        if view.kind == LIVE and name == SNAPDIR_NAME and ino == view.volume.root:
            snapdir = self._snapdir_view(view)
            return snapdir, snapdir.volume.root
        if view.kind == SNAPDIR:
            snap = self._snapshot_view(view, name)
            return snap, snap.volume.root
        return None

    @staticmethod
    def up(view: View, ino: int) -> tuple[View, int]:
        """Where ``..`` leads from directory ``ino``: its current parent, clamped at the export root."""
        if ino == view.volume.root:
            if view.outer is None:
                return view, ino
            return view.outer, view.outer.volume.root
        return view, view.volume.lookup(ino, b"..").ino

    # -- listing -----------------------------------------------------------------

    def root_extras(self, view: View, ino: int) -> list[p.Dirent]:
        """Synthetic entries of directory ``ino``'s listing: ``.snapshots`` at a live root."""
        if self.config.snapdir_hidden or view.kind != LIVE or ino != view.volume.root:
            return []
        snapdir = self._snapdir_view(view)
        qid = p.Qid(p.QidType.DIR, 1, snapdir.qid_base + snapdir.volume.root)
        return [p.Dirent(qid, 3, p.DT_DIR, SNAPDIR_NAME)]

    @staticmethod
    def crossing_qid(view: View, entry) -> p.Qid | None:
        """The qid of a listed entry that is another view's root (a snapshot in /.snapshots)."""
        if view.kind == SNAPDIR:
            return p.Qid(p.QidType.DIR, 1, snapshot_qid_base(entry.ino) + view.volume.root)
        return None

    # -- names and snapshot administration ----------------------------------------

    @staticmethod
    def check_new_name(view: View, parent: int, name: bytes) -> None:
        """A name to be created in directory ``parent``: valid, and not /.snapshots."""
        check_name(name)
        if name == SNAPDIR_NAME and parent == view.volume.root and view.kind == LIVE:
            raise FsError(errno.EEXIST, "/.snapshots is reserved for snapshots")

    @staticmethod
    def administers(view: View) -> bool:
        """Whether mkdir and rmdir in ``view`` take and delete snapshots (it is /.snapshots)."""
        return view.kind == SNAPDIR

    @staticmethod
    def _check_snapshot_admin(view: View, cred: Credentials) -> None:
        """mkdir/rmdir in /.snapshots: root, or anyone where the export allows it."""
        if view.export.read_only:
            raise FsError(errno.EROFS, "read-only export")
        if not (cred.is_root or view.export.snapshot_admin):
            raise FsError(errno.EPERM, "only root may create or delete snapshots here")

    async def mkdir(self, view: View, cred: Credentials, name: bytes) -> p.Qid:
        """mkdir in /.snapshots: take snapshot ``name``; returns its root's qid."""
        self._check_snapshot_admin(view, cred)
        info = await self.create_snapshot(view.dataset, name.decode("utf-8", "replace"))
        return p.Qid(p.QidType.DIR, 1, snapshot_qid_base(info.id) + view.volume.root)

    async def rmdir(self, view: View, cred: Credentials, name: bytes, flags: int) -> None:
        """unlinkat in /.snapshots: delete snapshot ``name`` (AT_REMOVEDIR only)."""
        self._check_snapshot_admin(view, cred)
        if not flags & p.AT_REMOVEDIR:
            raise FsError(errno.EISDIR, "snapshots are directories: use rmdir")
        await self.delete_snapshot(view.dataset, name.decode("utf-8", "replace"))

    async def create_snapshot(self, dataset: str, name: str):
        """Take a snapshot (a barrier in the commit stream) in a worker thread."""
        async with self._commit_lock:
            info = await trio.to_thread.run_sync(self.store.create_snapshot, dataset, name)
        log.info("snapshot created", dataset=dataset, snapshot=name, generation=info.gen)
        return info

    async def delete_snapshot(self, dataset: str, name: str) -> None:
        """Delete a snapshot in a worker thread, between commits, and forget its view."""
        async with self._commit_lock:
            await trio.to_thread.run_sync(self.store.delete_snapshot, dataset, name)
        self.forget_snapshot_view(dataset, name)
        log.info("snapshot deleted", dataset=dataset, snapshot=name)

    async def snapshot_names(self, dataset: str) -> list[str]:
        return [s.name for s in await trio.to_thread.run_sync(self.store.snapshots, dataset)]

    # -- lifetimes -----------------------------------------------------------------

    def properties_changed(self, dataset: str, props: dict) -> None:
        """Apply a dataset's new properties (read_only) to its live view."""
        view = self._views.get(dataset)
        if view is not None:
            view.read_only = view.export.read_only or props["read_only"]

    def forget_snapshot_view(self, dataset: str, name: str) -> None:
        """Drop the cached view of a deleted snapshot."""
        self._views.pop(f"{dataset}@{name}", None)

    def replace_store(self, store: Store) -> None:
        """Serve ``store`` from now on: a read-only replica's newer working copy (:mod:`.replica`).

        The cached views, which fids hold, move over at once: a live view to
        the same dataset in ``store``, ``/.snapshots`` to its listing there, a
        snapshot view to the same snapshot (same id). A view whose dataset or
        snapshot ``store`` lacks serves ESTALE from now on and leaves the cache.
        Synchronous, so no request sees half of it; requests already running in
        worker threads finish on the old trees (the caller closes the old store
        after they have).
        """
        self.store = store
        roots = {name: store.dataset_row(name)[2] for name in store.datasets()}
        snaps = {f"{s.dataset}@{s.name}": s for s in store.snapshots()}
        for key, view in list(self._views.items()):
            root = view.volume.root
            if view.kind != SNAPSHOT and roots.get(view.dataset) != root:
                view.volume = StaleTree(root, f"dataset {view.dataset}")
            elif view.kind == LIVE:
                view.volume = store.volume(view.dataset)
            elif view.kind == SNAPDIR:
                view.volume = SnapshotDirectory(store, view.dataset, root)
            elif (snap := snaps.get(view.name)) is not None and snapshot_qid_base(snap.id) == view.qid_base:
                view.volume = store.snapshot_volume(snap.dataset, snap.name)
            else:
                view.volume = StaleTree(root, f"snapshot {view.name}")
            if isinstance(view.volume, StaleTree):
                del self._views[key]

    def forget_dataset(self, dataset: str) -> None:
        """Drop every cached view of a deleted dataset."""
        for key in [k for k, v in self._views.items() if v.dataset == dataset]:
            del self._views[key]
