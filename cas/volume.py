"""Volume: the live tree of one dataset with POSIX semantics, served from memory.

Metadata lives in an :class:`~cas.inodes.InodeCache` loaded from the catalog
on demand; the queries that change nothing are a :class:`~cas.reads.TreeReads`
over it (shared with snapshot views). This module adds what changes the tree:
namespace operations, setattr and truncate, the write path with its striped
data locks, quota accounting, xattrs and fsync. Mutations only touch memory
and mark keys dirty in the volume's :class:`~cas.changes.Changes`; the
store's group commit writes them to chunk files and to DuckDB in one
transaction (see cas/commit.py), reaching the volume through the
``Participant`` calls at the end of the class.

Permissions are not checked here: the caller (the 9P server) enforces them.
cas stores mode, uid and gid as given and does no setuid/setgid clearing.
POSIX ACLs (the ``system.posix_acl_*`` xattrs) are kept consistent with the
mode here, whoever the caller is (see cas/acl.py): setting one checks it and
updates the mode, a chmod updates the stored ACL, and a new inode inherits
its directory's default ACL.
Reads do not update atime (like ``noatime``); callers may set it explicitly.
"""

from __future__ import annotations

import errno
import stat
import time

from . import acl
from .catalog import Batch
from .changes import Changes
from .commit import DirtySet, GroupCommit
from .errors import fs_error
from .inodes import InodeCache
from .names import NAME_MAX, SYMLINK_MAX, XATTR_SIZE_MAX, check_name, check_xattr_name
from .reads import TreeReads, statfs
from .records import EMPTY, Attr, DirEntry, Inode, StatFs
from .writes import FileWrites

XATTR_CREATE = 1
XATTR_REPLACE = 2

_now = time.time_ns
_IFMT = stat.S_IFMT(0o177777)
_S_IFDIR = stat.S_IFDIR
_S_IFREG = stat.S_IFREG
_S_IFLNK = stat.S_IFLNK
_MKNOD_TYPES = (stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFREG)
_err = fs_error


class Volume:
    """The live tree of one dataset. Thread-safe; see docs/volume-api.md."""

    #: True makes every mutator raise EROFS
    read_only = False

    def __init__(self, commits: GroupCommit, ds: int, name: str, root: int):
        """A volume of dataset ``ds`` taking part in ``commits``."""
        self._c = commits
        self._lock = commits.lock
        self._cs = commits.chunk_size
        self.ds = ds
        self.name = name
        self.root = root
        #: the inode records in memory
        self.cache = InodeCache(commits, ds, root, commits.catalog, defer=self._lock.defer)
        self._reads = TreeReads(self.cache, self._lock, commits.chunks, self._cs)
        #: what changed since the last commit
        self.changes = Changes(commits, self.cache, self._lock, commits.chunks)
        self._writes = FileWrites(commits, self.cache, self.changes, self._lock, name)
        #: the striped locks of the write path, and the gate a commit closes to take them all
        self.data_locks = self._writes.data_locks
        self.data_gate = self._writes.data_gate

    @property
    def quota(self) -> int:
        """Quota on the live tree's logical bytes (sum of file sizes), 0 for none;
        like ZFS refquota: snapshots don't count. Exceeding it is EDQUOT."""
        return self._writes.quota

    @quota.setter
    def quota(self, value: int) -> None:
        self._writes.quota = value

    # ------------------------------------------------------------------ cache
    @property
    def cache_hits(self) -> int:
        """Inode lookups served from memory."""
        return self.cache.hits

    @property
    def cache_misses(self) -> int:
        """Inode lookups loaded from the catalog."""
        return self.cache.misses

    @property
    def cached(self) -> tuple[int, int]:
        """(inode records, compact rows) in this volume's metadata cache."""
        return len(self.cache.inodes), len(self.cache.rows)

    def evict_all(self, keep_rows: bool = False) -> int:
        """Drop every clean inode record from the cache (tests use this), and their rows
        unless ``keep_rows`` (cas/inodes.py); returns how many records."""
        with self._lock:
            return self.cache.evict_all(keep_rows)

    def invalidate(self) -> None:
        """Forget every cached inode after the catalog changed under us (rollback).

        The caller holds the store lock and has just committed, so nothing is
        dirty. Nodes still referenced elsewhere (a write in flight) are marked
        dead, so chunks stored for them are released instead of installed.
        """
        self.cache.drop_all()
        self.changes.reset()

    def _rw(self) -> None:
        if self.read_only:
            raise _err(errno.EROFS)

    # -------------------------------------------------------- reads (TreeReads)
    def lookup(self, parent: int, name: bytes) -> Attr:
        """Attributes of ``name`` in directory ``parent`` (ENOENT, ENOTDIR)."""
        return self._reads.lookup(parent, name)

    def getattr(self, ino: int) -> Attr:
        """Attributes of inode ``ino``."""
        return self._reads.getattr(ino)

    def readlink(self, ino: int) -> bytes:
        """The target of symlink ``ino`` (EINVAL if not a symlink)."""
        return self._reads.readlink(ino)

    def readdir(self, ino: int, cookie: int = 0, limit: int | None = None) -> list[DirEntry]:
        """Entries (without '.' and '..') from ``cookie`` on; cookies are stable
        under concurrent inserts and deletes. Returns [] at the end."""
        return self._reads.readdir(ino, cookie, limit)

    def resolve(self, path: bytes, follow: bool = True) -> Attr:
        """Walk a '/'-separated path from the root, following symlinks (ELOOP after 40)."""
        return self._reads.resolve(path, follow)

    def read(self, ino: int, offset: int, size: int) -> bytes | bytearray:
        """Up to ``size`` bytes at ``offset``; holes read as zeros; EIO on a corrupt chunk."""
        return self._reads.read(ino, offset, size)

    def read_cached(self, ino: int, offset: int, size: int) -> bytes | memoryview | tuple | None:
        """What :meth:`read` returns, if that needs no disk access; else None."""
        return self._reads.read_cached(ino, offset, size)

    def getxattr(self, ino: int, name: bytes) -> bytes:
        """Value of xattr ``name`` (ENODATA if absent)."""
        return self._reads.getxattr(ino, name)

    def listxattr(self, ino: int) -> list[bytes]:
        """Names of all xattrs of ``ino``."""
        return self._reads.listxattr(ino)

    def access_acl(self, ino: int) -> bytes | None:
        """The stored access ACL of ``ino``, or None (for permission checks)."""
        return self._reads.access_acl(ino)

    def open(self, ino: int) -> Attr:
        """Take a handle reference: the inode stays usable after unlink until release."""
        return self._reads.open(ino)

    def release(self, ino: int) -> None:
        """Drop a handle reference; frees an unlinked inode at the last one."""
        with self._lock:
            node = self._reads.release(ino)
            if node is not None:
                self._free(node)

    def setattr(self, ino: int, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, size: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None, ctime_ns: int | None = None) -> Attr:
        """Change attributes. ``mode`` keeps the file type bits. ctime becomes now
        unless ``ctime_ns`` is given; a size change also sets mtime."""
        self._rw()
        if size is not None:
            if size < 0:
                raise _err(errno.EINVAL, "negative size")
            dlock = self._writes.data_lock(ino, for_size=True)
            with dlock:
                with self._lock:
                    node = self.cache.get(ino)
                    self._writes.truncate(node, size)
                    return self._setattr_meta(node, mode, uid, gid, atime_ns, mtime_ns, ctime_ns)
        with self._lock:
            return self._setattr_meta(self.cache.get(ino), mode, uid, gid, atime_ns, mtime_ns, ctime_ns)

    def _setattr_meta(self, node, mode, uid, gid, atime_ns, mtime_ns, ctime_ns) -> Attr:
        if mode is not None:
            node.mode = (node.mode & _IFMT) | (mode & 0o7777)
            if (node.mode & _IFMT) != _S_IFLNK:
                self._chmod_acl(node)
        if uid is not None:
            node.uid = uid
        if gid is not None:
            node.gid = gid
        if atime_ns is not None:
            node.atime = atime_ns
        if mtime_ns is not None:
            node.mtime = mtime_ns
        node.ctime = ctime_ns if ctime_ns is not None else _now()
        self.changes.mark(node)
        return node.attr()

    def _make(self, parent: int, name: bytes, mode: int, uid: int, gid: int,
              rdev: int = 0, target: bytes | None = None) -> Attr:
        self._rw()
        name = check_name(name)
        with self._lock:
            pnode = self.cache.dir(parent)
            ch = self.cache.children(pnode)
            if pnode.nlink == 0:
                raise _err(errno.ENOENT, "directory was removed")
            if name in ch:
                raise _err(errno.EEXIST, repr(name))
            now = _now()
            is_dir = (mode & _IFMT) == _S_IFDIR
            xattrs = EMPTY
            if target is None:  # symlinks inherit no ACL, as on Linux
                mode, xattrs = self._inherit_acl(pnode, mode, is_dir)
            node = Inode(self._c.alloc_inos(), self.ds, mode, uid, gid, 2 if is_dir else 1, rdev,
                         len(target) if target is not None else 0, now, now, now, now, 1,
                         parent if is_dir else 0, 1, target)
            if is_dir:
                node.children = {}
                pnode.nlink += 1
            elif (mode & _IFMT) == _S_IFREG:
                node.extents = {}
            node.xattrs = xattrs
            self._link_entry(pnode, name, node, now)
            self.cache.add(node)
            self.changes.mark(node)
            for xname in xattrs:
                self.changes.dirty.xattrs.add((node.ino, xname))
            attr = node.attr()
        if len(self.changes.dirty.inodes) > self._c.dirty_inodes_max:
            self._c.throttle(self.changes)
        return attr

    def _inherit_acl(self, pnode: Inode, mode: int, is_dir: bool) -> tuple[int, dict]:
        """The mode and xattrs of a new inode under ``pnode``: with a default ACL
        there, the inherited access ACL masked by ``mode`` (and, for a
        directory, the default ACL itself); else ``mode`` unchanged."""
        if not self._c.catalog.has_acls:
            return mode, EMPTY
        value = self.cache.xattrs(pnode).get(acl.DEFAULT)
        default = acl.decode_stored(value)
        if default is None:
            return mode, EMPTY
        mode, access = acl.inherit(default, mode)
        xattrs = {}
        if access is not None:
            xattrs[acl.ACCESS] = acl.encode(access)
        if is_dir:
            xattrs[acl.DEFAULT] = value
        return mode, xattrs

    def _chmod_acl(self, node: Inode) -> None:
        """Rewrite the owner, mask (or group) and other entries of ``node``'s access ACL
        after its mode changed."""
        if not self._c.catalog.has_acls:
            return
        xs = self.cache.xattrs(node)
        current = acl.decode_stored(xs.get(acl.ACCESS))
        if current is None:
            return
        value = acl.encode(acl.chmod(current, node.mode))
        if value != xs[acl.ACCESS]:
            xs[acl.ACCESS] = value
            self.changes.dirty.xattrs.add((node.ino, acl.ACCESS))

    def _link_entry(self, pnode: Inode, name: bytes, node: Inode, now: int) -> None:
        seq = pnode.next_seq
        pnode.next_seq = seq + 1
        pnode.children[name] = (node.ino, seq, node.mode & _IFMT)
        pnode.listing = None
        pnode.mtime = pnode.ctime = now
        self.changes.mark(pnode)
        self.changes.dirty.entries.add((pnode.ino, name))

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

    def link(self, ino: int, newparent: int, newname: bytes) -> Attr:
        """Add a hard link (EPERM for directories)."""
        self._rw()
        newname = check_name(newname)
        with self._lock:
            node = self.cache.get(ino)
            if node.is_dir():
                raise _err(errno.EPERM, "hard link to directory")
            pnode = self.cache.dir(newparent)
            ch = self.cache.children(pnode)
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
            self.changes.mark(node)
            return node.attr()

    def _drop_link(self, node: Inode, now: int) -> None:
        node.nlink -= 1
        node.ctime = now
        self.changes.mark(node)
        if node.nlink <= 0 and node.opens == 0:
            self._free(node)

    def _free(self, node: Inode) -> None:
        """Forget an inode with no links and no open handles."""
        if (node.mode & _IFMT) == _S_IFREG and node.size:
            self._writes.grow(node, 0)
        node.nlink = 0
        node.ds = -1
        self.changes.forget(node)

    def _unlink_entry(self, pnode: Inode, name: bytes, now: int) -> None:
        del pnode.children[name]
        pnode.listing = None
        pnode.mtime = pnode.ctime = now
        self.changes.mark(pnode)
        self.changes.dirty.entries.add((pnode.ino, name))

    def unlink(self, parent: int, name: bytes) -> None:
        """Remove a non-directory entry (EISDIR for directories)."""
        self._rw()
        with self._lock:
            if len(name) > NAME_MAX:
                raise _err(errno.ENAMETOOLONG)
            pnode = self.cache.dir(parent)
            ent = self.cache.children(pnode).get(name)
            if ent is None:
                raise _err(errno.ENOENT, repr(name))
            node = self.cache.get(ent[0])
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
            pnode = self.cache.dir(parent)
            ent = self.cache.children(pnode).get(name)
            if ent is None:
                raise _err(errno.ENOENT, repr(name))
            node = self.cache.get(ent[0])
            if not node.is_dir():
                raise _err(errno.ENOTDIR, repr(name))
            if self.cache.children(node):
                raise _err(errno.ENOTEMPTY, repr(name))
            now = _now()
            self._unlink_entry(pnode, name, now)
            pnode.nlink -= 1
            node.nlink = 0
            node.ctime = now
            self.changes.mark(node)
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
            op = self.cache.dir(oldparent)
            np = self.cache.dir(newparent)
            och = self.cache.children(op)
            nch = self.cache.children(np)
            ent = och.get(oldname)
            if ent is None:
                raise _err(errno.ENOENT, repr(oldname))
            node = self.cache.get(ent[0])
            if np.nlink == 0:
                raise _err(errno.ENOENT, "target directory was removed")
            target_ent = nch.get(newname)
            target = self.cache.get(target_ent[0]) if target_ent is not None else None
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
                    cur = self.cache.get(cur.parent)
            if target is not None:
                if target.is_dir():
                    if not moving_dir:
                        raise _err(errno.EISDIR, repr(newname))
                    if self.cache.children(target):
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
                    self.changes.mark(target)
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
            self.changes.mark(node)

    @property
    def dirty_bytes(self) -> int:
        """File data buffered in memory and not yet stored as chunks."""
        return self.changes.buf_bytes

    @property
    def dirty_count(self) -> int:
        """Inodes changed since the last commit captured this volume."""
        return len(self.changes.dirty.inodes)

    def write(self, ino: int, offset: int, data) -> int:
        """Write ``data`` at ``offset`` (extending with a hole as needed); returns its length."""
        self._rw()
        return self._writes.write(ino, offset, data)

    def write_nowait(self, ino: int, offset: int, data) -> int | None:
        """:meth:`write` if it only has to copy into memory, else None (nothing written).

        Cheap enough for an event loop; when it declines, call :meth:`write`
        in a worker thread.
        """
        self._rw()
        return self._writes.write_nowait(ino, offset, data)

    def logical_bytes(self) -> int:
        """Sum of the sizes of the live tree's regular files (each inode once)."""
        return self._writes.logical_bytes()

    def repair_nlink(self, ino: int, nlink: int) -> bool:
        """Set ``ino``'s link count (fsck --repair), committed like any other change.

        Returns False if the inode has no live row and is not cached.
        """
        with self._lock:
            node = self.cache.inodes.get(ino)
            if node is None:
                row = self.cache.loads.load_inode(ino)
                if row is None:
                    return False
                node = self.cache.from_row(row)
                self.cache.add(node)
            node.nlink = nlink
            self.changes.mark(node)
        return True

    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int = 0) -> None:
        """Set an xattr; XATTR_CREATE fails with EEXIST, XATTR_REPLACE with ENODATA."""
        self._rw()
        name = check_xattr_name(name)
        value = bytes(value)
        if len(value) > XATTR_SIZE_MAX:
            raise _err(errno.E2BIG, "xattr value too large")
        if flags & ~(XATTR_CREATE | XATTR_REPLACE):
            raise _err(errno.EINVAL, f"xattr flags {flags}")
        if name in acl.NAMES:
            self._set_acl(ino, name, acl.decode(value))
            return
        with self._lock:
            node = self.cache.get(ino)
            xs = self.cache.xattrs(node)
            if flags & XATTR_CREATE and name in xs:
                raise _err(errno.EEXIST, repr(name))
            if flags & XATTR_REPLACE and name not in xs:
                raise _err(errno.ENODATA, repr(name))
            if xs is EMPTY:
                xs = node.xattrs = {}
            xs[name] = value
            node.ctime = _now()
            self.changes.mark(node)
            self.changes.dirty.xattrs.add((ino, name))

    def _set_acl(self, ino: int, name: bytes, value: acl.Acl | None) -> None:
        """Set (``value`` None: remove) a checked POSIX ACL, as Linux's ``set_posix_acl``.

        Flags play no part. An access ACL sets the mode's rwx bits, and one
        the mode can express is stored as the mode alone; a default ACL
        exists only on directories (EACCES elsewhere, though removing one
        succeeds); symlinks carry no ACL (EOPNOTSUPP). Removing an absent
        ACL succeeds.
        """
        with self._lock:
            node = self.cache.get(ino)
            fmt = node.mode & _IFMT
            if fmt == _S_IFLNK:
                raise _err(errno.EOPNOTSUPP, "symlinks carry no POSIX ACL")
            if name == acl.DEFAULT and fmt != _S_IFDIR:
                if value is None:
                    return
                raise _err(errno.EACCES, "a default ACL needs a directory")
            xs = self.cache.xattrs(node)
            mode = node.mode
            if name == acl.ACCESS and value is not None:
                mode, value = acl.update_mode(value, mode)
            if value is not None:
                self._c.catalog.has_acls = True
            if value is None and name not in xs and mode == node.mode:
                return
            node.mode = mode
            if value is None:
                xs.pop(name, None)
            else:
                if xs is EMPTY:
                    xs = node.xattrs = {}
                xs[name] = acl.encode(value)
            node.ctime = _now()
            self.changes.mark(node)
            self.changes.dirty.xattrs.add((ino, name))

    def removexattr(self, ino: int, name: bytes) -> None:
        """Remove an xattr (ENODATA if absent; removing an absent POSIX ACL succeeds)."""
        self._rw()
        name = check_xattr_name(name)
        if name in acl.NAMES:
            self._set_acl(ino, name, None)
            return
        with self._lock:
            node = self.cache.get(ino)
            xs = self.cache.xattrs(node)
            if name not in xs:
                raise _err(errno.ENODATA, repr(name))
            del xs[name]
            node.ctime = _now()
            self.changes.mark(node)
            self.changes.dirty.xattrs.add((ino, name))

    def fsync(self, ino: int) -> None:
        """Return once ``ino``'s data and metadata are durable (group commit).

        A commit failure (for example ENOSPC) is raised here; the commit is
        retried by the next fsync or commit.
        """
        with self._lock:
            node = self.cache.inodes.get(ino)
            if node is None:
                if ino in self.changes.lost:
                    raise _err(errno.EIO, f"inode {ino}: its changes could not be committed")
                self.cache.get(ino)  # ENOENT check; an uncached inode is clean
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
        """Space of the store's filesystem minus the reserve (or what the quota leaves);
        file counts from inode numbers."""
        return statfs(self._c, self.quota, self.logical_bytes() if self.quota else 0)

    def flush_buffers(self) -> None:
        """Store all dirty chunk buffers as chunk files now (memory pressure)."""
        self.changes.flush_buffers()

    # ---------------------------------------- commit (cas/commit.py Participant)
    def seal_buffers(self) -> list:
        """Seal every dirty buffer for storing (under the lock): [(node, [(idx, data, ver)])]."""
        return self.changes.seal_buffers()

    def store_jobs(self, jobs: list) -> list:
        """Hash and store sealed buffers as chunks, outside the lock."""
        return self.changes.store_jobs(jobs)

    def install(self, node: Inode, stored: list) -> None:
        """Record stored chunks in ``node`` (under the lock)."""
        self.changes.install(node, stored)

    def capture(self, batch: Batch) -> DirtySet:
        """Serialize dirty state into ``batch`` and start a new dirty set (under the lock)."""
        return self.changes.capture(batch)

    def revert(self, inos: set[int], cap: DirtySet, epoch: int) -> None:
        """Return inodes a commit set aside to their committed state, in memory (under the lock)."""
        self.changes.revert(inos, cap, epoch)
        self._writes.logical = None

    def committed(self, cap: DirtySet) -> None:
        """A commit of ``cap`` succeeded (under the lock)."""
        self.changes.committed(cap)

    def restore(self, cap: DirtySet) -> None:
        """Put a failed commit's dirty keys back (under the lock)."""
        self.changes.restore(cap)
