"""POSIX byte-range locks shared by every session of a server.

A lock owner is (session, client_id, proc_id): the Linux client names
itself by hostname, so two mounts in one guest differ only by session.
Ranges follow fcntl(2): ``length`` 0 means "to the end of the file", an
owner's own locks are split, merged or converted rather than conflicting,
and a read lock conflicts only with another owner's write lock.

The table lives on the trio thread; blocking requests wait on a condition
that every change wakes, so a waiter is granted its lock as soon as the
holder releases it, or gives up when its request is flushed (cancelled).
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from .protocol import LockType

INF = 2**64 - 1

Owner = tuple[int, bytes, int]  # (session id, client_id, proc_id)
Key = tuple[str, int]  # (dataset or view name, inode)


@dataclass(slots=True)
class HeldLock:
    owner: Owner
    type: int  # LockType.RDLCK or WRLCK
    start: int
    end: int  # inclusive


def lock_range(start: int, length: int) -> tuple[int, int]:
    """fcntl range to an inclusive [start, end]."""
    end = INF if length == 0 else min(INF, start + length - 1)
    return start, end


class LockTable:
    """Every byte-range lock the server holds, by file."""

    def __init__(self) -> None:
        self._locks: dict[Key, list[HeldLock]] = {}
        self._changed = trio.Event()

    def conflict(self, key: Key, owner: Owner, type_: int, start: int, end: int) -> HeldLock | None:
        """The first lock of another owner that blocks this request, if any."""
        for held in self._locks.get(key, ()):
            if held.owner == owner or held.end < start or held.start > end:
                continue
            if type_ == LockType.WRLCK or held.type == LockType.WRLCK:
                return held
        return None

    def apply(self, key: Key, owner: Owner, type_: int, start: int, end: int) -> None:
        """Set (or, with UNLCK, clear) ``owner``'s lock on [start, end]; no conflict check."""
        kept: list[HeldLock] = []
        for held in self._locks.get(key, ()):
            if held.owner != owner or held.end < start or held.start > end:
                kept.append(held)
                continue
            # Keep the parts of the owner's old lock outside the new range.
            if held.start < start:
                kept.append(HeldLock(owner, held.type, held.start, start - 1))
            if held.end > end:
                kept.append(HeldLock(owner, held.type, end + 1, held.end))
        if type_ != LockType.UNLCK:
            kept.append(self._merged(kept, HeldLock(owner, type_, start, end)))
        if kept:
            self._locks[key] = kept
        else:
            self._locks.pop(key, None)
        self._wake()

    @staticmethod
    def _merged(kept: list[HeldLock], new: HeldLock) -> HeldLock:
        """Coalesce ``new`` with adjacent locks of the same owner and type."""
        changed = True
        while changed:
            changed = False
            for held in kept:
                if held.owner == new.owner and held.type == new.type:
                    if held.end != INF and held.end + 1 == new.start or new.end != INF and new.end + 1 == held.start:
                        new = HeldLock(new.owner, new.type, min(held.start, new.start), max(held.end, new.end))
                        kept.remove(held)
                        changed = True
                        break
        return new

    def try_lock(self, key: Key, owner: Owner, type_: int, start: int, end: int) -> bool:
        """Take the lock if nothing conflicts; False otherwise."""
        if type_ != LockType.UNLCK and self.conflict(key, owner, type_, start, end):
            return False
        self.apply(key, owner, type_, start, end)
        return True

    async def lock_wait(self, key: Key, owner: Owner, type_: int, start: int, end: int) -> None:
        """Wait until the lock can be taken, then take it. Cancellable."""
        while not self.try_lock(key, owner, type_, start, end):
            await self._changed.wait()

    def release_session(self, session_id: int) -> None:
        """Drop every lock a session's owners hold (the session ended)."""
        for key in list(self._locks):
            kept = [h for h in self._locks[key] if h.owner[0] != session_id]
            if kept:
                self._locks[key] = kept
            else:
                del self._locks[key]
        self._wake()

    def _wake(self) -> None:
        # Everything runs on the trio thread: swapping the event is atomic,
        # and a waiter re-checks after every wake-up.
        self._changed.set()
        self._changed = trio.Event()

    def held(self, key: Key) -> list[HeldLock]:
        """The locks held on a file (for tests and status)."""
        return list(self._locks.get(key, ()))
