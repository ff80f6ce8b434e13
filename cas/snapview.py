"""SnapshotVolume: a read-only tree over the catalog as of one snapshot's generation.

It is composed of the same pieces as the live Volume's reading side: an
:class:`~cas.inodes.InodeCache` (one query per inode or per whole directory
on a miss, nothing loaded up front) whose loader, :class:`SnapshotLoads`,
answers the four cache-miss queries from the snapshot's rows, and a
:class:`~cas.reads.TreeReads` over it; :class:`~cas.tree.ReadOnlyTree`
makes every mutation raise EROFS. It has its own lock, so snapshot reads
never wait on the live tree. Snapshot rows never change, so the cache needs
no invalidation and ``data_version`` (the inode's ``dver`` as of the
snapshot) is stable and non-zero. Once the snapshot is deleted every call
raises ESTALE.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Set

from .catalog import INODE_COLS, Catalog, visible
from .commit import GroupCommit
from .errors import FsError
from .inodes import InodeCache
from .reads import TreeReads, statfs
from .records import Attr, DirEntry, SnapshotInfo, StatFs
from .tree import ReadOnlyTree

_ICOLS = ",".join(INODE_COLS)
_ICOLS_I = ",".join("i." + c for c in INODE_COLS)


class SnapshotLoads:
    """The cache-miss queries of an InodeCache (``cas.inodes.Loads``), answered as of generation ``gen``."""

    def __init__(self, catalog: Catalog, gen: int):
        self._cat = catalog
        vt, ve, vi = visible("t", gen), visible("e", gen), visible("i", gen)
        self._q_inode = f"SELECT {_ICOLS} FROM inodes t WHERE t.ino = ? AND {vt}"
        self._q_ents = (f"SELECT name, child, seq, type FROM entries t WHERE t.parent = ? AND {vt} "
                        f"ORDER BY seq")
        self._q_rows = (f"SELECT {_ICOLS_I} FROM inodes i JOIN entries e ON e.child = i.ino "
                        f"WHERE e.parent = ? AND {ve} AND {vi}")
        self._q_ent = f"SELECT child, seq, type FROM entries t WHERE t.parent = ? AND t.name = ? AND {vt}"
        self._q_ext = f"SELECT idx, hash, length FROM extents t WHERE t.ino = ? AND {vt}"
        self._q_xat = f"SELECT name, value FROM xattrs t WHERE t.ino = ? AND {vt}"

    def load_inode(self, ino: int) -> tuple | None:
        rows = self._cat.read(self._q_inode, [ino])
        return rows[0] if rows else None

    def load_dir(self, parent: int) -> tuple[list[tuple], list[tuple]]:
        return self._cat.read(self._q_ents, [parent]), self._cat.read(self._q_rows, [parent])

    def load_entry(self, parent: int, name: bytes) -> tuple | None:
        rows = self._cat.read(self._q_ent, [parent, name])
        return rows[0] if rows else None

    def load_extents(self, ino: int) -> list[tuple]:
        return self._cat.read(self._q_ext, [ino])

    def load_xattrs(self, ino: int) -> list[tuple]:
        return self._cat.read(self._q_xat, [ino])


class SnapshotVolume(ReadOnlyTree):
    """A read-only view of a dataset as of a snapshot: a :class:`~cas.tree.Tree`.

    ``alive`` is the store's set of existing snapshot ids: once this snapshot's
    id leaves it, every call raises ESTALE (``release`` quietly does nothing).
    """

    erofs_message = "EROFS: snapshots are read-only"

    def __init__(self, commits: GroupCommit, ds: int, root: int, info: SnapshotInfo,
                 alive: Set[int]):
        self._c = commits
        self.ds = ds
        self.name = info.dataset
        self.root = root
        self.snapshot = info
        self._alive = alive
        self._lock = threading.RLock()  # snapshot reads never wait for the live tree's lock
        #: the inode records in memory, loaded from the snapshot's rows
        self.cache = InodeCache(commits, ds, root, SnapshotLoads(commits.catalog, info.gen))
        self._reads = TreeReads(self.cache, self._lock, commits.chunks, commits.chunk_size)

    def _check(self) -> None:
        if self.snapshot.id not in self._alive:
            raise FsError(errno.ESTALE,
                          f"ESTALE: snapshot {self.snapshot.dataset}@{self.snapshot.name} was deleted")

    def evict_all(self, keep_rows: bool = False) -> int:
        """Drop every inode record from the cache (tests use this), and their rows
        unless ``keep_rows`` (cas/inodes.py); returns how many records."""
        with self._lock:
            return self.cache.evict_all(keep_rows)

    # -- the queries of TreeReads, after the liveness check -------------------
    def lookup(self, parent: int, name: bytes) -> Attr:
        """Attributes of ``name`` in directory ``parent`` (ENOENT, ENOTDIR)."""
        self._check()
        return self._reads.lookup(parent, name)

    def getattr(self, ino: int) -> Attr:
        """Attributes of inode ``ino``."""
        self._check()
        return self._reads.getattr(ino)

    def readdir(self, ino: int, cookie: int = 0, limit: int | None = None) -> list[DirEntry]:
        """Entries (without '.' and '..') from ``cookie`` on."""
        self._check()
        return self._reads.readdir(ino, cookie, limit)

    def resolve(self, path: bytes, follow: bool = True) -> Attr:
        """Walk a '/'-separated path from the root, following symlinks."""
        self._check()
        return self._reads.resolve(path, follow)

    def read(self, ino: int, offset: int, size: int) -> bytes | bytearray:
        """Up to ``size`` bytes at ``offset``; holes read as zeros; EIO on a corrupt chunk."""
        self._check()
        return self._reads.read(ino, offset, size)

    def read_cached(self, ino: int, offset: int, size: int) -> bytes | memoryview | tuple | None:
        """What :meth:`read` returns, if that needs no disk access; else None."""
        self._check()
        return self._reads.read_cached(ino, offset, size)

    def readlink(self, ino: int) -> bytes:
        """The target of symlink ``ino`` (EINVAL if not a symlink)."""
        self._check()
        return self._reads.readlink(ino)

    def getxattr(self, ino: int, name: bytes) -> bytes:
        """Value of xattr ``name`` (ENODATA if absent)."""
        self._check()
        return self._reads.getxattr(ino, name)

    def listxattr(self, ino: int) -> list[bytes]:
        """Names of all xattrs of ``ino``."""
        self._check()
        return self._reads.listxattr(ino)

    def access_acl(self, ino: int) -> bytes | None:
        """The stored access ACL of ``ino``, or None (for permission checks)."""
        self._check()
        return self._reads.access_acl(ino)

    def statfs(self) -> StatFs:
        """The store's space figures (a snapshot has no quota of its own)."""
        self._check()
        return statfs(self._c)

    def open(self, ino: int) -> Attr:
        """Take a handle reference."""
        self._check()
        return self._reads.open(ino)

    def release(self, ino: int) -> None:
        """Drop a handle reference (nothing once the snapshot is deleted)."""
        if self.snapshot.id in self._alive:
            with self._lock:
                self._reads.release(ino)  # snapshot inodes are never unlinked: nothing to free

    def fsync(self, ino: int) -> None:
        """ENOENT check only: snapshot data is always durable."""
        self._check()
        self.getattr(ino)
