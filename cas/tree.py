"""The tree interface: what the 9P server calls on whatever a fid's view shows.

:class:`Tree` is the declared interface, implemented by the live
:class:`cas.volume.Volume`, by snapshot views (:class:`cas.snapview.SnapshotVolume`)
and by the synthetic ``/.snapshots`` directory of the server. Names are
bytes, inode numbers ints; errors are :class:`cas.errors.FsError` with an
errno. See docs/volume-api.md for each call's contract.

:class:`ReadOnlyTree` is the one piece that makes a tree read-only: each
mutator raises EROFS before looking at its arguments. A read-only tree
inherits it and implements the queries.
"""

from __future__ import annotations

import errno
from typing import Protocol, runtime_checkable

from .errors import FsError
from .records import Attr, DirEntry, StatFs

#: the calls of :class:`Tree` that change the tree (EROFS on a read-only one)
MUTATORS = ("setattr", "create", "mkdir", "mknod", "symlink", "link", "unlink", "rmdir", "rename",
            "write", "write_nowait", "setxattr", "removexattr")


@runtime_checkable
class Tree(Protocol):
    """A browsable file tree: a live dataset, a snapshot, or ``/.snapshots``."""

    #: the root directory's inode number
    root: int
    #: True if every mutator raises EROFS
    read_only: bool

    def lookup(self, parent: int, name: bytes) -> Attr:
        """Attributes of ``name`` in directory ``parent`` (``.`` and ``..`` included)."""

    def getattr(self, ino: int) -> Attr:
        """Attributes of inode ``ino``."""

    def setattr(self, ino: int, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, size: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None, ctime_ns: int | None = None) -> Attr:
        """Change attributes; ``size`` truncates or extends a regular file."""

    def create(self, parent: int, name: bytes, mode: int, uid: int, gid: int) -> Attr:
        """Create a regular file (EEXIST if ``name`` exists)."""

    def mkdir(self, parent: int, name: bytes, mode: int, uid: int, gid: int) -> Attr:
        """Create a directory."""

    def mknod(self, parent: int, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> Attr:
        """Create a fifo, socket, device or regular file; ``mode`` carries the type."""

    def symlink(self, parent: int, name: bytes, target: bytes, uid: int, gid: int) -> Attr:
        """Create a symlink to ``target``."""

    def readlink(self, ino: int) -> bytes:
        """The target of symlink ``ino`` (EINVAL if not a symlink)."""

    def link(self, ino: int, newparent: int, newname: bytes) -> Attr:
        """Add a hard link to ``ino``."""

    def unlink(self, parent: int, name: bytes) -> None:
        """Remove a non-directory entry."""

    def rmdir(self, parent: int, name: bytes) -> None:
        """Remove an empty directory."""

    def rename(self, oldparent: int, oldname: bytes, newparent: int, newname: bytes) -> None:
        """POSIX rename(2)."""

    def readdir(self, ino: int, cookie: int = 0, limit: int | None = None) -> list[DirEntry]:
        """Up to ``limit`` entries after ``cookie``; [] at the end."""

    def resolve(self, path: bytes, follow: bool = True) -> Attr:
        """Walk a '/'-separated path from the root."""

    def open(self, ino: int) -> Attr:
        """Take a handle reference on ``ino``."""

    def release(self, ino: int) -> None:
        """Drop a handle reference taken by :meth:`open`."""

    def read(self, ino: int, offset: int, size: int) -> bytes | bytearray:
        """Up to ``size`` bytes at ``offset`` (may wait for the disk)."""

    def read_cached(self, ino: int, offset: int, size: int) -> bytes | memoryview | tuple | None:
        """What :meth:`read` returns if no disk access is needed, else None.

        A read across several buffers may come as a tuple of them, in order
        (not joined into one); ``b"".join`` gives its bytes."""

    def write(self, ino: int, offset: int, data) -> int:
        """Write ``data`` at ``offset``; returns its length."""

    def write_nowait(self, ino: int, offset: int, data) -> int | None:
        """:meth:`write` if it needs no disk and no waiting, else None (nothing written)."""

    def fsync(self, ino: int) -> None:
        """Return once ``ino``'s data and metadata are durable."""

    def getxattr(self, ino: int, name: bytes) -> bytes:
        """Value of xattr ``name`` (ENODATA if absent)."""

    def listxattr(self, ino: int) -> list[bytes]:
        """Names of ``ino``'s xattrs."""

    def access_acl(self, ino: int) -> bytes | None:
        """``ino``'s access ACL (the value of ``system.posix_acl_access``) or None,
        for permission checks: cheap when the store holds no ACL."""

    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        """Set an xattr (flags: XATTR_CREATE, XATTR_REPLACE)."""

    def removexattr(self, ino: int, name: bytes) -> None:
        """Remove an xattr (ENODATA if absent)."""

    def statfs(self) -> StatFs:
        """Space and file counts of the filesystem holding the tree."""


class ReadOnlyTree:
    """The mutators of :class:`Tree`, each raising EROFS: inherit it to make a tree read-only.

    ``erofs_message`` names what is read-only in the error message.
    """

    read_only = True
    erofs_message = "EROFS: read-only"

    def refuse(self):
        """Raise FsError(EROFS) with :attr:`erofs_message`."""
        raise FsError(errno.EROFS, self.erofs_message)

    def setattr(self, ino: int, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, size: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None, ctime_ns: int | None = None) -> Attr:
        """EROFS."""
        self.refuse()

    def create(self, parent: int, name: bytes, mode: int, uid: int, gid: int) -> Attr:
        """EROFS."""
        self.refuse()

    def mkdir(self, parent: int, name: bytes, mode: int, uid: int, gid: int) -> Attr:
        """EROFS."""
        self.refuse()

    def mknod(self, parent: int, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> Attr:
        """EROFS."""
        self.refuse()

    def symlink(self, parent: int, name: bytes, target: bytes, uid: int, gid: int) -> Attr:
        """EROFS."""
        self.refuse()

    def link(self, ino: int, newparent: int, newname: bytes) -> Attr:
        """EROFS."""
        self.refuse()

    def unlink(self, parent: int, name: bytes) -> None:
        """EROFS."""
        self.refuse()

    def rmdir(self, parent: int, name: bytes) -> None:
        """EROFS."""
        self.refuse()

    def rename(self, oldparent: int, oldname: bytes, newparent: int, newname: bytes) -> None:
        """EROFS."""
        self.refuse()

    def write(self, ino: int, offset: int, data) -> int:
        """EROFS."""
        self.refuse()

    def write_nowait(self, ino: int, offset: int, data) -> int | None:
        """EROFS."""
        self.refuse()

    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        """EROFS."""
        self.refuse()

    def removexattr(self, ino: int, name: bytes) -> None:
        """EROFS."""
        self.refuse()
