"""Volume: POSIX semantics over one dataset, served from memory.

All metadata lives in an in-memory cache of Inode records (a bounded LRU;
dirty inodes are pinned until committed). Cache misses load one inode, or a
whole directory, from the catalog in one query. Mutations only touch memory
and mark keys dirty; the store's group commit writes them to chunk files and
to DuckDB in one transaction (see cas/commit.py).

Permissions are not checked here: the caller (the 9P server) enforces them.
cas stores mode, uid and gid as given and does no setuid/setgid clearing.
Reads do not update atime (like ``noatime``); callers may set it explicitly.
"""

from __future__ import annotations

import errno
import stat
from bisect import bisect_left
from itertools import islice
import threading
import time

from . import filedata
from .catalog import Batch
from .commit import DirtySet, GroupCommit
from .errors import FsError
from .names import (NAME_MAX, SYMLINK_MAX, SYMLOOP_MAX, XATTR_NAME_MAX, XATTR_PREFIXES,
                    XATTR_SIZE_MAX, check_name)
from .records import EMPTY, Attr, DirEntry, Inode, StatFs

XATTR_CREATE = 1
XATTR_REPLACE = 2

# Chunk files read ahead for a sequential reader (4 MiB at 128 KiB chunks): the
# chunk store's read-ahead threads open them and ask the kernel for them.
READAHEAD_CHUNKS = 32
V9FS_MAGIC = 0x01021997

_now = time.time_ns
_IFMT = stat.S_IFMT(0o177777)
_S_IFDIR = stat.S_IFDIR
_S_IFREG = stat.S_IFREG
_S_IFLNK = stat.S_IFLNK
_MKNOD_TYPES = (stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFREG)


def _err(code: int, what: str = "") -> FsError:
    return FsError(code, f"{errno.errorcode.get(code, code)}: {what}" if what else None)


_LOST_KEEP = 4096  # set-aside, never-committed inodes remembered for fsync's EIO


class Volume:
    """A view of one dataset with POSIX semantics. Thread-safe; see docs/volume-api.md."""

    def __init__(self, commits: GroupCommit, ds: int, name: str, root: int,
                 read_only: bool = False, *, lock=None, loads=None):
        """A volume of dataset ``ds`` taking part in ``commits``; ``lock`` and ``loads``
        (the cache-miss queries, default the live catalog) serve snapshot views."""
        self._c = commits
        self._lock = lock if lock is not None else commits.lock
        self._cat = loads if loads is not None else commits.catalog
        self._chunks = commits.chunks
        self._cs = commits.chunk_size
        self.ds = ds
        self.name = name
        self.root = root
        self.read_only = read_only
        self._inodes: dict[int, Inode] = {}
        self._d = DirtySet()                # changed since the last commit captured us
        self._bufbytes = 0
        self._bufinodes: set[int] = set()   # inodes with dirty chunk buffers
        self._flushing = False
        self.data_locks = [threading.Lock() for _ in range(64)]
        self.data_gate = threading.Event()  # cleared while a commit takes every data lock
        self.data_gate.set()
        self._gone: set[int] = set()        # freed inodes whose rows may still be in the catalog
        #: Never-committed inodes a commit set aside (so they are gone): their
        #: fsyncs fail with EIO rather than ENOENT. Inode numbers are never reused;
        #: only the newest _LOST_KEEP are remembered.
        self._lost: dict[int, None] = {}
        #: Quota on the live tree's logical bytes (sum of file sizes), 0 for none;
        #: like ZFS refquota: snapshots don't count. Exceeding it is EDQUOT.
        self.quota = 0
        self._logical: int | None = None    # live logical bytes, loaded on first use
        self.cache_hits = 0                 # inode lookups served from memory
        self.cache_misses = 0               # ... and loaded from the catalog

    # ------------------------------------------------------------------ cache
    def _node_from_row(self, row: tuple) -> Inode:
        n = Inode(*row)
        n.persisted = True
        return n

    def _get(self, ino: int) -> Inode:
        node = self._inodes.get(ino)
        if node is not None:
            self.cache_hits += 1
            return node
        self.cache_misses += 1
        if ino in self._gone:
            raise _err(errno.ENOENT, f"inode {ino}")
        row = self._cat.load_inode(ino)
        if row is None or row[1] != self.ds or row[5] <= 0:
            raise _err(errno.ENOENT, f"inode {ino}")
        node = self._node_from_row(row)
        self._add(node)
        return node

    def _add(self, node: Inode) -> None:
        self._inodes[node.ino] = node
        if len(self._inodes) > self._c.max_inodes:
            self._evict()

    def _evict(self) -> None:
        """Drop clean, unopened inodes in LRU order until under the bound."""
        inodes = self._inodes
        durable = self._c.durable
        limit = self._c.max_inodes
        excess = len(inodes) - limit + limit // 32  # evict in batches
        budget = max(64, excess * 2)
        root = self.root
        for ino in list(islice(inodes, budget)):
            if excess <= 0:
                break
            node = inodes[ino]
            if node.epoch > durable or node.opens or node.bufs or ino == root or node.writers:
                inodes[ino] = inodes.pop(ino)  # pinned: move to the MRU end
                continue
            del inodes[ino]
            excess -= 1

    def evict_all(self) -> int:
        """Drop every clean inode from the cache (tests use this); returns how many."""
        with self._lock:
            before = len(self._inodes)
            durable = self._c.durable
            for ino in list(self._inodes):
                node = self._inodes[ino]
                if not (node.epoch > durable or node.opens or node.bufs or ino == self.root):
                    del self._inodes[ino]
            return before - len(self._inodes)

    def invalidate(self) -> None:
        """Forget every cached inode after the catalog changed under us (rollback).

        The caller holds the store lock and has just committed, so nothing is
        dirty. Nodes still referenced elsewhere (a write in flight) are marked
        dead, so chunks stored for them are released instead of installed.
        """
        for node in self._inodes.values():
            node.ds = -1
        self._inodes = {}
        self._gone = set()
        self._bufinodes = set()
        self._bufbytes = 0
        pins = self._d.pins
        self._d = DirtySet()
        for h in pins:
            self._chunks.unpin(h)

    def _children(self, node: Inode) -> dict:
        ch = node.children
        if ch is None:
            if not node.is_dir():
                raise _err(errno.ENOTDIR, f"inode {node.ino}")
            ents, rows = self._cat.load_dir(node.ino)
            inodes = self._inodes
            for row in rows:
                if row[0] not in inodes:
                    inodes[row[0]] = self._node_from_row(row)
            ch = node.children = {name: (child, seq, typ) for name, child, seq, typ in ents}
            node.listing = None
            if len(inodes) > self._c.max_inodes:
                self._evict()
        return ch

    def _dir(self, ino: int) -> Inode:
        node = self._get(ino)
        if (node.mode & _IFMT) != _S_IFDIR:
            raise _err(errno.ENOTDIR, f"inode {ino}")
        return node

    def _file(self, ino: int) -> Inode:
        node = self._get(ino)
        fmt = node.mode & _IFMT
        if fmt != _S_IFREG:
            raise _err(errno.EISDIR if fmt == _S_IFDIR else errno.EINVAL, f"inode {ino}")
        if node.extents is None:
            node.extents = {idx: (h, ln, 0) for idx, h, ln in self._cat.load_extents(ino)}
        return node

    def _xattrs(self, node: Inode) -> dict:
        if node.xattrs is None:
            node.xattrs = dict(self._cat.load_xattrs(node.ino)) if node.persisted else {}
        return node.xattrs

    def _dirty(self, node: Inode) -> None:
        node.epoch = self._c.epoch
        self._d.inodes.add(node.ino)

    def _rw(self) -> None:
        if self.read_only:
            raise _err(errno.EROFS)

    def _new_ino(self) -> int:
        return self._c.alloc_inos()

    # ------------------------------------------------------------- metadata
    def lookup(self, parent: int, name: bytes) -> Attr:
        """Attributes of ``name`` in directory ``parent`` (ENOENT, ENOTDIR)."""
        with self._lock:
            if len(name) > NAME_MAX:
                raise _err(errno.ENAMETOOLONG)
            pnode = self._dir(parent)
            if name == b"." or name == b"..":
                if name == b"." or parent == self.root:
                    return pnode.attr()
                return self._get(pnode.parent).attr()
            ent = self._children(pnode).get(name)
            if ent is None:
                raise _err(errno.ENOENT, repr(name))
            return self._get(ent[0]).attr()

    def getattr(self, ino: int) -> Attr:
        """Attributes of inode ``ino``."""
        with self._lock:
            node = self._inodes.get(ino)
            if node is None:
                node = self._get(ino)
            return node.attr()

    def setattr(self, ino: int, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, size: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None, ctime_ns: int | None = None) -> Attr:
        """Change attributes. ``mode`` keeps the file type bits. ctime becomes now
        unless ``ctime_ns`` is given; a size change also sets mtime."""
        self._rw()
        if size is not None:
            if size < 0:
                raise _err(errno.EINVAL, "negative size")
            dlock = self._data_lock(ino, for_size=True)
            with dlock:
                with self._lock:
                    node = self._get(ino)
                    self._truncate(node, size)
                    return self._setattr_meta(node, mode, uid, gid, atime_ns, mtime_ns, ctime_ns)
        with self._lock:
            return self._setattr_meta(self._get(ino), mode, uid, gid, atime_ns, mtime_ns, ctime_ns)

    def _setattr_meta(self, node, mode, uid, gid, atime_ns, mtime_ns, ctime_ns) -> Attr:
        if mode is not None:
            node.mode = (node.mode & _IFMT) | (mode & 0o7777)
        if uid is not None:
            node.uid = uid
        if gid is not None:
            node.gid = gid
        if atime_ns is not None:
            node.atime = atime_ns
        if mtime_ns is not None:
            node.mtime = mtime_ns
        node.ctime = ctime_ns if ctime_ns is not None else _now()
        self._dirty(node)
        return node.attr()

    def _data_lock(self, ino: int, for_size: bool = False, wait: bool = True) -> threading.Lock | None:
        """The striped lock that serializes writes and truncates of ``ino``.

        While a commit is taking the data locks (GroupCommit.quiesce) this waits,
        or with ``wait=False`` returns None.
        """
        if not self.data_gate.is_set():
            if not wait:
                return None
            self.data_gate.wait()
        with self._lock:
            node = self._get(ino)
            fmt = node.mode & _IFMT
            if fmt != _S_IFREG:
                raise _err(errno.EISDIR if fmt == _S_IFDIR else errno.EINVAL, f"inode {ino}")
        return self.data_locks[ino % len(self.data_locks)]

    def _truncate(self, node: Inode, size: int) -> None:
        fmt = node.mode & _IFMT
        if fmt != _S_IFREG:
            raise _err(errno.EISDIR if fmt == _S_IFDIR else errno.EINVAL)
        if size > node.size:
            self._c.check_space(0)
        self._grow(node, size)
        if node.extents is None:
            node.extents = {idx: (h, ln, 0) for idx, h, ln in self._cat.load_extents(node.ino)}
        changed, dropped, delta = filedata.truncate(node, size, self._cs, self._chunks.get)
        ino = node.ino
        for idx in changed:
            self._d.extents.add((ino, idx))
        self._d.dropped.extend(dropped)
        self._bufbytes += delta
        if node.bufs:
            self._bufinodes.add(ino)
        node.size = size
        node.mtime = node.ctime = _now()
        node.dver += 1
        self._dirty(node)

    def _make(self, parent: int, name: bytes, mode: int, uid: int, gid: int,
              rdev: int = 0, target: bytes | None = None) -> Attr:
        self._rw()
        name = check_name(name)
        with self._lock:
            pnode = self._dir(parent)
            ch = self._children(pnode)
            if pnode.nlink == 0:
                raise _err(errno.ENOENT, "directory was removed")
            if name in ch:
                raise _err(errno.EEXIST, repr(name))
            now = _now()
            is_dir = (mode & _IFMT) == _S_IFDIR
            node = Inode(self._new_ino(), self.ds, mode, uid, gid, 2 if is_dir else 1, rdev,
                         len(target) if target is not None else 0, now, now, now, now, 1,
                         parent if is_dir else 0, 1, target)
            if is_dir:
                node.children = {}
                pnode.nlink += 1
            elif (mode & _IFMT) == _S_IFREG:
                node.extents = {}
            node.xattrs = EMPTY
            self._link_entry(pnode, name, node, now)
            self._add(node)
            self._dirty(node)
            attr = node.attr()
        if len(self._d.inodes) > self._c.dirty_inodes_max:
            self._c.throttle(self)
        return attr

    def _link_entry(self, pnode: Inode, name: bytes, node: Inode, now: int) -> None:
        seq = pnode.next_seq
        pnode.next_seq = seq + 1
        pnode.children[name] = (node.ino, seq, node.mode & _IFMT)
        pnode.listing = None
        pnode.mtime = pnode.ctime = now
        self._dirty(pnode)
        self._d.entries.add((pnode.ino, name))

    def create(self, parent: int, name: bytes, mode: int, uid: int, gid: int) -> Attr:
        """Create a regular file (EEXIST if ``name`` exists)."""
        return self._make(parent, name, _S_IFREG | (mode & 0o7777), uid, gid)

    def mkdir(self, parent: int, name: bytes, mode: int, uid: int, gid: int) -> Attr:
        """Create a directory."""
        return self._make(parent, name, _S_IFDIR | (mode & 0o7777), uid, gid)

    def mknod(self, parent: int, name: bytes, mode: int, rdev: int, uid: int, gid: int) -> Attr:
        """Create a fifo, socket, character or block device (or regular file)."""
        fmt = mode & _IFMT
        if fmt == 0:
            fmt = _S_IFREG
        if fmt not in _MKNOD_TYPES:
            raise _err(errno.EINVAL, f"mknod type {fmt:o}")
        if fmt not in (stat.S_IFCHR, stat.S_IFBLK):
            rdev = 0
        return self._make(parent, name, fmt | (mode & 0o7777), uid, gid, rdev=rdev)

    def symlink(self, parent: int, name: bytes, target: bytes, uid: int, gid: int) -> Attr:
        """Create a symlink to ``target`` (ENAMETOOLONG past 4095 bytes, ENOENT if empty)."""
        target = bytes(target)
        if len(target) > SYMLINK_MAX:
            raise _err(errno.ENAMETOOLONG, "symlink target")
        if not target:
            raise _err(errno.ENOENT, "empty symlink target")
        return self._make(parent, name, _S_IFLNK | 0o777, uid, gid, target=target)

    def readlink(self, ino: int) -> bytes:
        """The target of symlink ``ino`` (EINVAL if not a symlink)."""
        with self._lock:
            node = self._get(ino)
            if (node.mode & _IFMT) != _S_IFLNK:
                raise _err(errno.EINVAL, "not a symlink")
            return node.target

    def link(self, ino: int, newparent: int, newname: bytes) -> Attr:
        """Add a hard link (EPERM for directories)."""
        self._rw()
        newname = check_name(newname)
        with self._lock:
            node = self._get(ino)
            if node.is_dir():
                raise _err(errno.EPERM, "hard link to directory")
            pnode = self._dir(newparent)
            ch = self._children(pnode)
            if pnode.nlink == 0:
                raise _err(errno.ENOENT, "directory was removed")
            if node.nlink == 0:
                raise _err(errno.ENOENT, "file was removed")
            if newname in ch:
                raise _err(errno.EEXIST, repr(newname))
            now = _now()
            node.nlink += 1
            node.ctime = now
            self._link_entry(pnode, newname, node, now)
            self._dirty(node)
            return node.attr()

    def _drop_link(self, node: Inode, now: int) -> None:
        node.nlink -= 1
        node.ctime = now
        self._dirty(node)
        if node.nlink <= 0 and node.opens == 0:
            self._free(node)

    def _free(self, node: Inode) -> None:
        """Forget an inode with no links and no open handles."""
        ino = node.ino
        if (node.mode & _IFMT) == _S_IFREG and node.size:
            self._grow(node, 0)
        node.nlink = 0
        node.ds = -1
        if node.extents:
            self._d.dropped.extend(e[0] for e in node.extents.values())
        if node.bufs:
            self._bufbytes -= sum(len(b.data) for b in node.bufs.values())
            node.bufs = EMPTY
        self._bufinodes.discard(ino)
        self._d.freed[ino] = node.persisted or self._d.freed.get(ino, False)
        if self._d.freed[ino]:
            self._gone.add(ino)
        self._d.inodes.add(ino)
        node.epoch = self._c.epoch
        self._inodes.pop(ino, None)

    def _unlink_entry(self, pnode: Inode, name: bytes, now: int) -> None:
        del pnode.children[name]
        pnode.listing = None
        pnode.mtime = pnode.ctime = now
        self._dirty(pnode)
        self._d.entries.add((pnode.ino, name))

    def unlink(self, parent: int, name: bytes) -> None:
        """Remove a non-directory entry (EISDIR for directories)."""
        self._rw()
        with self._lock:
            if len(name) > NAME_MAX:
                raise _err(errno.ENAMETOOLONG)
            pnode = self._dir(parent)
            ent = self._children(pnode).get(name)
            if ent is None:
                raise _err(errno.ENOENT, repr(name))
            node = self._get(ent[0])
            if node.is_dir():
                raise _err(errno.EISDIR, repr(name))
            now = _now()
            self._unlink_entry(pnode, name, now)
            self._drop_link(node, now)

    def rmdir(self, parent: int, name: bytes) -> None:
        """Remove an empty directory (ENOTEMPTY, ENOTDIR)."""
        self._rw()
        with self._lock:
            if len(name) > NAME_MAX:
                raise _err(errno.ENAMETOOLONG)
            if name == b".":
                raise _err(errno.EINVAL, "rmdir .")
            if name == b"..":
                raise _err(errno.ENOTEMPTY, "rmdir ..")
            pnode = self._dir(parent)
            ent = self._children(pnode).get(name)
            if ent is None:
                raise _err(errno.ENOENT, repr(name))
            node = self._get(ent[0])
            if not node.is_dir():
                raise _err(errno.ENOTDIR, repr(name))
            if self._children(node):
                raise _err(errno.ENOTEMPTY, repr(name))
            now = _now()
            self._unlink_entry(pnode, name, now)
            pnode.nlink -= 1
            node.nlink = 0
            node.ctime = now
            self._dirty(node)
            if node.opens == 0:
                self._free(node)

    def rename(self, oldparent: int, oldname: bytes, newparent: int, newname: bytes) -> None:
        """POSIX rename(2)/renameat(2), replacing a file or an empty directory."""
        self._rw()
        if len(oldname) > NAME_MAX:
            raise _err(errno.ENAMETOOLONG)
        if oldname in (b".", b"..") or not oldname:
            raise _err(errno.EINVAL, "rename of . or ..")
        newname = check_name(newname)
        with self._lock:
            op = self._dir(oldparent)
            np = self._dir(newparent)
            och = self._children(op)
            nch = self._children(np)
            ent = och.get(oldname)
            if ent is None:
                raise _err(errno.ENOENT, repr(oldname))
            node = self._get(ent[0])
            if np.nlink == 0:
                raise _err(errno.ENOENT, "target directory was removed")
            target_ent = nch.get(newname)
            target = self._get(target_ent[0]) if target_ent is not None else None
            if target is node:
                return  # both names link the same inode: nothing to do
            moving_dir = node.is_dir()
            if moving_dir and op is not np:
                # newparent must not be the moved directory or inside it
                cur = np
                while True:
                    if cur is node:
                        raise _err(errno.EINVAL, "directory moved into its own subtree")
                    if cur.ino == self.root or not cur.parent:
                        break
                    cur = self._get(cur.parent)
            if target is not None:
                if target.is_dir():
                    if not moving_dir:
                        raise _err(errno.EISDIR, repr(newname))
                    if self._children(target):
                        raise _err(errno.ENOTEMPTY, repr(newname))
                elif moving_dir:
                    raise _err(errno.ENOTDIR, repr(newname))
            now = _now()
            if target is not None:
                self._unlink_entry(np, newname, now)
                if target.is_dir():
                    np.nlink -= 1
                    target.nlink = 0
                    target.ctime = now
                    self._dirty(target)
                    if target.opens == 0:
                        self._free(target)
                else:
                    self._drop_link(target, now)
            self._unlink_entry(op, oldname, now)
            self._link_entry(np, newname, node, now)
            if moving_dir and op is not np:
                op.nlink -= 1
                np.nlink += 1
                node.parent = np.ino
            node.ctime = now
            self._dirty(node)

    def readdir(self, ino: int, cookie: int = 0, limit: int | None = None) -> list[DirEntry]:
        """Entries (without '.' and '..') from ``cookie`` on; cookies are stable
        under concurrent inserts and deletes. Returns [] at the end."""
        with self._lock:
            node = self._dir(ino)
            ch = self._children(node)
            listing = node.listing
            if listing is None:
                listing = node.listing = ([e[1] for e in ch.values()], list(ch.items()))
            seqs, items = listing
            i = bisect_left(seqs, cookie)
            end = len(items) if limit is None else min(len(items), i + limit)
            return [DirEntry(name, e[0], e[2], e[1] + 1) for name, e in items[i:end]]

    def resolve(self, path: bytes, follow: bool = True) -> Attr:
        """Walk a '/'-separated path from the root, following symlinks (ELOOP after 40)."""
        hops = 0
        with self._lock:
            cur = self.root
            parts = [p for p in bytes(path).split(b"/") if p]
            stack = parts[::-1]
            while stack:
                name = stack.pop()
                attr = self.lookup(cur, name)
                if stat.S_ISLNK(attr.mode) and (stack or follow):
                    hops += 1
                    if hops > SYMLOOP_MAX:
                        raise _err(errno.ELOOP, repr(path))
                    target = self.readlink(attr.ino)
                    if target.startswith(b"/"):
                        cur = self.root
                    stack.extend([p for p in target.split(b"/") if p][::-1])
                    continue
                if stack and not stat.S_ISDIR(attr.mode):
                    raise _err(errno.ENOTDIR, repr(path))
                cur = attr.ino
            return self.getattr(cur)

    # ------------------------------------------------------------------ data
    def read(self, ino: int, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset``; holes read as zeros; EIO on a corrupt chunk."""
        for attempt in range(3):
            node, plan, length, ahead = self._plan_read(ino, offset, size, READAHEAD_CHUNKS)
            if not length:
                return b""
            try:
                data = self._fetch(plan, length)
                node.read_end = offset + length
                if ahead:
                    self._chunks.prefetch(ahead)
                return data
            except FileNotFoundError as exc:
                # a concurrent overwrite + commit + gc removed the chunk; re-plan
                if attempt == 2:
                    raise _err(errno.EIO, f"missing chunk {exc.filename}") from exc
        raise AssertionError("unreachable")

    def _plan_read(self, ino: int, offset: int, size: int,
                   readahead: int = 0) -> tuple[Inode, list, int, list[str]]:
        """The inode, the read plan of ``[offset, offset+size)`` clamped to the file size,
        its length, and for a sequential reader up to ``readahead`` stored chunks after it."""
        if offset < 0 or size < 0:
            raise _err(errno.EINVAL, "negative offset or size")
        with self._lock:
            node = self._file(ino)
            end = min(offset + size, node.size)
            if end <= offset:
                return node, [], 0, []
            ahead = []
            if readahead and offset == node.read_end:
                ahead = filedata.following_chunks(node, end, self._cs, readahead)
            return node, filedata.plan_read(node, offset, end - offset, self._cs), end - offset, ahead

    def _fetch(self, plan: list, length: int) -> bytes:
        """Assemble a read plan (see filedata.plan_read), reading chunks from disk."""
        if len(plan) == 1 and type(plan[0]) is bytes:
            return plan[0]
        out = bytearray(length)
        mv = memoryview(out)
        pos = 0
        chunks = self._chunks
        direct = []   # whole chunks, read straight into the output together
        for p in plan:
            if type(p) is tuple:
                h, lo, hi, whole = p
                n = hi - lo
                data = chunks.cached(h)
                if data is None and whole:
                    direct.append((h, mv[pos:pos + n]))
                else:
                    # A part of a chunk is read through the cache: the next read wants the rest.
                    piece = (data if data is not None else chunks.get(h))[lo:hi]
                    mv[pos:pos + len(piece)] = piece
            else:
                n = len(p)
                mv[pos:pos + n] = p
            pos += n
        if direct:
            for (h, dest), got in zip(direct, chunks.get_many_into(direct)):
                if got is None:  # longer than its extent says: read it whole, keep the start
                    piece = chunks.get(h)[:len(dest)]
                    dest[:len(piece)] = piece
        return bytes(out)

    def read_cached(self, ino: int, offset: int, size: int) -> bytes | None:
        """What :meth:`read` returns, if that needs no disk access; else None.

        Served from dirty buffers, holes, verified chunks held in memory and
        chunk files in the kernel's page cache (verified on the way), so it
        is cheap enough to call on an event loop.
        """
        node, plan, length, _ = self._plan_read(ino, offset, size)
        if not length:
            return b""
        cached = self._chunks.get_nowait
        pieces = []
        for p in plan:
            if type(p) is tuple:
                data = cached(p[0])
                if data is None:
                    return None
                p = filedata.zero_fill(data, p[1], p[2])
            pieces.append(p)
        node.read_end = offset + length
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    @property
    def dirty_bytes(self) -> int:
        """File data buffered in memory and not yet stored as chunks."""
        return self._bufbytes

    @property
    def dirty_count(self) -> int:
        """Inodes changed since the last commit captured this volume."""
        return len(self._d.inodes)

    def logical_bytes(self) -> int:
        """Sum of the sizes of the live tree's regular files (each inode once)."""
        with self._lock:
            return self._logical_locked()

    def _logical_locked(self) -> int:
        if self._logical is None:
            # Committed sizes, corrected by the in-memory inodes whose size may differ.
            rows = self._cat.read(
                "SELECT ino, size FROM inodes WHERE dataset = ? AND died IS NULL AND (mode & 61440) = 32768",
                [self.ds])
            sizes = dict(rows)
            for ino, node in self._inodes.items():
                if node.ds == self.ds and (node.mode & _IFMT) == _S_IFREG:
                    sizes[ino] = node.size
            for ino in self._gone:
                sizes.pop(ino, None)
            self._logical = sum(sizes.values())
        return self._logical

    def _grow(self, node: Inode, new_size: int) -> None:
        """Account a size change of a regular file; EDQUOT past the quota (lock held)."""
        delta = new_size - node.size
        if self._logical is None and not self.quota:
            return
        logical = self._logical_locked()
        if delta > 0 and self.quota and logical + delta > self.quota:
            raise _err(errno.EDQUOT, f"dataset {self.name} quota of {self.quota} bytes exceeded")
        self._logical = logical + delta

    def write(self, ino: int, offset: int, data) -> int:
        """Write ``data`` at ``offset`` (extending with a hole as needed); returns its length."""
        n = self._write(ino, offset, data, wait=True)
        c = self._c
        if self._bufbytes > c.dirty_limit:
            self.flush_buffers()
        if len(self._d.inodes) > c.dirty_inodes_max:
            c.throttle(self)
        return n

    def write_nowait(self, ino: int, offset: int, data) -> int | None:
        """:meth:`write` if it only has to copy into memory, else None (nothing written).

        Declines when the write would store or load a chunk, wait for a lock
        or a commit, or when too much is buffered: then call :meth:`write`
        in a worker thread. Cheap enough for an event loop.
        """
        return self._write(ino, offset, data, wait=False)

    def _write(self, ino: int, offset: int, data, wait: bool) -> int | None:
        self._rw()
        if offset < 0:
            raise _err(errno.EINVAL, "negative offset")
        n = len(data)
        c = self._c
        dlock = self._data_lock(ino, wait=wait)
        if dlock is None:
            return None
        if n == 0:
            return 0
        if offset + n > c.max_file_size:
            raise _err(errno.EFBIG)
        if not dlock.acquire(blocking=wait):
            return None
        try:
            with self._lock:
                node = self._file(ino)
                if not wait and (self._bufbytes + n > c.dirty_limit
                                 or len(self._d.inodes) >= c.dirty_inodes_max
                                 or not filedata.fits_in_buffers(node, offset, n, self._cs)):
                    return None
                c.check_space(n)
                if offset + n > node.size:
                    self._grow(node, offset + n)
                delta, whole = filedata.write_buffers(node, offset, data, self._cs,
                                                      self._chunks.get)
                self._bufbytes += delta
                if node.bufs:
                    self._bufinodes.add(ino)
                if offset + n > node.size:
                    node.size = offset + n
                node.mtime = node.ctime = _now()
                node.dver += 1
                self._dirty(node)
                if whole:
                    node.writers += 1
            if whole:
                try:
                    stored = self.store_jobs([(node, whole)])[0][1]
                except BaseException:
                    with self._lock:
                        node.writers -= 1
                    raise
                with self._lock:
                    node.writers -= 1
                    self.install(node, stored)
        finally:
            dlock.release()
        return n

    def store_jobs(self, jobs: list) -> list:
        """Hash and store chunk contents outside the lock, all of them as one batch.

        ``jobs`` is [(node, [(idx, content, ver)])]; returns
        [(node, [(idx, hash|None, len, ver)])], where an all-zero chunk is a
        hole (None) and stores nothing.
        """
        holes = {id(c) for _, items in jobs for _, c, _ in items if filedata.is_zero(c)}
        hashes = iter(self._chunks.put_many(
            [c for _, items in jobs for _, c, _ in items if id(c) not in holes], pin=True))
        return [(node, [(idx, None, 0, ver) if id(c) in holes else (idx, next(hashes), len(c), ver)
                        for idx, c, ver in items])
                for node, items in jobs]

    def install(self, node: Inode, stored: list) -> None:
        """Record stored chunks in ``node`` (under the lock)."""
        ino = node.ino
        alive = node.ds == self.ds
        for idx, h, length, ver in stored:
            if alive:
                ok, old, delta = filedata.install(node, idx, h, length, ver)
            else:
                ok, old, delta = False, None, 0
            if ok:
                self._bufbytes += delta
                self._d.extents.add((ino, idx))
                if old is not None and old != h:
                    self._d.dropped.append(old)
                if h is not None:
                    self._d.pins.append(h)
            elif h is not None:
                self._chunks.unpin(h)
                self._d.dropped.append(h)
        if alive:
            if not node.bufs:
                self._bufinodes.discard(ino)
            self._dirty(node)

    def seal_buffers(self) -> list:
        """Seal every dirty buffer for storing (under the lock): [(node, [(idx, data, ver)])]."""
        jobs = []
        inodes = self._inodes
        for ino in list(self._bufinodes):
            node = inodes.get(ino)
            if node is None or not node.bufs:
                self._bufinodes.discard(ino)
                continue
            jobs.append((node, [(idx, b.seal(), b.ver) for idx, b in node.bufs.items()]))
        return jobs

    def flush_buffers(self) -> None:
        """Store all dirty chunk buffers as chunk files now (memory pressure)."""
        with self._lock:
            if self._flushing:
                return
            self._flushing = True
            jobs = self.seal_buffers()
        try:
            done = self.store_jobs(jobs)
            with self._lock:
                for node, stored in done:
                    self.install(node, stored)
        finally:
            self._flushing = False

    def repair_nlink(self, ino: int, nlink: int) -> bool:
        """Set ``ino``'s link count (fsck --repair), committed like any other change.

        Returns False if the inode has no live row and is not cached.
        """
        with self._lock:
            node = self._inodes.get(ino)
            if node is None:
                row = self._cat.load_inode(ino)
                if row is None:
                    return False
                node = self._node_from_row(row)
                self._add(node)
            node.nlink = nlink
            self._dirty(node)
        return True

    # ----------------------------------------------------------------- xattrs
    @staticmethod
    def _check_xname(name: bytes) -> bytes:
        name = bytes(name)
        if not name:
            raise _err(errno.EINVAL, "empty xattr name")
        if len(name) > XATTR_NAME_MAX:
            raise _err(errno.ERANGE, "xattr name too long")
        if not name.startswith(XATTR_PREFIXES):
            raise _err(errno.EOPNOTSUPP, f"xattr namespace of {name!r}")
        return name

    def getxattr(self, ino: int, name: bytes) -> bytes:
        """Value of xattr ``name`` (ENODATA if absent)."""
        name = self._check_xname(name)
        with self._lock:
            value = self._xattrs(self._get(ino)).get(name)
            if value is None:
                raise _err(errno.ENODATA, repr(name))
            return value

    def listxattr(self, ino: int) -> list[bytes]:
        """Names of all xattrs of ``ino``."""
        with self._lock:
            return list(self._xattrs(self._get(ino)))

    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        """Set an xattr; XATTR_CREATE fails with EEXIST, XATTR_REPLACE with ENODATA."""
        self._rw()
        name = self._check_xname(name)
        value = bytes(value)
        if len(value) > XATTR_SIZE_MAX:
            raise _err(errno.E2BIG, "xattr value too large")
        if flags & ~(XATTR_CREATE | XATTR_REPLACE):
            raise _err(errno.EINVAL, f"xattr flags {flags}")
        with self._lock:
            node = self._get(ino)
            xs = self._xattrs(node)
            if flags & XATTR_CREATE and name in xs:
                raise _err(errno.EEXIST, repr(name))
            if flags & XATTR_REPLACE and name not in xs:
                raise _err(errno.ENODATA, repr(name))
            if xs is EMPTY:
                xs = node.xattrs = {}
            xs[name] = value
            node.ctime = _now()
            self._dirty(node)
            self._d.xattrs.add((ino, name))

    def removexattr(self, ino: int, name: bytes) -> None:
        """Remove an xattr (ENODATA if absent)."""
        self._rw()
        name = self._check_xname(name)
        with self._lock:
            node = self._get(ino)
            xs = self._xattrs(node)
            if name not in xs:
                raise _err(errno.ENODATA, repr(name))
            del xs[name]
            node.ctime = _now()
            self._dirty(node)
            self._d.xattrs.add((ino, name))

    # ------------------------------------------------------ handles and sync
    def open(self, ino: int) -> Attr:
        """Take a handle reference: the inode stays usable after unlink until release."""
        with self._lock:
            node = self._get(ino)
            node.opens += 1
            return node.attr()

    def release(self, ino: int) -> None:
        """Drop a handle reference; frees an unlinked inode at the last one."""
        with self._lock:
            node = self._inodes.get(ino)
            if node is None or node.opens <= 0:
                return
            node.opens -= 1
            if node.opens == 0 and node.nlink <= 0:
                self._free(node)

    def fsync(self, ino: int) -> None:
        """Return once ``ino``'s data and metadata are durable (group commit).

        A commit failure (for example ENOSPC) is raised here; the commit is
        retried by the next fsync or commit.
        """
        with self._lock:
            node = self._inodes.get(ino)
            if node is None:
                if ino in self._lost:
                    raise _err(errno.EIO, f"inode {ino}: its changes could not be committed")
                self._get(ino)  # ENOENT check; an uncached inode is clean
                return
            target = node.epoch
        self._c.commit_until(target)
        # A commit that set this inode aside (see cas/isolate.py) did not store
        # what the caller wrote: the record we waited on was discarded, or the
        # reverted record has not changed since.
        failed = node.failed
        if failed < 0 or failed >= target > 0:
            raise _err(errno.EIO, f"inode {ino}: its changes could not be committed")

    def statfs(self) -> StatFs:
        """Space of the store's filesystem minus the reserve; file counts from inode numbers."""
        c = self._c
        st = c.statvfs()
        bsize = st.f_frsize or 4096
        reserve = c.reserve_bytes // bsize
        used_files = c.next_ino
        blocks, bfree, bavail = st.f_blocks, max(0, st.f_bfree - reserve), max(0, st.f_bavail - reserve)
        if self.quota:
            # Like ZFS refquota: the quota is the size; free is what it leaves.
            left = max(0, self.quota - self.logical_bytes()) // bsize
            blocks, bfree, bavail = self.quota // bsize, min(bfree, left), min(bavail, left)
        return StatFs(V9FS_MAGIC, bsize, blocks, bfree, bavail, used_files + (1 << 32), 1 << 32,
                      c.fsid, NAME_MAX)

    # ---------------------------------------- commit (cas/commit.py Participant)
    def capture(self, batch: Batch) -> DirtySet:
        """Serialize dirty state into ``batch`` and start a new dirty set (under the lock)."""
        cap = self._d
        self._d = DirtySet()
        inodes = self._inodes
        ins = batch.inode_rows
        for ino in cap.inodes:
            node = inodes.get(ino)
            if node is None or node.ds != self.ds:
                if cap.freed.get(ino) or (node is not None and node.persisted):
                    batch.freed.append(ino)
                continue
            if node.persisted:
                batch.inode_retire.append(ino)
            ins.append((node.ino, node.ds, node.mode, node.uid, node.gid, node.nlink, node.rdev,
                        node.size, node.atime, node.mtime, node.ctime, node.btime, node.dver,
                        node.parent, node.next_seq, node.target))
        for key in cap.entries:
            parent, name = key
            batch.entry_retire.append(key)
            pnode = inodes.get(parent)
            if pnode is None or pnode.children is None:
                continue
            e = pnode.children.get(name)
            if e is not None:
                batch.entry_rows.append((parent, name, e[0], e[1], e[2]))
        for key in cap.extents:
            ino, idx = key
            node = inodes.get(ino)
            if node is None or node.ds != self.ds or node.extents is None:
                continue  # None: reloaded since (a commit set it aside), nothing to write
            if node.persisted:
                batch.extent_retire.append(key)
            e = node.extents.get(idx)
            if e is not None:
                batch.extent_rows.append((ino, idx, e[0], e[1]))
        for key in cap.xattrs:
            ino, name = key
            node = inodes.get(ino)
            if node is None or node.ds != self.ds or node.xattrs is None:
                continue  # None: reloaded since (a commit set it aside), nothing to write
            if node.persisted:
                batch.xattr_retire.append(key)
            v = node.xattrs.get(name)
            if v is not None:
                batch.xattr_rows.append((ino, name, v))
        for ino in cap.inodes:
            node = inodes.get(ino)
            if node is not None and node.ds == self.ds:
                node.persisted = True
        return cap

    def revert(self, inos: set[int], cap: DirtySet, epoch: int) -> None:
        """Return inodes a commit set aside to their committed state, in memory (under the lock).

        The in-memory records are discarded (marked dead, so a write still
        holding one installs nothing) and reloaded from the catalog; an inode
        never committed is gone. Open handles carry over. Pending fsyncs fail.
        """
        for ino in inos:
            old = self._inodes.pop(ino, None)
            if old is None and ino not in cap.inodes:
                continue  # another volume's inode
            self._gone.discard(ino)
            opens = 0
            if old is not None:
                opens = old.opens
                if old.bufs:
                    self._bufbytes -= sum(len(b.data) for b in old.bufs.values())
                    old.bufs = EMPTY
                self._bufinodes.discard(ino)
                old.ds = -1
                old.failed = -1
            row = self._cat.load_inode(ino)
            if row is not None and row[1] == self.ds:
                node = self._node_from_row(row)
                node.opens = opens
                node.epoch = node.failed = epoch
                self._inodes[ino] = node
            elif row is None:
                self._lost[ino] = None
                if len(self._lost) > _LOST_KEEP:
                    del self._lost[next(iter(self._lost))]
        self._logical = None

    def committed(self, cap: DirtySet) -> None:
        """A commit of ``cap`` succeeded (under the lock)."""
        self._gone.difference_update(cap.freed)

    def restore(self, cap: DirtySet) -> None:
        """Put a failed commit's dirty keys back (under the lock)."""
        self._d.restore(cap)
