"""Plain records exchanged with callers, and the in-memory inode record."""

from __future__ import annotations

import stat
from dataclasses import dataclass


@dataclass(slots=True)
class Attr:
    """The attributes of one inode, as returned by lookup/getattr/setattr."""

    ino: int
    mode: int
    uid: int
    gid: int
    nlink: int
    rdev: int
    size: int
    blocks: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    btime_ns: int
    gen: int
    data_version: int


@dataclass(slots=True)
class DirEntry:
    """One directory entry from readdir.

    ``mode`` holds the child's file type bits (``S_IFMT``), like ``d_type``;
    ``cookie`` is the cookie that continues the listing after this entry.
    """

    name: bytes
    ino: int
    mode: int
    cookie: int


@dataclass(slots=True)
class StatFs:
    """Filesystem statistics (fields follow 9P2000.L Rstatfs)."""

    type: int
    bsize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int
    fsid: int
    namelen: int


class Buf:
    """A dirty chunk buffer: content overriding the stored extent, and its version.

    ``sealed`` means a commit or flush is storing ``data`` outside the lock:
    whoever changes the buffer first replaces ``data`` with a copy
    (:meth:`writable`), so the bytes being stored never change underneath.
    """

    __slots__ = ("data", "ver", "sealed")

    def __init__(self, data: bytearray, ver: int):
        self.data = data
        self.ver = ver
        self.sealed = False

    def seal(self) -> bytearray:
        """The content, handed out without a copy for storing."""
        self.sealed = True
        return self.data

    def writable(self) -> bytearray:
        """The content, copied first if it is sealed."""
        if self.sealed:
            self.data = bytearray(self.data)
            self.sealed = False
        return self.data


EMPTY: dict = {}  # shared, never mutated: replaced by a fresh dict on first insert


class Inode:
    """The live, mutable in-memory state of one inode.

    ``children`` maps name -> (child ino, seq, type bits) for directories once
    loaded (insertion order is seq order). ``extents`` maps chunk index ->
    (hash, length, ver) once loaded; ``bufs`` holds dirty chunk buffers that
    override extents. ``xattrs`` maps name -> value once loaded.
    """

    __slots__ = (
        "ino", "ds", "mode", "uid", "gid", "nlink", "rdev", "size",
        "atime", "mtime", "ctime", "btime", "dver", "parent", "next_seq",
        "target", "children", "listing", "extents", "bufs", "xattrs",
        "epoch", "opens", "persisted", "wseq", "writers", "cuts", "read_end", "failed",
        "probes", "ref", "cost",
    )

    def __init__(self, ino: int, ds: int, mode: int, uid: int, gid: int, nlink: int,
                 rdev: int, size: int, atime: int, mtime: int, ctime: int, btime: int,
                 dver: int, parent: int, next_seq: int, target: bytes | None):
        self.ino = ino
        self.ds = ds
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.nlink = nlink
        self.rdev = rdev
        self.size = size
        self.atime = atime
        self.mtime = mtime
        self.ctime = ctime
        self.btime = btime
        self.dver = dver
        self.parent = parent
        self.next_seq = next_seq
        self.target = target
        self.children: dict[bytes, tuple[int, int, int]] | None = None
        self.listing = None
        self.extents: dict[int, tuple[str, int, int]] | None = None
        self.bufs: dict[int, Buf] = EMPTY
        self.xattrs: dict[bytes, bytes] | None = None
        self.epoch = 0          # commit epoch holding this inode's latest change
        self.opens = 0
        self.persisted = False  # a catalog row exists
        self.wseq = 0           # per-inode data version counter for chunk buffers
        self.writers = 0        # data operations in progress (pins the inode in the cache)
        self.cuts: list[tuple[int, int]] | tuple = ()  # truncates: (wseq, first chunk index cut)
        self.read_end = -1      # where the last read ended (sequential read-ahead)
        # A commit set this inode aside: the epoch of that commit (its fsync fails
        # until it changes again), or -1 on the discarded in-memory record.
        self.failed = 0
        self.probes = 0         # names looked up one by one in this directory (InodeCache.entry)
        self.ref = False        # used since eviction last passed it (a second chance)
        self.cost = 0           # bytes the inode cache charged for this record

    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    def row(self) -> tuple:
        """The catalog row of this inode (``catalog.INODE_COLS``); ``Inode(*row)`` rebuilds it."""
        return (self.ino, self.ds, self.mode, self.uid, self.gid, self.nlink, self.rdev,
                self.size, self.atime, self.mtime, self.ctime, self.btime, self.dver,
                self.parent, self.next_seq, self.target)

    def attr(self) -> Attr:
        return Attr(self.ino, self.mode, self.uid, self.gid, self.nlink, self.rdev,
                    self.size, (self.size + 511) >> 9, self.atime, self.mtime,
                    self.ctime, self.btime, 0, self.dver)


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """One snapshot: ``id`` is store-unique and never reused; ``gen`` is the catalog
    generation it sees; ``created_ns`` is wall-clock time of creation."""

    id: int
    dataset: str
    name: str
    gen: int
    created_ns: int


@dataclass(frozen=True, slots=True)
class DiffEntry:
    """One line of a snapshot diff.

    ``kind`` is ``'+'`` (added), ``'-'`` (removed), ``'M'`` (content or metadata
    changed, or the path now names another inode) or ``'R'`` (the inode at
    ``old_path`` is now at ``path``). Paths are bytes, absolute from the
    dataset root (``b'/'`` is the root itself).
    """

    kind: str
    path: bytes
    old_path: bytes | None = None
