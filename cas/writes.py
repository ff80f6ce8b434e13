"""FileWrites: the write path of a live tree, its striped data locks and its quota.

Writes and truncates of one file are serialized by one of 64 striped data
locks (a commit takes them all behind ``data_gate`` to quiesce the data
path, see ``GroupCommit.quiesce``). Written bytes go into chunk buffers
(``filedata.write_buffers``); a whole chunk is stored at once, outside the
tree's lock. :meth:`FileWrites.write_nowait` does only what needs no disk
and no waiting, for an event loop. Size changes are accounted against the
dataset's quota of logical bytes (EDQUOT), like ZFS refquota.
"""

from __future__ import annotations

import errno
import stat
import threading
import time
from typing import TYPE_CHECKING

from . import filedata
from .errors import fs_error
from .records import Inode

if TYPE_CHECKING:
    from .changes import Changes
    from .commit import GroupCommit
    from .inodes import InodeCache

_now = time.time_ns
_err = fs_error
_IFMT = stat.S_IFMT(0o177777)
_S_IFREG = stat.S_IFREG
_S_IFDIR = stat.S_IFDIR


class FileWrites:
    """Writes, truncates and logical-size accounting of dataset ``dataset``'s live tree."""

    def __init__(self, commits: GroupCommit, cache: InodeCache, changes: Changes, lock,
                 dataset: str):
        self.commits = commits
        self.cache = cache
        self.changes = changes
        self.lock = lock
        self.dataset = dataset
        self.chunk_size = commits.chunk_size
        self.data_locks = [threading.Lock() for _ in range(64)]
        self.data_gate = threading.Event()  # cleared while a commit takes every data lock
        self.data_gate.set()
        #: Quota on the live tree's logical bytes (sum of file sizes), 0 for none;
        #: like ZFS refquota: snapshots don't count. Exceeding it is EDQUOT.
        self.quota = 0
        self.logical: int | None = None     # live logical bytes, loaded on first use

    def data_lock(self, ino: int, for_size: bool = False, wait: bool = True) -> threading.Lock | None:
        """The striped lock that serializes writes and truncates of ``ino``.

        While a commit is taking the data locks (GroupCommit.quiesce) this waits,
        or with ``wait=False`` returns None.
        """
        if not self.data_gate.is_set():
            if not wait:
                return None
            self.data_gate.wait()
        with self.lock:
            node = self.cache.get(ino)
            fmt = node.mode & _IFMT
            if fmt != _S_IFREG:
                raise _err(errno.EISDIR if fmt == _S_IFDIR else errno.EINVAL, f"inode {ino}")
        return self.data_locks[ino % len(self.data_locks)]

    def truncate(self, node: Inode, size: int) -> None:
        """Set regular file ``node``'s size (lock held), dropping or cutting chunks past it."""
        fmt = node.mode & _IFMT
        if fmt != _S_IFREG:
            raise _err(errno.EISDIR if fmt == _S_IFDIR else errno.EINVAL)
        if size > node.size:
            self.commits.check_space(0)
        self.grow(node, size)
        self.cache.extents(node)
        changed, dropped, delta = filedata.truncate(node, size, self.chunk_size, self.commits.chunks.get)
        ino = node.ino
        for idx in changed:
            self.changes.dirty.extents.add((ino, idx))
        self.changes.dirty.dropped.extend(dropped)
        self.changes.buf_bytes += delta
        if node.bufs:
            self.changes.buf_inodes.add(ino)
        node.size = size
        node.mtime = node.ctime = _now()
        node.dver += 1
        self.changes.mark(node)

    def grow(self, node: Inode, new_size: int) -> None:
        """Account a size change of a regular file; EDQUOT past the quota (lock held)."""
        delta = new_size - node.size
        if self.logical is None and not self.quota:
            return
        logical = self.logical_locked()
        if delta > 0 and self.quota and logical + delta > self.quota:
            raise _err(errno.EDQUOT, f"dataset {self.dataset} quota of {self.quota} bytes exceeded")
        self.logical = logical + delta

    def logical_bytes(self) -> int:
        """Sum of the sizes of the live tree's regular files (each inode once)."""
        with self.lock:
            return self.logical_locked()

    def logical_locked(self) -> int:
        """:meth:`logical_bytes` with the lock held (loaded from the catalog on first use)."""
        if self.logical is None:
            # Committed sizes, corrected by the in-memory inodes whose size may differ.
            rows = self.commits.catalog.read(
                "SELECT ino, size FROM inodes WHERE dataset = ? AND died IS NULL AND (mode & 61440) = 32768",
                [self.cache.ds])
            sizes = dict(rows)
            for ino, node in self.cache.inodes.items():
                if node.ds == self.cache.ds and (node.mode & _IFMT) == _S_IFREG:
                    sizes[ino] = node.size
            for ino in self.cache.gone:
                sizes.pop(ino, None)
            self.logical = sum(sizes.values())
        return self.logical

    def write(self, ino: int, offset: int, data) -> int:
        """Write ``data`` at ``offset`` (extending with a hole as needed); returns its length."""
        n = self._write(ino, offset, data, wait=True)
        c = self.commits
        if self.changes.buf_bytes > c.dirty_limit:
            self.changes.flush_buffers()
        if len(self.changes.dirty.inodes) > c.dirty_inodes_max:
            c.throttle(self.changes)
        return n

    def write_nowait(self, ino: int, offset: int, data) -> int | None:
        """:meth:`write` if it only has to copy into memory, else None (nothing written).

        Declines when the write would store or load a chunk, wait for a lock
        or a commit, or when too much is buffered: then call :meth:`write`
        in a worker thread. Cheap enough for an event loop.
        """
        return self._write(ino, offset, data, wait=False)

    def _write(self, ino: int, offset: int, data, wait: bool) -> int | None:
        if offset < 0:
            raise _err(errno.EINVAL, "negative offset")
        n = len(data)
        c = self.commits
        dlock = self.data_lock(ino, wait=wait)
        if dlock is None:
            return None
        if n == 0:
            return 0
        if offset + n > c.max_file_size:
            raise _err(errno.EFBIG)
        if not dlock.acquire(blocking=wait):
            return None
        try:
            with self.lock:
                node = self.cache.file(ino)
                if not wait and (self.changes.buf_bytes + n > c.dirty_limit
                                 or len(self.changes.dirty.inodes) >= c.dirty_inodes_max
                                 or not filedata.fits_in_buffers(node, offset, n, self.chunk_size)):
                    return None
                c.check_space(n)
                if offset + n > node.size:
                    self.grow(node, offset + n)
                delta, whole = filedata.write_buffers(node, offset, data, self.chunk_size,
                                                      self.commits.chunks.get)
                self.changes.buf_bytes += delta
                if node.bufs:
                    self.changes.buf_inodes.add(ino)
                if offset + n > node.size:
                    node.size = offset + n
                node.mtime = node.ctime = _now()
                node.dver += 1
                self.changes.mark(node)
                if whole:
                    node.writers += 1
            if whole:
                try:
                    stored = self.changes.store_jobs([(node, whole)])[0][1]
                except BaseException:
                    with self.lock:
                        node.writers -= 1
                    raise
                with self.lock:
                    node.writers -= 1
                    self.changes.install(node, stored)
        finally:
            dlock.release()
        return n

