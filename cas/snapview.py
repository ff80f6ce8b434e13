"""SnapshotVolume: a read-only Volume over the catalog as of one snapshot's generation.

It reuses Volume's read path and its on-demand cache (one query per inode or
per whole directory on a miss, nothing loaded up front); only the four
cache-miss loads are answered from the snapshot's rows instead of the live
ones. Snapshot rows never change, so the cache needs no invalidation and
``data_version`` (the inode's ``dver`` as of the snapshot) is stable and
non-zero. Every mutation raises EROFS. Once the snapshot is deleted every
call raises ESTALE.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Set

from .catalog import INODE_COLS, Catalog, visible
from .commit import GroupCommit
from .errors import FsError
from .records import Attr, DirEntry, SnapshotInfo, StatFs
from .volume import Volume

_ICOLS = ",".join(INODE_COLS)
_ICOLS_I = ",".join("i." + c for c in INODE_COLS)


class SnapshotLoads:
    """The cache-miss queries of Volume, answered as of generation ``gen``."""

    def __init__(self, catalog: Catalog, gen: int):
        self._cat = catalog
        vt, ve, vi = visible("t", gen), visible("e", gen), visible("i", gen)
        self._q_inode = f"SELECT {_ICOLS} FROM inodes t WHERE t.ino = ? AND {vt}"
        self._q_ents = (f"SELECT name, child, seq, type FROM entries t WHERE t.parent = ? AND {vt} "
                        f"ORDER BY seq")
        self._q_rows = (f"SELECT {_ICOLS_I} FROM inodes i JOIN entries e ON e.child = i.ino "
                        f"WHERE e.parent = ? AND {ve} AND {vi}")
        self._q_ext = f"SELECT idx, hash, length FROM extents t WHERE t.ino = ? AND {vt}"
        self._q_xat = f"SELECT name, value FROM xattrs t WHERE t.ino = ? AND {vt}"

    def load_inode(self, ino: int) -> tuple | None:
        rows = self._cat.read(self._q_inode, [ino])
        return rows[0] if rows else None

    def load_dir(self, parent: int) -> tuple[list[tuple], list[tuple]]:
        return self._cat.read(self._q_ents, [parent]), self._cat.read(self._q_rows, [parent])

    def load_extents(self, ino: int) -> list[tuple]:
        return self._cat.read(self._q_ext, [ino])

    def load_xattrs(self, ino: int) -> list[tuple]:
        return self._cat.read(self._q_xat, [ino])


def _rofs(*_args, **_kw):
    raise FsError(errno.EROFS, "EROFS: snapshots are read-only")


class SnapshotVolume(Volume):
    """A read-only view of a dataset as of a snapshot (``read_only`` is True).

    ``alive`` is the store's set of existing snapshot ids: once this snapshot's
    id leaves it, every call raises ESTALE (``release`` quietly does nothing).
    """

    def __init__(self, commits: GroupCommit, ds: int, root: int, info: SnapshotInfo,
                 alive: Set[int]):
        # snapshot reads never wait for the live tree's lock
        super().__init__(commits, ds, info.dataset, root, read_only=True,
                         lock=threading.RLock(), loads=SnapshotLoads(commits.catalog, info.gen))
        self.snapshot = info
        self._alive = alive

    def _check(self) -> None:
        if self.snapshot.id not in self._alive:
            raise FsError(errno.ESTALE,
                          f"ESTALE: snapshot {self.snapshot.dataset}@{self.snapshot.name} was deleted")

    # -- reads: the Volume implementation, after the liveness check ----------
    def lookup(self, parent: int, name: bytes) -> Attr:
        self._check()
        return super().lookup(parent, name)

    def getattr(self, ino: int) -> Attr:
        self._check()
        return super().getattr(ino)

    def readdir(self, ino: int, cookie: int = 0, limit: int | None = None) -> list[DirEntry]:
        self._check()
        return super().readdir(ino, cookie, limit)

    def resolve(self, path: bytes, follow: bool = True) -> Attr:
        self._check()
        return super().resolve(path, follow)

    def read(self, ino: int, offset: int, size: int) -> bytes:
        self._check()
        return super().read(ino, offset, size)

    def read_cached(self, ino: int, offset: int, size: int) -> bytes | None:
        self._check()
        return super().read_cached(ino, offset, size)

    def readlink(self, ino: int) -> bytes:
        self._check()
        return super().readlink(ino)

    def getxattr(self, ino: int, name: bytes) -> bytes:
        self._check()
        return super().getxattr(ino, name)

    def listxattr(self, ino: int) -> list[bytes]:
        self._check()
        return super().listxattr(ino)

    def statfs(self) -> StatFs:
        self._check()
        return super().statfs()

    def open(self, ino: int) -> Attr:
        self._check()
        return super().open(ino)

    def release(self, ino: int) -> None:
        if self.snapshot.id in self._alive:
            super().release(ino)

    def fsync(self, ino: int) -> None:
        self._check()
        self.getattr(ino)  # ENOENT check; snapshot data is always durable

    # -- every mutation: EROFS -------------------------------------------------
    setattr = create = mkdir = mknod = symlink = link = unlink = rmdir = rename = _rofs
    write = write_nowait = setxattr = removexattr = _rofs
