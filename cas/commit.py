"""The group commit: epochs, durability, quiescing, throttling and commit isolation.

A change made in memory belongs to the current *epoch*; a commit takes the
epoch, and once its catalog transaction is done every change of that epoch
and before is *durable*. A group commit (docs/format.md, "The group commit")

1. stores every volume's dirty chunk buffers as chunk files,
2. makes the new chunks durable in one batch (``ChunkBackend.make_durable``),
3. applies all metadata mutations of every volume in one DuckDB transaction,
4. deletes the chunks that the commit left unreferenced.

The store lock (:class:`GateLock`) is held only to copy buffers and to
capture the dirty sets, so requests keep flowing while a commit runs.
Commits are serialized by the commit lock: concurrent fsync callers wait for
one commit that started after their change instead of running one each. Lock
order: commit lock, data locks, store lock.

A volume takes part through the :class:`Participant` interface (the live
``cas.volume.Volume`` hands that work to its ``cas.changes.Changes``); it reaches the
engine through :class:`GroupCommit`'s public members (the store lock, the
epochs, inode numbers, limits, :meth:`GroupCommit.commit_until`,
:meth:`GroupCommit.throttle`, :meth:`GroupCommit.check_space`).
"""

from __future__ import annotations

import errno
import os
import threading
import time
from contextlib import ExitStack, contextmanager
from typing import Protocol

import structlog

from .catalog import Batch, Catalog
from .chunkbackend import ChunkBackend
from .errors import FsError
from .isolate import Components, bisect_apply, invalid_inodes, is_data_error, only, take

log = structlog.get_logger(__name__)


class GateLock:
    """A re-entrant lock whose :meth:`priority` holder cannot be starved.

    Python locks are not fair: a thread doing back-to-back operations can
    re-acquire the store lock forever while the commit thread waits. While a
    priority acquisition is pending, new acquisitions by other threads wait
    at the gate until it is done.

    :meth:`defer` queues work for the start of the next outermost
    acquisition, when no operation is half done: the inode caches evict
    there, so an operation never loses a record it still holds.
    """

    __slots__ = ("_lock", "_closed", "_open", "_deferred")

    def __init__(self):
        self._lock = threading.RLock()
        self._closed = False
        self._open = threading.Event()
        self._open.set()
        self._deferred: list = []

    def __enter__(self):
        if self._closed and not self._lock._is_owned():
            self._open.wait()
        if self._deferred and not self._lock._is_owned():
            self._lock.acquire()
            try:
                fns, self._deferred = self._deferred, []
                for fn in fns:
                    fn()
            except BaseException:
                self._lock.release()
                raise
            return self
        self._lock.acquire()
        return self

    def defer(self, fn) -> None:
        """Call ``fn`` (with the lock held) at the next acquisition that is not nested in another."""
        self._deferred.append(fn)

    def __exit__(self, *exc):
        self._lock.release()

    def owned(self) -> bool:
        """True if the calling thread holds the lock."""
        return self._lock._is_owned()

    def priority(self) -> "_Priority":
        """Hold the lock ahead of every thread that is not already waiting for it."""
        return _Priority(self)


class _Priority:
    __slots__ = ("gate",)

    def __init__(self, gate: GateLock):
        self.gate = gate

    def __enter__(self):
        g = self.gate
        g._open.clear()
        g._closed = True
        g._lock.acquire()
        return g

    def __exit__(self, *exc):
        g = self.gate
        g._closed = False
        g._open.set()
        g._lock.release()


class DirtySet:
    """What one volume changed since its last capture: the keys a commit writes.

    A commit takes the whole set (:meth:`GroupCommit` calls the volume's
    ``capture``, which swaps in a new one) and, if it fails, merges it back
    into the newer one with :meth:`restore`.
    """

    __slots__ = ("inodes", "entries", "extents", "xattrs", "freed", "pins", "dropped")

    def __init__(self):
        self.inodes: set[int] = set()
        self.entries: set[tuple[int, bytes]] = set()   # (parent, name)
        self.extents: set[tuple[int, int]] = set()     # (ino, idx)
        self.xattrs: set[tuple[int, bytes]] = set()    # (ino, name)
        self.freed: dict[int, bool] = {}   # ino -> had a catalog row
        self.pins: list[str] = []          # chunk hashes installed since the last capture
        self.dropped: list[str] = []       # chunk hashes no longer referenced in memory

    def restore(self, older: "DirtySet") -> None:
        """Put back the keys of ``older``, a set a failed commit took."""
        self.inodes |= older.inodes
        self.entries |= older.entries
        self.extents |= older.extents
        self.xattrs |= older.xattrs
        for ino, had in older.freed.items():
            self.freed[ino] = had or self.freed.get(ino, False)
        self.pins[:0] = older.pins
        self.dropped[:0] = older.dropped


class Participant(Protocol):
    """What a volume offers the group commit (all "under the lock" calls hold the store lock)."""

    #: cleared while a commit takes every data lock; data operations wait on it
    data_gate: threading.Event
    #: the striped locks that serialize writes and truncates
    data_locks: list[threading.Lock]

    @property
    def dirty_bytes(self) -> int:
        """File data buffered in memory and not yet stored as chunks."""

    @property
    def dirty_count(self) -> int:
        """Inodes changed since the last capture."""

    def seal_buffers(self) -> list:
        """Seal every dirty buffer for storing (under the lock)."""

    def store_jobs(self, jobs: list) -> list:
        """Store sealed buffers as chunks (outside the lock)."""

    def install(self, node, stored: list) -> None:
        """Record stored chunks in their inode (under the lock)."""

    def capture(self, batch: Batch) -> DirtySet:
        """Move the dirty set into ``batch``; returns what is needed to undo it (under the lock)."""

    def revert(self, inos: set[int], cap: DirtySet, epoch: int) -> None:
        """Return inodes a commit set aside to their committed state (under the lock)."""

    def committed(self, cap: DirtySet) -> None:
        """A commit of ``cap`` succeeded (under the lock)."""

    def restore(self, cap: DirtySet) -> None:
        """A commit of ``cap`` failed: put its dirty keys back (under the lock)."""


class GroupCommit:
    """The commit engine of one open store, and the limits volumes work within.

    ``volumes`` maps dataset names to the live volumes that take part
    (the Store fills it). ``dirty_limit`` bounds buffered file data before a
    writer stores it early; beyond ``dirty_inodes_max`` dirty inodes, mutating
    callers wait for a commit; ``record_bytes`` bounds each volume's inode records
    and ``row_bytes`` its compact rows of clean inodes (cas/inodes.py).
    """

    def __init__(self, path: str, catalog: Catalog, chunks: ChunkBackend, *, reserve_bytes: int,
                 record_bytes: int, row_bytes: int, dirty_limit: int, dirty_inodes_max: int,
                 fsid: int):
        self.path = path
        self.catalog = catalog
        self.chunks = chunks
        #: delete a chunk as soon as no catalog row names it (False: leave it to gc, which
        #: also knows the references of the store's catalog copies, cas/catalogcopy.py)
        self.eager_delete = True
        self.chunk_size = catalog.chunk_size
        self.reserve_bytes = reserve_bytes
        self.max_file_size = 1 << 62
        self.record_bytes = record_bytes
        self.row_bytes = row_bytes
        self.dirty_limit = dirty_limit
        self.dirty_inodes_max = dirty_inodes_max
        self.fsid = fsid
        self.lock = GateLock()               # the store lock
        self.commit_lock = threading.Lock()  # one commit at a time
        self.epoch = 1      # changes made now belong to this commit epoch
        self.durable = 0    # every change of epochs <= this is committed
        self.next_ino = catalog.next_ino
        self.volumes: dict[str, Participant] = {}
        self.closed = False
        self.last_commit_error: BaseException | None = None
        self._space_checked = 0.0
        self._space_free = 0
        self._space_since = 0

    # ------------------------------------------------------------ inode numbers
    def alloc_inos(self, n: int = 1) -> int:
        """Reserve ``n`` consecutive inode numbers; returns the first (store lock held)."""
        ino = self.next_ino
        self.next_ino = ino + n
        return ino

    # ----------------------------------------------------------------- commits
    def commit(self) -> None:
        """Group-commit every volume now; blocks until durable.

        Raises FsError on failure (the changes stay queued and are retried).
        """
        with self.commit_lock:
            self.commit_locked()

    def throttle(self, vol: Participant) -> None:
        """Write throttling: block a mutating caller while too much is uncommitted.

        Only reached when changes arrive faster than commits drain them (or no
        commit loop runs); it keeps the pinned part of the cache bounded.
        """
        with self.commit_lock:
            if vol.dirty_count > self.dirty_inodes_max:
                self.commit_locked()

    def commit_until(self, epoch: int) -> None:
        """Return once changes of ``epoch`` are durable, joining or running a commit."""
        if self.durable >= epoch:
            return
        with self.commit_lock:
            if self.durable >= epoch:
                return
            self.commit_locked()

    def commit_locked(self) -> None:
        """One group commit; the caller holds :attr:`commit_lock`."""
        if self.closed:
            raise FsError(errno.EBADF, "store is closed")
        with self.lock.priority():
            epoch = self.epoch
            self.epoch += 1
            vols = list(self.volumes.values())
            jobs = [vol.seal_buffers() for vol in vols]
        stored = self._store_buffers(vols, jobs)
        batch = Batch()
        caps: list = []
        # Writes went on while the chunks were stored: a buffer may now hold bytes
        # newer than what was stored, and a whole-chunk write may have grown the
        # size before installing its chunks. Capturing now would record a size
        # with older (shorter) extents: a torn file in the catalog and in any
        # snapshot taken after this commit. So hold every data lock (no write or
        # truncate in flight or starting), store what was dirtied meanwhile
        # (O(bytes written during the store phase)), then capture.
        with self.quiesce(vols):
            with self.lock.priority():
                self._install_stored(vols, stored)
                jobs = [vol.seal_buffers() for vol in vols]
                late = any(jobs)
                if not late:
                    self._capture(vols, batch, caps)
            if late:
                stored = self._store_buffers(vols, jobs)
                with self.lock.priority():
                    self._install_stored(vols, stored)
                    self._capture(vols, batch, caps)
        # Checked outside the store lock; if a value cannot be stored, commit again
        # with everything held, so that the inodes set aside revert exactly.
        bad = invalid_inodes(batch)
        try:
            if bad:
                raise OverflowError(f"values the catalog cannot hold: {bad}")
            self.chunks.make_durable()
            dropped = self.catalog.apply(batch) if not batch.empty() else []
        except Exception as exc:
            with self.lock.priority():
                for vol, cap in zip(vols, caps):
                    vol.restore(cap)
            if not is_data_error(exc):
                self._failed(exc, epoch)
            if not bad:  # some row slipped past the checks: found by committing in parts
                log.error("commit failed on its rows; committing again group by group",
                          error=repr(exc), epoch=epoch)
            self._commit_isolated()
            return
        self._finish(epoch, vols, caps, dropped)

    def _commit_isolated(self) -> None:
        """A commit that applies its batch in parts, isolating the groups whose rows fail.

        Runs only after a commit failed on its data. Everything is held
        (data locks and store lock) from capture to the in-memory revert,
        so the groups set aside are reverted exactly as they were captured.
        """
        with self.lock.priority():
            epoch = self.epoch
            self.epoch += 1
            vols = list(self.volumes.values())
        batch = Batch()
        caps: list = []
        aside: list[str] = []
        with self.quiesce(vols), self.lock.priority():
            jobs = [vol.seal_buffers() for vol in vols]
            self._install_stored(vols, self._store_buffers(vols, jobs))
            self._capture(vols, batch, caps)
            try:
                self._set_aside_invalid(vols, batch, caps, epoch, aside)
                self.chunks.make_durable()
                groups = Components(batch, self.catalog.live_children(batch.entry_retire)).groups()
                dropped, bad = bisect_apply(batch, groups, self.catalog.apply)
            except Exception as exc:
                for vol, cap in zip(vols, caps):
                    vol.restore(cap)
                self._failed(exc, epoch)
            for inos, exc in bad:
                aside += [row[2] for row in only(batch, inos).extent_rows if row[2]]
                for vol, cap in zip(vols, caps):
                    vol.revert(inos, cap, epoch)
                log.error("commit set aside inodes whose rows failed; they are back to their "
                          "last committed state", inodes=sorted(inos), error=repr(exc), epoch=epoch)
        self._finish(epoch, vols, caps, dropped + aside)

    def _failed(self, exc: Exception, epoch: int):
        """Record and raise a commit failure (the changes stay queued and are retried)."""
        self.last_commit_error = exc
        log.error("commit failed", error=str(exc), epoch=epoch)
        code = getattr(exc, "errno", None) or (
            errno.ENOSPC if "space" in str(exc).lower() else errno.EIO)
        raise FsError(code, f"commit failed: {exc}") from exc

    def _finish(self, epoch: int, vols: list, caps: list, candidates: list[str]) -> None:
        """A commit is durable: wake its waiters, release its pins, collect dropped chunks."""
        self.last_commit_error = None
        with self.lock.priority():
            self.durable = epoch
            for vol, cap in zip(vols, caps):
                vol.committed(cap)
                candidates.extend(cap.dropped)
        for cap in caps:
            for h in cap.pins:
                self.chunks.unpin(h)
        self.gc_hashes(candidates)

    def _store_buffers(self, vols: list, jobs: list) -> list:
        """Store the sealed buffers of each volume's job as chunks (outside the store lock)."""
        try:
            return [vol.store_jobs(job) for vol, job in zip(vols, jobs)]
        except OSError as exc:
            self.last_commit_error = exc
            log.error("commit failed storing chunks", error=str(exc))
            raise FsError(exc.errno or errno.EIO, f"commit failed: {exc}") from exc

    @staticmethod
    def _install_stored(vols: list, stored: list) -> None:
        """Record stored chunks in their inodes (store lock held)."""
        for vol, done in zip(vols, stored):
            for node, items in done:
                vol.install(node, items)

    def _capture(self, vols: list, batch: Batch, caps: list) -> None:
        """Capture every volume's dirty state into ``batch`` (store lock held)."""
        for vol in vols:
            caps.append(vol.capture(batch))
        batch.next_ino = self.next_ino

    def _set_aside_invalid(self, vols: list, batch: Batch, caps: list, epoch: int,
                           aside: list[str]) -> None:
        """Take out of ``batch`` the rows the catalog cannot hold (store lock held).

        Each is set aside with every row joined to it (see cas/isolate.py),
        its inodes reverted in memory; the chunk hashes of their extent rows
        are added to ``aside``.
        """
        bad = invalid_inodes(batch)
        if not bad:
            return
        comps = Components(batch, self.catalog.live_children(batch.entry_retire))
        done: set[int] = set()
        for ino, value in bad.items():
            if ino in done:
                continue
            inos = comps.closure([ino])
            done |= inos
            removed = take(batch, inos)
            aside += [row[2] for row in removed.extent_rows if row[2]]
            for vol, cap in zip(vols, caps):
                vol.revert(inos, cap, epoch)
            log.error("commit set aside an inode with a value the catalog cannot hold; it is "
                      "back to its last committed state", ino=ino, value=value,
                      with_inodes=sorted(inos - {ino}), epoch=epoch)

    @contextmanager
    def quiesce(self, vols: list):
        """Hold the data locks of ``vols``: no write or truncate is half done meanwhile.

        Lock order is commit lock, data locks, store lock. New data operations
        wait at each volume's gate meanwhile, so a writer re-taking its data lock
        in a loop cannot starve the commit. A caller that already holds the store
        lock (rollback) keeps every mutation out and takes nothing.
        """
        if self.lock.owned():
            yield
            return
        with ExitStack() as stack:
            for vol in vols:
                vol.data_gate.clear()
                stack.callback(vol.data_gate.set)
            for vol in vols:
                for dlock in vol.data_locks:
                    stack.enter_context(dlock)
            yield

    def gc_hashes(self, candidates: list[str]) -> int:
        """Delete candidate chunks that no catalog row and no pending write uses.

        Nothing when ``eager_delete`` is off (a shared pool, where another store
        may use them, or catalog copies that may name them): gc deletes those.
        """
        if not candidates or not self.eager_delete:
            return 0
        n = 0
        try:
            for h in self.catalog.unreferenced(candidates):
                if self.chunks.delete_if_unpinned(h):
                    n += 1
        except OSError as exc:
            # the commit is durable already; what stays behind is garbage gc removes later
            log.warning("could not delete unreferenced chunks; gc will remove them",
                        error=str(exc), deleted=n)
        return n

    # ------------------------------------------------------------------- space
    def statvfs(self) -> os.statvfs_result:
        """statvfs(2) of the store's file system."""
        return os.statvfs(self.path)

    def check_space(self, n: int) -> None:
        """Raise ENOSPC if writing ``n`` more bytes would eat into the reserve."""
        now = time.monotonic()
        self._space_since += n
        if (now - self._space_checked > 0.05 or self._space_since > (1 << 20)
                or self._space_free - self._space_since < self.reserve_bytes):
            st = os.statvfs(self.path)
            buffered = sum(v.dirty_bytes for v in list(self.volumes.values()))
            self._space_free = st.f_bavail * st.f_frsize - buffered
            self._space_checked = now
            self._space_since = n
        if self._space_free - self._space_since < self.reserve_bytes:
            raise FsError(errno.ENOSPC, "store is full (free space below the reserve)")
