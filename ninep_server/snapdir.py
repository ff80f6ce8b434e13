"""The synthetic ``/.snapshots`` directory at the root of every export.

It behaves like ZFS's ``.zfs/snapshot``: owned by root with mode 0755, one
read-only directory per snapshot, new snapshots visible without a remount,
``mkdir NAME`` takes a snapshot and ``rmdir NAME`` deletes one (where the
export allows it). The directory itself is served by :class:`SnapshotDirectory`,
a tiny read-only volume; each snapshot is a read-only ``cas`` volume.
"""

from __future__ import annotations

import errno
import stat

from cas import Attr, DirEntry, FsError, ReadOnlyTree, StatFs

SNAPDIR_NAME = b".snapshots"
#: qid.path space of the synthetic directories: far above any inode number.
SNAPDIR_QID_BASE = 0xFFFF << 48
#: qid.path of snapshot N's objects: (N << 48) | ino. Live objects use ino alone.
SNAPSHOT_QID_SHIFT = 48


def snapshot_qid_base(snapshot_id: int) -> int:
    return snapshot_id << SNAPSHOT_QID_SHIFT


class SnapshotDirectory(ReadOnlyTree):
    """The read-only directory listing a dataset's snapshots: a ``cas.Tree``.

    Its single inode number is the dataset's root inode (qids differ through
    the view's qid base). Mutations other than the server's mkdir/rmdir
    handling raise EROFS (:class:`cas.ReadOnlyTree`), and so do ``resolve``,
    ``read_cached`` and ``fsync``.
    """

    erofs_message = "the snapshot directory is read-only"

    def __init__(self, store, dataset: str, root: int):
        self.store = store
        self.dataset = dataset
        self.root = root

    def _snapshots(self):
        return self.store.snapshots(self.dataset)

    def getattr(self, ino: int) -> Attr:
        if ino != self.root:
            raise FsError(errno.ESTALE, "not the snapshot directory")
        snaps = self._snapshots()
        newest = max((s.created_ns for s in snaps), default=0)
        # Times follow the newest snapshot, so a client that caches sees changes.
        return Attr(
            ino=self.root, mode=stat.S_IFDIR | 0o755, uid=0, gid=0, nlink=2 + len(snaps), rdev=0,
            size=0, blocks=0, atime_ns=newest, mtime_ns=newest, ctime_ns=newest, btime_ns=0,
            gen=0, data_version=len(snaps) + 1 + (newest & 0xFFFFFFFF),
        )  # fmt: skip

    def find(self, name: bytes):
        for snap in self._snapshots():
            if snap.name.encode() == name:
                return snap
        raise FsError(errno.ENOENT, f"no snapshot named {name!r}")

    def readdir(self, ino: int, cookie: int = 0, limit: int | None = None) -> list[DirEntry]:
        """One entry per snapshot; ``ino`` and ``cookie`` are the snapshot id.

        Ids only grow, so the id is a stable cookie.
        """
        entries = [DirEntry(s.name.encode(), s.id, stat.S_IFDIR, s.id) for s in self._snapshots() if s.id > cookie]
        entries.sort(key=lambda e: e.cookie)
        return entries[:limit] if limit else entries

    def statfs(self) -> StatFs:
        return self.store.volume(self.dataset).statfs()

    def open(self, ino: int) -> Attr:
        return self.getattr(ino)

    def release(self, ino: int) -> None:
        pass

    def listxattr(self, ino: int) -> list[bytes]:
        return []

    def getxattr(self, ino: int, name: bytes) -> bytes:
        raise FsError(errno.ENODATA, "no such attribute")

    def access_acl(self, ino: int) -> bytes | None:
        return None

    def readlink(self, ino: int) -> bytes:
        raise FsError(errno.EINVAL, "not a symbolic link")

    def read(self, ino: int, offset: int, size: int) -> bytes:
        raise FsError(errno.EISDIR, "is a directory")

    def lookup(self, parent: int, name: bytes) -> Attr:
        self.find(name)
        raise FsError(errno.EXDEV, "snapshot roots are reached by crossing views")

    def resolve(self, path: bytes, follow: bool = True) -> Attr:
        self.refuse()

    def read_cached(self, ino: int, offset: int, size: int) -> bytes | memoryview | tuple | None:
        self.refuse()

    def fsync(self, ino: int) -> None:
        self.refuse()
