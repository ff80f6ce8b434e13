"""A tree that is gone: every request on it is ESTALE.

A read-only replica that moves to a newer catalog copy (:mod:`.replica`)
points the views its clients hold at the new copy. A view whose snapshot or
dataset the new copy no longer has gets this tree instead, as a deleted
snapshot's fids get ESTALE on the primary (cas/snapview.py).
"""

from __future__ import annotations

import errno

from cas import Attr, DirEntry, FsError, ReadOnlyTree, StatFs


class StaleTree(ReadOnlyTree):
    """What a view whose tree is gone serves: ESTALE for reads, EROFS for mutations."""

    erofs_message = "read-only replica"

    def __init__(self, root: int, what: str):
        self.root = root
        self.what = what

    def _stale(self):
        raise FsError(errno.ESTALE, f"ESTALE: {self.what} is not in the replica's current catalog copy")

    def lookup(self, parent: int, name: bytes) -> Attr:
        self._stale()

    def getattr(self, ino: int) -> Attr:
        self._stale()

    def readdir(self, ino: int, cookie: int = 0, limit: int | None = None) -> list[DirEntry]:
        self._stale()

    def resolve(self, path: bytes, follow: bool = True) -> Attr:
        self._stale()

    def open(self, ino: int) -> Attr:
        self._stale()

    def release(self, ino: int) -> None:
        pass

    def read(self, ino: int, offset: int, size: int) -> bytes:
        self._stale()

    def read_cached(self, ino: int, offset: int, size: int) -> bytes | tuple | None:
        self._stale()

    def readlink(self, ino: int) -> bytes:
        self._stale()

    def getxattr(self, ino: int, name: bytes) -> bytes:
        self._stale()

    def listxattr(self, ino: int) -> list[bytes]:
        self._stale()

    def fsync(self, ino: int) -> None:
        self._stale()

    def statfs(self) -> StatFs:
        self._stale()
