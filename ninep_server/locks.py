"""POSIX byte-range locks shared by every session of a server.

A lock owner is (session, client_id, proc_id): the Linux client names
itself by hostname, so two mounts in one guest differ only by session.
Ranges follow fcntl(2): ``length`` 0 means "to the end of the file", an
owner's own locks are split, merged or converted rather than conflicting,
and a read lock conflicts only with another owner's write lock.

Every operation is bounded whatever the number of locks held: per file, the
write locks and the read locks are each an :class:`~.intervals.IntervalSet`
(O(log n) to find a conflict, skipping only the requester's own locks), and
each owner's locks are a list sorted by start (they never overlap), so a
change touches only the locks it splits or merges. A session may hold at
most ``max_per_session`` locks (ENOLCK beyond) and have at most
``max_waits_per_session`` requests waiting (more are answered BLOCKED, and
the client polls).

The table lives on the trio thread; blocking requests wait on an event per
file that every change to that file sets, so a waiter is granted its lock as
soon as the holder releases it, or gives up when its request is flushed
(cancelled).
"""

from __future__ import annotations

import errno
import itertools
from bisect import bisect_left
from dataclasses import dataclass, field

import trio

from cas import FsError

from .intervals import IntervalSet
from .protocol import LockType

INF = 2**64 - 1
# Linux sends its node name (at most 64 bytes) as the client_id.
MAX_CLIENT_ID = 255

Owner = tuple[int, bytes, int]  # (session id, client_id, proc_id)
Key = tuple[str, int]  # (dataset or view name, inode)

_serials = itertools.count()


@dataclass(slots=True, eq=False)
class HeldLock:
    owner: Owner
    type: int  # LockType.RDLCK or WRLCK
    start: int
    end: int  # inclusive
    serial: int = field(default_factory=_serials.__next__)


def lock_range(start: int, length: int) -> tuple[int, int]:
    """fcntl range to an inclusive [start, end]."""
    end = INF if length == 0 else min(INF, start + length - 1)
    return start, end


def _end(held: HeldLock) -> int:
    return held.end


@dataclass(slots=True, eq=False)
class _FileLocks:
    """The locks on one file."""

    reads: IntervalSet[HeldLock] = field(default_factory=IntervalSet)
    writes: IntervalSet[HeldLock] = field(default_factory=IntervalSet)
    owners: dict[Owner, list[HeldLock]] = field(default_factory=dict)  # disjoint, by start
    changed: trio.Event = field(default_factory=trio.Event)

    def tree(self, type_: int) -> IntervalSet[HeldLock]:
        return self.writes if type_ == LockType.WRLCK else self.reads

    def wake(self) -> None:
        # Everything runs on the trio thread: swapping the event is atomic,
        # and a waiter re-checks after every wake-up.
        self.changed.set()
        self.changed = trio.Event()


@dataclass(slots=True)
class _SessionLocks:
    """What one session holds, so that caps are checked and release is direct."""

    count: int = 0
    waits: int = 0
    files: dict[Key, set[Owner]] = field(default_factory=dict)  # owners with locks, per file


class LockTable:
    """Every byte-range lock the server holds, by file."""

    def __init__(self, max_per_session: int = 4096, max_waits_per_session: int = 32) -> None:
        self.max_per_session = max_per_session
        self.max_waits_per_session = max_waits_per_session
        self._files: dict[Key, _FileLocks] = {}
        self._sessions: dict[int, _SessionLocks] = {}

    def conflict(self, key: Key, owner: Owner, type_: int, start: int, end: int) -> HeldLock | None:
        """A lock of another owner that blocks this request, if any."""
        locks = self._files.get(key)
        if locks is None:
            return None
        # Only the requester's own locks are skipped, and they never overlap
        # each other: the search is bounded by what this owner holds.
        for held in locks.writes.overlapping(start, end):
            if held.owner != owner:
                return held
        if type_ == LockType.WRLCK:
            for held in locks.reads.overlapping(start, end):
                if held.owner != owner:
                    return held
        return None

    def apply(self, key: Key, owner: Owner, type_: int, start: int, end: int) -> None:
        """Set (or, with UNLCK, clear) ``owner``'s lock on [start, end]; no conflict check.

        ENOLCK if the session would hold more than ``max_per_session`` locks.
        """
        if len(owner[1]) > MAX_CLIENT_ID:
            # Every lock keeps its owner's name: a long one would make a lock cost up to msize.
            raise FsError(errno.EINVAL, f"lock client_id longer than {MAX_CLIENT_ID} bytes")
        locks = self._files.get(key)
        own = locks.owners.get(owner, []) if locks is not None else []
        if own:
            owner = own[0].owner  # one owner tuple (and client_id) shared by all its locks
        # The owner's locks that overlap or touch [start, end]: ends increase
        # with starts since they are disjoint.
        lo = bisect_left(own, start - 1, key=_end)
        hi = lo
        while hi < len(own) and own[hi].start <= end + 1:
            hi += 1
        replaced = own[lo:hi]
        before: list[HeldLock] = []
        after: list[HeldLock] = []
        new_start, new_end = start, end
        for held in replaced:
            same = type_ != LockType.UNLCK and held.type == type_
            if held.end < start:  # touches on the left
                if same:
                    new_start = held.start
                else:
                    before.append(held)
            elif held.start > end:  # touches on the right
                if same:
                    new_end = held.end
                else:
                    after.append(held)
            else:  # overlaps: keep what lies outside, or merge it into the new lock
                if held.start < start:
                    if same:
                        new_start = held.start
                    else:
                        before.append(HeldLock(owner, held.type, held.start, start - 1))
                if held.end > end:
                    if same:
                        new_end = held.end
                    else:
                        after.append(HeldLock(owner, held.type, end + 1, held.end))
        result = before
        if type_ != LockType.UNLCK:
            result.append(HeldLock(owner, type_, new_start, new_end))
        result += after
        added = len(result) - len(replaced)
        session = self._sessions.get(owner[0])
        if added > 0 and (session.count if session else 0) + added > self.max_per_session:
            raise FsError(errno.ENOLCK, f"too many locks on this connection (limit {self.max_per_session})")
        if not replaced and not result:
            return  # unlocking what is not locked
        if locks is None:
            locks = self._files[key] = _FileLocks()
        if session is None:
            session = self._sessions[owner[0]] = _SessionLocks()
        kept = {id(h) for h in result}
        for held in replaced:
            if id(held) not in kept:
                locks.tree(held.type).remove(held)
        gone = {id(h) for h in replaced}
        for held in result:
            if id(held) not in gone:
                locks.tree(held.type).add(held)
        own[lo:hi] = result
        session.count += added
        if own:
            locks.owners[owner] = own
            session.files.setdefault(key, set()).add(owner)
        else:
            locks.owners.pop(owner, None)
            owners = session.files.get(key)
            if owners is not None:
                owners.discard(owner)
                if not owners:
                    del session.files[key]
        locks.wake()
        if not locks.owners:
            del self._files[key]

    def try_lock(self, key: Key, owner: Owner, type_: int, start: int, end: int) -> bool:
        """Take the lock if nothing conflicts; False otherwise (ENOLCK at the cap)."""
        if type_ != LockType.UNLCK and self.conflict(key, owner, type_, start, end):
            return False
        self.apply(key, owner, type_, start, end)
        return True

    async def lock_wait(self, key: Key, owner: Owner, type_: int, start: int, end: int) -> bool:
        """Wait until the lock can be taken, then take it; cancellable.

        False at once if the session already has ``max_waits_per_session``
        requests waiting: the caller answers BLOCKED and the client polls.
        """
        session = self._sessions.setdefault(owner[0], _SessionLocks())
        if session.waits >= self.max_waits_per_session:
            return False
        session.waits += 1
        try:
            while not self.try_lock(key, owner, type_, start, end):
                await self._files[key].changed.wait()
        finally:
            session.waits -= 1
        return True

    def release_session(self, session_id: int) -> None:
        """Drop every lock a session's owners hold (the session ended)."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        for key, owners in session.files.items():
            locks = self._files[key]
            gone = [held for owner in owners for held in locks.owners.pop(owner)]
            if not locks.owners:
                del self._files[key]  # they were the only ones: drop the file's trees whole
            elif 2 * len(gone) > len(locks.reads) + len(locks.writes):
                # Most of the file's locks go: rebuilding from the rest costs less.
                reads, writes = IntervalSet(), IntervalSet()
                for rest in locks.owners.values():
                    for held in rest:
                        (writes if held.type == LockType.WRLCK else reads).add(held)
                locks.reads, locks.writes = reads, writes
            else:
                for held in gone:
                    locks.tree(held.type).remove(held)
            locks.wake()
        if session.waits:  # requests still waiting keep their count
            self._sessions[session_id] = _SessionLocks(waits=session.waits)

    def held(self, key: Key) -> list[HeldLock]:
        """The locks held on a file, by start (for tests and status)."""
        locks = self._files.get(key)
        if locks is None:
            return []
        return sorted([*locks.reads, *locks.writes], key=lambda h: (h.start, h.serial))

    def count(self, session_id: int) -> int:
        """How many locks a session holds."""
        session = self._sessions.get(session_id)
        return session.count if session else 0
