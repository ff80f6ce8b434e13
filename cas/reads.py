"""TreeReads: the queries of a tree that change nothing, over an InodeCache.

Lookups, attributes, directory listings, path walks, symlinks, xattrs,
handles and the read path: planning a read (``filedata.plan_read``), fetching
and verifying its chunks, :meth:`TreeReads.read_cached` for an event loop and
the read-ahead of sequential readers. The live Volume and snapshot views
each hold one over their own cache and lock, so both read the same way.
"""

from __future__ import annotations

import errno
import stat
from bisect import bisect_left
from typing import TYPE_CHECKING

from . import acl, filedata
from .errors import fs_error
from .names import NAME_MAX, SYMLOOP_MAX, V9FS_MAGIC, check_xattr_name
from .records import Attr, DirEntry, Inode, StatFs

if TYPE_CHECKING:
    from .chunkbackend import ChunkBackend
    from .commit import GroupCommit
    from .inodes import InodeCache

# Chunk files read ahead for a sequential reader (4 MiB at 128 KiB chunks): the
# chunk store's read-ahead threads read and verify them into its memory cache.
READAHEAD_CHUNKS = 32
# A sequential reader served inline (from memory) moves the read-ahead window on
# when it enters a chunk whose index is a multiple of this: the window stays at
# least 3/4 full, and the reads in between cost no read-ahead bookkeeping.
READAHEAD_REFRESH = READAHEAD_CHUNKS // 4

_IFMT = stat.S_IFMT(0o177777)
_S_IFLNK = stat.S_IFLNK


class TreeReads:
    """Read-only operations on the tree cached in ``cache``, each under ``lock``."""

    def __init__(self, cache: InodeCache, lock, chunks: ChunkBackend, chunk_size: int):
        self.cache = cache
        self.lock = lock
        self.chunks = chunks
        self.chunk_size = chunk_size

    # ------------------------------------------------------------- metadata
    def lookup(self, parent: int, name: bytes) -> Attr:
        """Attributes of ``name`` in directory ``parent`` (ENOENT, ENOTDIR)."""
        with self.lock:
            if len(name) > NAME_MAX:
                raise fs_error(errno.ENAMETOOLONG)
            cache = self.cache
            pnode = cache.dir(parent)
            if name == b"." or name == b"..":
                if name == b"." or parent == cache.root:
                    return pnode.attr()
                return cache.get(pnode.parent).attr()
            ent = cache.entry(pnode, name)
            if ent is None:
                raise fs_error(errno.ENOENT, repr(name))
            return cache.get(ent[0]).attr()

    def getattr(self, ino: int) -> Attr:
        """Attributes of inode ``ino``."""
        with self.lock:
            node = self.cache.inodes.get(ino)
            if node is None:
                node = self.cache.get(ino)
            return node.attr()

    def readlink(self, ino: int) -> bytes:
        """The target of symlink ``ino`` (EINVAL if not a symlink)."""
        with self.lock:
            node = self.cache.get(ino)
            if (node.mode & _IFMT) != _S_IFLNK:
                raise fs_error(errno.EINVAL, "not a symlink")
            return node.target

    def readdir(self, ino: int, cookie: int = 0, limit: int | None = None) -> list[DirEntry]:
        """Entries (without '.' and '..') from ``cookie`` on; cookies are stable
        under concurrent inserts and deletes. Returns [] at the end."""
        with self.lock:
            node = self.cache.dir(ino)
            ch = self.cache.children(node)
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
        with self.lock:
            root = self.cache.root
            cur = root
            parts = [p for p in bytes(path).split(b"/") if p]
            stack = parts[::-1]
            while stack:
                name = stack.pop()
                attr = self.lookup(cur, name)
                if stat.S_ISLNK(attr.mode) and (stack or follow):
                    hops += 1
                    if hops > SYMLOOP_MAX:
                        raise fs_error(errno.ELOOP, repr(path))
                    target = self.readlink(attr.ino)
                    if target.startswith(b"/"):
                        cur = root
                    stack.extend([p for p in target.split(b"/") if p][::-1])
                    continue
                if stack and not stat.S_ISDIR(attr.mode):
                    raise fs_error(errno.ENOTDIR, repr(path))
                cur = attr.ino
            return self.getattr(cur)

    def getxattr(self, ino: int, name: bytes) -> bytes:
        """Value of xattr ``name`` (ENODATA if absent)."""
        name = check_xattr_name(name)
        with self.lock:
            value = self.cache.xattrs(self.cache.get(ino)).get(name)
            if value is None:
                raise fs_error(errno.ENODATA, repr(name))
            return value

    def listxattr(self, ino: int) -> list[bytes]:
        """Names of all xattrs of ``ino``."""
        with self.lock:
            return list(self.cache.xattrs(self.cache.get(ino)))

    def access_acl(self, ino: int) -> bytes | None:
        """The stored access ACL of ``ino`` (``system.posix_acl_access``), or None;
        None at once, loading nothing, while the store holds no ACL."""
        if not self.cache.commits.catalog.has_acls:
            return None
        with self.lock:
            return self.cache.xattrs(self.cache.get(ino)).get(acl.ACCESS)

    # --------------------------------------------------------------- handles
    def open(self, ino: int) -> Attr:
        """Take a handle reference: the inode stays usable after unlink until release."""
        with self.lock:
            node = self.cache.get(ino)
            node.opens += 1
            return node.attr()

    def release(self, ino: int) -> Inode | None:
        """Drop a handle reference; returns the inode if that was the last one of an
        unlinked inode (its owner frees it, under the lock)."""
        node = self.cache.inodes.get(ino)
        if node is None or node.opens <= 0:
            return None
        node.opens -= 1
        return node if node.opens == 0 and node.nlink <= 0 else None

    # ------------------------------------------------------------------ data
    def read(self, ino: int, offset: int, size: int) -> bytes | bytearray:
        """Up to ``size`` bytes at ``offset``; holes read as zeros; EIO on a corrupt chunk."""
        for attempt in range(3):
            node, plan, length, ahead = self.plan(ino, offset, size, READAHEAD_CHUNKS)
            if not length:
                return b""
            try:
                data = self.fetch(plan, length)
                node.read_end = offset + length
                if ahead:
                    self.chunks.prefetch(ahead)
                return data
            except FileNotFoundError as exc:
                # a concurrent overwrite + commit + gc removed the chunk; re-plan
                if attempt == 2:
                    raise fs_error(errno.EIO, f"missing chunk {exc.filename}") from exc
        raise AssertionError("unreachable")

    def plan(self, ino: int, offset: int, size: int, readahead: int = 0,
             refresh: int = 1) -> tuple[Inode, list, int, list[str]]:
        """The inode, the read plan of ``[offset, offset+size)`` clamped to the file size,
        its length, and for a sequential reader up to ``readahead`` stored chunks after it.

        With ``refresh`` > 1 the chunks after it are listed only when the read
        enters a chunk whose index is a multiple of ``refresh``."""
        if offset < 0 or size < 0:
            raise fs_error(errno.EINVAL, "negative offset or size")
        with self.lock:
            node = self.cache.file(ino)
            end = min(offset + size, node.size)
            if end <= offset:
                return node, [], 0, []
            ahead = []
            cs = self.chunk_size
            if readahead and offset == node.read_end and (
                    refresh <= 1 or _enters_mark(offset, end, cs, refresh)):
                ahead = filedata.following_chunks(node, end, cs, readahead)
            return node, filedata.plan_read(node, offset, end - offset, cs), end - offset, ahead

    def fetch(self, plan: list, length: int) -> bytes | bytearray:
        """Assemble a read plan (see filedata.plan_read), reading chunks from disk."""
        if len(plan) == 1 and type(plan[0]) is bytes:
            return plan[0]
        out = bytearray(length)
        mv = memoryview(out)
        pos = 0
        chunks = self.chunks
        direct = []   # whole chunks not in memory, read straight into the output together
        for p in plan:
            if type(p) is tuple:
                h, lo, hi, whole = p
                n = hi - lo
                if whole:
                    piece = chunks.cached(h, count=True)
                    if piece is None:
                        direct.append((h, mv[pos:pos + n]))
                        pos += n
                        continue
                    piece = memoryview(piece)[:n]
                else:
                    # A part of a chunk is read through the memory cache: the next read wants the rest.
                    piece = memoryview(chunks.get(h))[lo:hi]
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
        return out

    def read_cached(self, ino: int, offset: int, size: int) -> bytes | memoryview | tuple | None:
        """What :meth:`read` returns, if that needs no disk access; else None.

        Served from dirty buffers, holes, verified chunks held in memory and
        chunk files in the kernel's page cache (verified on the way), so it
        is cheap enough to call on an event loop. A read within one chunk
        held in memory is a view of it, not a copy; a read across chunks is
        a tuple of its pieces in order (views, not joined: 64 KiB reads that
        straddle chunks cost a copy each otherwise). A sequential reader
        served here moves the read-ahead window on too (every
        ``READAHEAD_REFRESH`` chunks), so it does not stall at the window's end.
        """
        node, plan, length, ahead = self.plan(ino, offset, size, READAHEAD_CHUNKS, READAHEAD_REFRESH)
        if not length:
            return b""
        cached = self.chunks.get_nowait
        pieces = []
        for p in plan:
            if type(p) is tuple:
                data = cached(p[0])
                if data is None:
                    if ahead:
                        self.chunks.prefetch(ahead)
                    return None
                lo, hi = p[1], p[2]
                p = memoryview(data)[lo:hi] if len(data) >= hi else filedata.zero_fill(data, lo, hi)
            pieces.append(p)
        node.read_end = offset + length
        if ahead:
            self.chunks.prefetch(ahead)
        return pieces[0] if len(pieces) == 1 else tuple(pieces)


def _enters_mark(offset: int, end: int, cs: int, every: int) -> bool:
    """Whether ``[offset, end)`` holds the start of a chunk whose index is a multiple of ``every``."""
    first = -(-offset // cs)               # the first chunk starting at or after offset
    mark = -(-first // every) * every      # the first multiple of ``every`` from there
    return mark * cs < end


def statfs(commits: GroupCommit, quota: int = 0, used: int = 0) -> StatFs:
    """Space of the store's filesystem minus the reserve; file counts from inode numbers.

    With a ``quota`` (bytes, ``used`` of them taken) the quota is the size and
    free space is what it leaves, like ZFS refquota.
    """
    st = commits.statvfs()
    bsize = st.f_frsize or 4096
    reserve = commits.reserve_bytes // bsize
    used_files = commits.next_ino
    blocks, bfree, bavail = st.f_blocks, max(0, st.f_bfree - reserve), max(0, st.f_bavail - reserve)
    if quota:
        left = max(0, quota - used) // bsize
        blocks, bfree, bavail = quota // bsize, min(bfree, left), min(bavail, left)
    return StatFs(V9FS_MAGIC, bsize, blocks, bfree, bavail, used_files + (1 << 32), 1 << 32,
                  commits.fsid, NAME_MAX)
