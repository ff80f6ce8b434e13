"""Changes: what a live volume changed and has not committed, and its side of the group commit.

It holds the volume's dirty set (:class:`cas.commit.DirtySet`), the dirty
chunk buffers (their bytes and inodes) and the inodes a commit set aside,
and implements the :class:`cas.commit.Participant` calls: capturing the
dirty state into a catalog batch, sealing and storing buffers as chunks,
installing stored chunks, and reverting, confirming or restoring a capture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import filedata
from .commit import DirtySet
from .records import EMPTY, Inode

if TYPE_CHECKING:
    from .catalog import Batch
    from .chunkbackend import ChunkBackend
    from .commit import GroupCommit
    from .inodes import InodeCache

LOST_KEEP = 4096  # set-aside, never-committed inodes remembered for fsync's EIO


class Changes:
    """The uncommitted state of the dataset cached in ``cache``; the caller holds ``lock``
    around every call marked "under the lock"."""

    def __init__(self, commits: GroupCommit, cache: InodeCache, lock, chunks: ChunkBackend):
        self.commits = commits
        self.cache = cache
        self.lock = lock
        self.chunks = chunks
        self.dirty = DirtySet()             # changed since the last commit captured us
        self.buf_bytes = 0                  # bytes in dirty chunk buffers
        self.buf_inodes: set[int] = set()   # inodes with dirty chunk buffers
        self.flushing = False
        #: Never-committed inodes a commit set aside (so they are gone): their
        #: fsyncs fail with EIO rather than ENOENT. Inode numbers are never reused;
        #: only the newest LOST_KEEP are remembered.
        self.lost: dict[int, None] = {}

    @property
    def dirty_count(self) -> int:
        """Inodes changed since the last commit captured this volume."""
        return len(self.dirty.inodes)

    def mark(self, node: Inode) -> None:
        """``node`` changed in the current epoch (under the lock)."""
        node.epoch = self.commits.epoch
        self.dirty.inodes.add(node.ino)

    def forget(self, node: Inode) -> None:
        """Record that ``node`` (dead, no links, no handles) is freed (under the lock)."""
        ino = node.ino
        d = self.dirty
        if node.extents:
            d.dropped.extend(e[0] for e in node.extents.values())
        if node.bufs:
            self.buf_bytes -= sum(len(b.data) for b in node.bufs.values())
            node.bufs = EMPTY
        self.buf_inodes.discard(ino)
        d.freed[ino] = node.persisted or d.freed.get(ino, False)
        if d.freed[ino]:
            self.cache.gone.add(ino)
        d.inodes.add(ino)
        node.epoch = self.commits.epoch
        self.cache.discard(ino)

    def reset(self) -> None:
        """Drop every buffer and dirty key after the catalog changed under us (rollback)."""
        self.buf_inodes = set()
        self.buf_bytes = 0
        pins = self.dirty.pins
        self.dirty = DirtySet()
        for h in pins:
            self.chunks.unpin(h)

    # ---------------------------------------------------------------- chunks
    def store_jobs(self, jobs: list) -> list:
        """Hash and store chunk contents outside the lock, all of them as one batch.

        ``jobs`` is [(node, [(idx, content, ver)])]; returns
        [(node, [(idx, hash|None, len, ver)])], where an all-zero chunk is a
        hole (None) and stores nothing.
        """
        holes = {id(c) for _, items in jobs for _, c, _ in items if filedata.is_zero(c)}
        hashes = iter(self.chunks.put_many(
            [c for _, items in jobs for _, c, _ in items if id(c) not in holes], pin=True))
        return [(node, [(idx, None, 0, ver) if id(c) in holes else (idx, next(hashes), len(c), ver)
                        for idx, c, ver in items])
                for node, items in jobs]

    def install(self, node: Inode, stored: list) -> None:
        """Record stored chunks in ``node`` (under the lock)."""
        ino = node.ino
        alive = node.ds == self.cache.ds
        d = self.dirty
        for idx, h, length, ver in stored:
            if alive:
                ok, old, delta = filedata.install(node, idx, h, length, ver)
            else:
                ok, old, delta = False, None, 0
            if ok:
                self.buf_bytes += delta
                d.extents.add((ino, idx))
                if old is not None and old != h:
                    d.dropped.append(old)
                if h is not None:
                    d.pins.append(h)
            elif h is not None:
                self.chunks.unpin(h)
                d.dropped.append(h)
        if alive:
            if not node.bufs:
                self.buf_inodes.discard(ino)
            self.mark(node)

    def seal_buffers(self) -> list:
        """Seal every dirty buffer for storing (under the lock): [(node, [(idx, data, ver)])]."""
        jobs = []
        inodes = self.cache.inodes
        for ino in list(self.buf_inodes):
            node = inodes.get(ino)
            if node is None or not node.bufs:
                self.buf_inodes.discard(ino)
                continue
            jobs.append((node, [(idx, b.seal(), b.ver) for idx, b in node.bufs.items()]))
        return jobs

    def flush_buffers(self) -> None:
        """Store all dirty chunk buffers as chunk files now (memory pressure)."""
        with self.lock:
            if self.flushing:
                return
            self.flushing = True
            jobs = self.seal_buffers()
        try:
            done = self.store_jobs(jobs)
            with self.lock:
                for node, stored in done:
                    self.install(node, stored)
        finally:
            self.flushing = False

    # ---------------------------------------------------------------- commit
    def capture(self, batch: Batch) -> DirtySet:
        """Serialize dirty state into ``batch`` and start a new dirty set (under the lock)."""
        cap = self.dirty
        self.dirty = DirtySet()
        inodes = self.cache.inodes
        ds = self.cache.ds
        ins = batch.inode_rows
        for ino in cap.inodes:
            node = inodes.get(ino)
            if node is None or node.ds != ds:
                if cap.freed.get(ino) or (node is not None and node.persisted):
                    batch.freed.append(ino)
                continue
            if node.persisted:
                batch.inode_retire.append(ino)
            ins.append(node.row())
        for key in cap.entries:
            parent, name = key
            batch.entry_retire.append(key)
            pnode = inodes.get(parent)
            if pnode is None or pnode.children is None:
                continue
            e = pnode.children.get(name)
            if e is not None:
                batch.entry_rows.append((parent, name, e[0], e[1], e[2]))
        _capture_keyed(cap.extents, inodes, ds, "extents", batch.extent_retire, batch.extent_rows,
                       lambda ino, idx, e: (ino, idx, e[0], e[1]))
        _capture_keyed(cap.xattrs, inodes, ds, "xattrs", batch.xattr_retire, batch.xattr_rows,
                       lambda ino, name, v: (ino, name, v))
        for ino in cap.inodes:
            node = inodes.get(ino)
            if node is not None and node.ds == ds:
                node.persisted = True
        return cap

    def revert(self, inos: set[int], cap: DirtySet, epoch: int) -> None:
        """Return inodes a commit set aside to their committed state, in memory (under the lock).

        The in-memory records are discarded (marked dead, so a write still
        holding one installs nothing) and reloaded from the catalog; an inode
        never committed is gone. Open handles carry over. Pending fsyncs fail.
        """
        cache = self.cache
        for ino in inos:
            old = cache.discard(ino)
            if old is None and ino not in cap.inodes:
                continue  # another volume's inode
            cache.gone.discard(ino)
            opens = 0
            if old is not None:
                opens = old.opens
                if old.bufs:
                    self.buf_bytes -= sum(len(b.data) for b in old.bufs.values())
                    old.bufs = EMPTY
                self.buf_inodes.discard(ino)
                old.ds = -1
                old.failed = -1
            row = cache.loads.load_inode(ino)
            if row is not None and row[1] == cache.ds:
                node = cache.from_row(row)
                node.opens = opens
                node.epoch = node.failed = epoch
                cache.add(node)
            elif row is None:
                self.lost[ino] = None
                if len(self.lost) > LOST_KEEP:
                    del self.lost[next(iter(self.lost))]

    def committed(self, cap: DirtySet) -> None:
        """A commit of ``cap`` succeeded (under the lock)."""
        self.cache.gone.difference_update(cap.freed)

    def restore(self, cap: DirtySet) -> None:
        """Put a failed commit's dirty keys back (under the lock)."""
        self.dirty.restore(cap)


def _capture_keyed(keys: set, inodes: dict, ds: int, field: str, retire: list, rows: list,
                   row) -> None:
    """Add the (ino, key) pairs of ``keys`` (extents or xattrs, named by ``field``) to a batch:
    a persisted inode's old row is retired, the current value (if any) becomes ``row(...)``."""
    for key in keys:
        ino, k = key
        node = inodes.get(ino)
        values = getattr(node, field) if node is not None and node.ds == ds else None
        if values is None:
            continue  # None: reloaded since (a commit set it aside), nothing to write
        if node.persisted:
            retire.append(key)
        v = values.get(k)
        if v is not None:
            rows.append(row(ino, k, v))
