"""9P2000.L operations mapped onto cas.Volume, with permission checks.

One :class:`Handlers` instance serves one connection. Each ``T`` message
class maps to a method returning the ``R`` message. Plain methods run inline
on the trio thread (metadata lives in memory, so they take microseconds);
``async`` methods are run as their own task because they wait for a worker
thread (data I/O, fsync) or for a lock.

Errors are raised as ``cas.FsError`` (or any ``OSError``) and turned into
Rlerror by the session.
"""

from __future__ import annotations

import errno
import inspect
import os
import stat
import time
from typing import TYPE_CHECKING, Any, Callable

import structlog

from cas import XATTR_CREATE, XATTR_REPLACE, FsError
from cas.names import NAME_MAX, XATTR_SIZE_MAX

from . import protocol as p
from .access import (
    R,
    W,
    X,
    Credentials,
    check_sticky,
    credentials_for,
    mode_after_write,
    permitted,
    require,
    require_owner,
    uid_for_name,
)
from .fids import LIVE, NODE, SNAPDIR, XATTR_READ, XATTR_WRITE, Fid, FidTable, View
from .locks import lock_range
from .snapdir import SNAPDIR_NAME, snapshot_qid_base

if TYPE_CHECKING:
    from .server import Server

log = structlog.get_logger(__name__)

V9FS_MAGIC = 0x01021997
_XATTR_NAMESPACES = (b"user.", b"trusted.", b"security.", b"system.")
_ACCMODE = p.OpenFlags.ACCMODE
_WRITE_FLAGS = p.OpenFlags.WRONLY | p.OpenFlags.RDWR

_DT = {
    stat.S_IFDIR: p.DT_DIR,
    stat.S_IFREG: p.DT_REG,
    stat.S_IFLNK: p.DT_LNK,
    stat.S_IFIFO: p.DT_FIFO,
    stat.S_IFSOCK: p.DT_SOCK,
    stat.S_IFCHR: p.DT_CHR,
    stat.S_IFBLK: p.DT_BLK,
}


def qid_type(mode: int) -> int:
    if stat.S_ISDIR(mode):
        return p.QidType.DIR
    if stat.S_ISLNK(mode):
        return p.QidType.SYMLINK
    return p.QidType.FILE


def make_qid(view: View, attr) -> p.Qid:
    """qid.path is unique per object and view; qid.version tracks content."""
    version = (attr.data_version & 0xFFFFFFFF) or 1
    return p.Qid(qid_type(attr.mode), version, view.qid_base + attr.ino)


def check_name(name: bytes) -> None:
    """A name to be created: no '/', no NUL, not '.' or '..', at most 255 bytes."""
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise FsError(errno.EINVAL, f"invalid name {name!r}")
    if len(name) > NAME_MAX:
        raise FsError(errno.ENAMETOOLONG, "name longer than 255 bytes")


# The catalog keeps times as signed 64-bit nanoseconds: 1677-09-21 to 2262-04-11.
_NS_MIN, _NS_MAX = -(2**63), 2**63 - 1
# Linux's dev_t inside the kernel: 12-bit major, 20-bit minor (MINORBITS).
MAJOR_MAX = (1 << 12) - 1
MINOR_MAX = (1 << 20) - 1
#: uid/gid 0xFFFFFFFF is (uid_t)-1: "leave unchanged" to chown(2), never an owner.
NO_ID = 0xFFFFFFFF


def setattr_ns(sec: int, nsec: int) -> int:
    """A Tsetattr time as nanoseconds; EINVAL for a bad nsec or a time the catalog cannot hold.

    ``sec`` arrives signed (a time before 1970 is negative, as ext4 and tmpfs
    store it). Times outside 1677-2262 are refused rather than stored wrapped.
    """
    if nsec > 999_999_999:
        raise FsError(errno.EINVAL, f"nanoseconds {nsec} out of range")
    ns = sec * 1_000_000_000 + nsec
    if not _NS_MIN <= ns <= _NS_MAX:
        raise FsError(errno.EINVAL, f"time {sec}.{nsec:09d} s is outside 1677-2262")
    return ns


def split_ns(ns: int) -> tuple[int, int]:
    """Nanoseconds to (seconds, nanoseconds) with 0 <= nanoseconds < 10**9, like timespec."""
    return divmod(ns, 1_000_000_000)


class Handlers:
    """The per-connection 9P2000.L operations."""

    def __init__(self, server: Server, session_id: int, peer_host: str | None):
        self.server = server
        self.session_id = session_id
        self.peer_host = peer_host
        self.fids = FidTable(server.config.max_fids_per_connection)
        self.msize = p.MAX_MSIZE
        self.inline: dict[type, Callable[[Any], p.Message]] = {}
        self.tasks: dict[type, Callable[[Any], Any]] = {}
        # Tried inline first; a None reply means "run the task instead".
        self.fast: dict[type, Callable[[Any], p.Message | None]] = {
            p.Tread: self.read_inline, p.Twrite: self.write_inline,
            p.Tmkdir: self.mkdir_inline, p.Tunlinkat: self.unlinkat_inline}
        for cls in p.ALL_MESSAGES:
            if not cls.__name__.startswith("T") or cls in (p.Tversion, p.Tflush):
                continue
            method = getattr(self, cls.__name__[1:].lower(), None)
            if method is None:
                continue
            if inspect.iscoroutinefunction(method):
                self.tasks[cls] = method
            else:
                self.inline[cls] = method

    # -- helpers ---------------------------------------------------------------

    def _node(self, fid_no: int) -> Fid:
        fid = self.fids.get(fid_no)
        if fid.kind != NODE:
            raise FsError(errno.EBADF, f"fid {fid_no} is an xattr fid")
        return fid

    def _dir(self, fid_no: int) -> tuple[Fid, Any]:
        fid = self._node(fid_no)
        attr = fid.view.volume.getattr(fid.ino)
        if not stat.S_ISDIR(attr.mode):
            raise FsError(errno.ENOTDIR, "not a directory")
        return fid, attr

    @staticmethod
    def _writable(fid: Fid) -> None:
        if fid.view.read_only:
            raise FsError(errno.EROFS, "read-only file system")

    def _dir_for_change(self, fid_no: int) -> tuple[Fid, Any]:
        """A directory fid in which the caller may add or remove entries."""
        fid, attr = self._dir(fid_no)
        self._writable(fid)
        require(attr, fid.cred, W | X)
        return fid, attr

    def _new_gid(self, parent_attr, cred: Credentials, requested: int) -> int:
        if parent_attr.mode & stat.S_ISGID:
            return parent_attr.gid
        if cred.is_root or cred.trust_client_gid or cred.in_group(requested):
            return requested
        return cred.gid

    def _reply_qid(self, fid: Fid, attr) -> p.Qid:
        return make_qid(fid.view, attr)

    # -- session ---------------------------------------------------------------

    def auth(self, msg: p.Tauth) -> p.Message:
        # ENOENT is how 9P servers (diod, and its clients) say "no auth required".
        raise FsError(errno.ENOENT, "authentication not required; attach directly")

    def attach(self, msg: p.Tattach) -> p.Rattach:
        if msg.fid == p.NOFID:
            raise FsError(errno.EBADF, "NOFID cannot name an attached fid")
        if msg.fid in self.fids:
            raise FsError(errno.EBADF, f"fid {msg.fid} is already in use")
        aname = msg.aname.strip(b"/").decode("utf-8", "replace") or "main"
        view = self.server.view_for(aname, self.peer_host)
        uid = msg.n_uname if msg.n_uname != p.NONUNAME else uid_for_name(msg.uname)
        if uid is None:
            raise FsError(errno.EINVAL, f"unknown user {msg.uname!r} and no n_uname")
        cred = credentials_for(uid, view.export, self.server.host_identity)
        attr = view.volume.getattr(view.volume.root)
        self.fids.add(msg.fid, Fid(view, view.volume.root, cred, is_dir=True))
        log.debug("attach", session=self.session_id, export=view.name, uid=cred.uid)
        return p.Rattach(qid=make_qid(view, attr))

    # -- walking ---------------------------------------------------------------

    def walk(self, msg: p.Twalk) -> p.Rwalk:
        fid = self._node(msg.fid)
        if fid.opened and msg.newfid == msg.fid:
            # Walking an open fid in place would change what its I/O refers to.
            # Cloning walks from open fids are allowed, as diod allows them
            # (its diodls -l walks entry names from the open directory fid).
            raise FsError(errno.EBADF, "cannot walk an open fid in place")
        if msg.newfid != msg.fid and msg.newfid in self.fids:
            raise FsError(errno.EBADF, f"newfid {msg.newfid} is already in use")
        view, ino, parent, name = fid.view, fid.ino, fid.parent, fid.name
        qids: list[p.Qid] = []
        attr = view.volume.getattr(ino) if msg.wnames else None
        for i, wname in enumerate(msg.wnames):
            try:
                if not stat.S_ISDIR(attr.mode):
                    raise FsError(errno.ENOTDIR, "not a directory")
                require(attr, fid.cred, X)
                if wname == b"..":
                    view, ino = self._up(view, ino)
                    parent, name = None, b""
                    attr = view.volume.getattr(ino)
                elif wname == b"." or not wname:
                    pass
                else:
                    if b"/" in wname or b"\0" in wname:
                        raise FsError(errno.ENOENT, "no such file or directory")
                    if len(wname) > NAME_MAX:
                        raise FsError(errno.ENAMETOOLONG, "name longer than 255 bytes")
                    crossing = self.server.cross(view, ino, wname)
                    if crossing is not None:
                        view, ino = crossing
                        parent = None
                        attr = view.volume.getattr(ino)
                    else:
                        attr = view.volume.lookup(ino, wname)
                        parent, ino = ino, attr.ino
                    name = wname
            except OSError:
                if i == 0:
                    raise
                return p.Rwalk(qids=qids)
            qids.append(make_qid(view, attr))
        is_dir = fid.is_dir if attr is None else stat.S_ISDIR(attr.mode)
        new = Fid(view, ino, fid.cred, parent=parent, name=name, is_dir=is_dir)
        self.fids.add(msg.newfid, new, replace=msg.newfid == msg.fid)
        return p.Rwalk(qids=qids)

    @staticmethod
    def _up(view: View, ino: int) -> tuple[View, int]:
        """Where ``..`` leads from directory ``ino``: its current parent, clamped at the export root."""
        if ino == view.volume.root:
            if view.outer is None:
                return view, ino
            return view.outer, view.outer.volume.root
        return view, view.volume.lookup(ino, b"..").ino

    # -- opening and creating ----------------------------------------------------

    def lopen(self, msg: p.Tlopen) -> p.Rlopen:
        fid = self._node(msg.fid)
        if fid.opened:
            raise FsError(errno.EBADF, "fid is already open")
        vol = fid.view.volume
        attr = vol.getattr(fid.ino)
        flags = msg.flags
        acc = flags & _ACCMODE
        want = {p.OpenFlags.RDONLY: R, p.OpenFlags.WRONLY: W, p.OpenFlags.RDWR: R | W}.get(acc, R | W)
        writing = bool(want & W) or bool(flags & p.OpenFlags.TRUNC)
        if stat.S_ISDIR(attr.mode) and writing:
            raise FsError(errno.EISDIR, "is a directory")
        if stat.S_ISLNK(attr.mode):
            raise FsError(errno.ELOOP, "cannot open a symbolic link")
        if writing:
            self._writable(fid)
        require(attr, fid.cred, want | (W if flags & p.OpenFlags.TRUNC else 0))
        if flags & p.OpenFlags.TRUNC and stat.S_ISREG(attr.mode) and attr.size:
            attr = vol.setattr(fid.ino, size=0)
        vol.open(fid.ino)
        fid.opened, fid.open_flags, fid.is_dir = True, flags, stat.S_ISDIR(attr.mode)
        return p.Rlopen(qid=make_qid(fid.view, attr), iounit=0)

    def lcreate(self, msg: p.Tlcreate) -> p.Rlcreate:
        fid, dattr = self._dir_for_change(msg.fid)
        if fid.opened:
            raise FsError(errno.EBADF, "fid is already open")
        check_name(msg.name)
        self._no_snapshot_name(fid, msg.name)
        vol = fid.view.volume
        gid = self._new_gid(dattr, fid.cred, msg.gid)
        attr = vol.create(fid.ino, msg.name, stat.S_IFREG | (msg.mode & 0o7777), fid.cred.uid, gid)
        vol.open(attr.ino)
        fid.parent, fid.ino, fid.name = fid.ino, attr.ino, msg.name
        fid.opened, fid.open_flags, fid.is_dir = True, msg.flags, False
        return p.Rlcreate(qid=make_qid(fid.view, attr), iounit=0)

    def _no_snapshot_name(self, fid: Fid, name: bytes) -> None:
        if name == SNAPDIR_NAME and fid.ino == fid.view.volume.root and fid.view.kind == LIVE:
            raise FsError(errno.EEXIST, "/.snapshots is reserved for snapshots")

    def _snapshot_admin(self, fid: Fid) -> None:
        """mkdir/rmdir in /.snapshots: root, or anyone where the export allows it."""
        if fid.view.export.read_only:
            raise FsError(errno.EROFS, "read-only export")
        if not (fid.cred.is_root or fid.view.export.snapshot_admin):
            raise FsError(errno.EPERM, "only root may create or delete snapshots here")

    def mkdir_inline(self, msg: p.Tmkdir) -> p.Rmkdir | None:
        """A plain mkdir, inline; None for mkdir in /.snapshots (a snapshot: :meth:`mkdir`)."""
        if self._node(msg.dfid).view.kind == SNAPDIR:
            return None
        return self._mkdir(msg)

    async def mkdir(self, msg: p.Tmkdir) -> p.Rmkdir:
        fid = self._node(msg.dfid)
        if fid.view.kind != SNAPDIR:
            return self._mkdir(msg)
        self._snapshot_admin(fid)
        info = await self.server.create_snapshot(fid.view.dataset, msg.name.decode("utf-8", "replace"))
        return p.Rmkdir(qid=p.Qid(p.QidType.DIR, 1, snapshot_qid_base(info.id) + fid.view.volume.root))

    def _mkdir(self, msg: p.Tmkdir) -> p.Rmkdir:
        fid, dattr = self._dir_for_change(msg.dfid)
        check_name(msg.name)
        self._no_snapshot_name(fid, msg.name)
        mode = msg.mode & 0o7777
        gid = self._new_gid(dattr, fid.cred, msg.gid)
        if dattr.mode & stat.S_ISGID:
            mode |= stat.S_ISGID
        attr = fid.view.volume.mkdir(fid.ino, msg.name, stat.S_IFDIR | mode, fid.cred.uid, gid)
        return p.Rmkdir(qid=make_qid(fid.view, attr))

    def symlink(self, msg: p.Tsymlink) -> p.Rsymlink:
        fid, dattr = self._dir_for_change(msg.fid)
        check_name(msg.name)
        self._no_snapshot_name(fid, msg.name)
        gid = self._new_gid(dattr, fid.cred, msg.gid)
        attr = fid.view.volume.symlink(fid.ino, msg.name, msg.symtgt, fid.cred.uid, gid)
        return p.Rsymlink(qid=make_qid(fid.view, attr))

    def mknod(self, msg: p.Tmknod) -> p.Rmknod:
        fid, dattr = self._dir_for_change(msg.dfid)
        check_name(msg.name)
        self._no_snapshot_name(fid, msg.name)
        kind = stat.S_IFMT(msg.mode)
        if kind not in (stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFREG):
            raise FsError(errno.EINVAL, "mknod of an unsupported file type")
        if kind in (stat.S_IFCHR, stat.S_IFBLK) and not fid.cred.is_root:
            raise FsError(errno.EPERM, "only root may create device nodes")
        if msg.major > MAJOR_MAX or msg.minor > MINOR_MAX:
            raise FsError(errno.EINVAL, f"device {msg.major}:{msg.minor} out of range")
        gid = self._new_gid(dattr, fid.cred, msg.gid)
        rdev = os.makedev(msg.major, msg.minor)
        attr = fid.view.volume.mknod(fid.ino, msg.name, kind | (msg.mode & 0o7777), rdev, fid.cred.uid, gid)
        return p.Rmknod(qid=make_qid(fid.view, attr))

    def link(self, msg: p.Tlink) -> p.Rlink:
        dfid, _ = self._dir_for_change(msg.dfid)
        target = self._node(msg.fid)
        if target.view is not dfid.view:
            raise FsError(errno.EXDEV, "cross-export link")
        check_name(msg.name)
        self._no_snapshot_name(dfid, msg.name)
        tattr = target.view.volume.getattr(target.ino)
        if stat.S_ISDIR(tattr.mode):
            raise FsError(errno.EPERM, "hard links to directories are not allowed")
        dfid.view.volume.link(target.ino, dfid.ino, msg.name)
        return p.Rlink()

    # -- removing and renaming -------------------------------------------------------

    def unlinkat_inline(self, msg: p.Tunlinkat) -> p.Runlinkat | None:
        """A plain unlinkat, inline; None in /.snapshots (deletes a snapshot: :meth:`unlinkat`)."""
        if self._node(msg.dirfid).view.kind == SNAPDIR:
            return None
        return self._unlinkat(msg)

    async def unlinkat(self, msg: p.Tunlinkat) -> p.Runlinkat:
        fid = self._node(msg.dirfid)
        if fid.view.kind != SNAPDIR:
            return self._unlinkat(msg)
        self._snapshot_admin(fid)
        if not msg.flags & p.AT_REMOVEDIR:
            raise FsError(errno.EISDIR, "snapshots are directories: use rmdir")
        await self.server.delete_snapshot(fid.view.dataset, msg.name.decode("utf-8", "replace"))
        return p.Runlinkat()

    def _unlinkat(self, msg: p.Tunlinkat) -> p.Runlinkat:
        fid, dattr = self._dir_for_change(msg.dirfid)
        if msg.name in (b".", b".."):
            raise FsError(errno.EINVAL if msg.name == b"." else errno.ENOTEMPTY, "cannot remove . or ..")
        vol = fid.view.volume
        victim = vol.lookup(fid.ino, msg.name)
        check_sticky(dattr, victim, fid.cred)
        if msg.flags & p.AT_REMOVEDIR:
            vol.rmdir(fid.ino, msg.name)
        else:
            if stat.S_ISDIR(victim.mode):
                raise FsError(errno.EISDIR, "is a directory")
            vol.unlink(fid.ino, msg.name)
        return p.Runlinkat()

    def remove(self, msg: p.Tremove) -> p.Rremove:
        fid = self.fids.get(msg.fid)
        try:
            if fid.kind != NODE or fid.parent is None:
                raise FsError(errno.EBUSY if fid.kind == NODE else errno.EBADF, "cannot remove this fid")
            self._writable(fid)
            parent = fid.parent
            vol = fid.view.volume
            dattr = vol.getattr(parent)
            require(dattr, fid.cred, W | X)
            victim = vol.lookup(parent, fid.name)
            if victim.ino != fid.ino:
                raise FsError(errno.ENOENT, "the file was renamed or replaced")
            check_sticky(dattr, victim, fid.cred)
            if stat.S_ISDIR(victim.mode):
                vol.rmdir(parent, fid.name)
            else:
                vol.unlink(parent, fid.name)
        finally:
            self._release(self.fids.pop(msg.fid), apply_xattr=False)
        return p.Rremove()

    def renameat(self, msg: p.Trenameat) -> p.Rrenameat:
        old, oldattr = self._dir_for_change(msg.olddirfid)
        new, newattr = self._dir_for_change(msg.newdirfid)
        self._rename(old, oldattr, msg.oldname, new, newattr, msg.newname)
        return p.Rrenameat()

    def rename(self, msg: p.Trename) -> p.Rrename:
        fid = self._node(msg.fid)
        if fid.parent is None:
            raise FsError(errno.EBUSY, "cannot rename the root of a view")
        self._writable(fid)
        vol = fid.view.volume
        oldparent = fid.parent
        oldattr = vol.getattr(oldparent)
        require(oldattr, fid.cred, W | X)
        new, newattr = self._dir_for_change(msg.dfid)
        self._rename(fid, oldattr, fid.name, new, newattr, msg.name, oldparent=oldparent)
        fid.parent, fid.name = new.ino, msg.name
        return p.Rrename()

    def _rename(self, old: Fid, oldattr, oldname: bytes, new: Fid, newattr, newname: bytes, oldparent=None) -> None:
        if old.view is not new.view:
            raise FsError(errno.EXDEV, "cross-export rename")
        if oldname in (b".", b".."):
            raise FsError(errno.EINVAL, "cannot rename . or ..")
        check_name(newname)
        self._no_snapshot_name(new, newname)
        vol = old.view.volume
        oldparent = old.ino if oldparent is None else oldparent
        victim = vol.lookup(oldparent, oldname)
        check_sticky(oldattr, victim, old.cred)
        try:
            existing = vol.lookup(new.ino, newname)
        except FsError as exc:
            if exc.errno != errno.ENOENT:
                raise
            existing = None
        if existing is not None and existing.ino != victim.ino:
            check_sticky(newattr, existing, new.cred)
        if stat.S_ISDIR(victim.mode) and oldparent != new.ino:
            # Moving a directory rewrites its "..": that needs write access to it.
            require(victim, old.cred, W)
        vol.rename(oldparent, oldname, new.ino, newname)

    # -- data ------------------------------------------------------------------

    def _open_for(self, fid_no: int, want: int) -> Fid:
        fid = self.fids.get(fid_no)
        if fid.kind == XATTR_READ and want == R or fid.kind == XATTR_WRITE and want == W:
            return fid
        if fid.kind != NODE or not fid.opened:
            raise FsError(errno.EBADF, "fid is not open")
        acc = fid.open_flags & _ACCMODE
        if want == R and acc == p.OpenFlags.WRONLY or want == W and not acc & _WRITE_FLAGS:
            raise FsError(errno.EBADF, "fid is not open for " + ("reading" if want == R else "writing"))
        return fid

    def read_inline(self, msg: p.Tread) -> p.Rread | None:
        """Answer a Tread on the event loop if no disk access is needed, else None.

        Sequential readers mostly land here: :meth:`read` has the kernel read ahead.
        """
        fid = self._open_for(msg.fid, R)
        count = min(msg.count, self.msize - 11)
        if fid.kind == XATTR_READ:
            return p.Rread(data=bytes(fid.xattr_value[msg.offset : msg.offset + count]))
        if fid.is_dir:
            raise FsError(errno.EISDIR, "is a directory")
        data = fid.view.volume.read_cached(fid.ino, msg.offset, count)
        if data is None:
            return None
        return self._read_done(data)

    async def read(self, msg: p.Tread) -> p.Rread:
        """A Tread that needs the disk (run after :meth:`read_inline` declined)."""
        fid = self._open_for(msg.fid, R)
        count = min(msg.count, self.msize - 11)
        data = await self.server.run_io(fid.view.volume.read, fid.ino, msg.offset, count)
        return self._read_done(data)

    def _read_done(self, data: bytes) -> p.Rread:
        self.server.metrics_read(len(data))
        return p.Rread(data=data)

    def write_inline(self, msg: p.Twrite) -> p.Rwrite | None:
        """Answer a Twrite on the event loop if it only fills memory buffers, else None."""
        fid = self._open_for(msg.fid, W)
        if fid.kind == XATTR_WRITE:
            end = msg.offset + len(msg.data)
            if end > fid.xattr_size:
                raise FsError(errno.ERANGE, "xattr value longer than announced in Txattrcreate")
            buf = fid.xattr_value
            if len(buf) < end:
                buf.extend(bytes(end - len(buf)))
            buf[msg.offset : end] = msg.data
            return p.Rwrite(count=len(msg.data))
        self._writable(fid)
        self._drop_privs(fid)
        vol = fid.view.volume
        n = vol.write_nowait(fid.ino, self._write_offset(fid, msg), msg.data)
        if n is None:
            return None
        self.server.metrics_written(n)
        return p.Rwrite(count=n)

    async def write(self, msg: p.Twrite) -> p.Rwrite:
        """A Twrite that stores chunks or waits (run after :meth:`write_inline` declined)."""
        fid = self._open_for(msg.fid, W)
        self._drop_privs(fid)
        vol = fid.view.volume
        n = await self.server.run_io(vol.write, fid.ino, self._write_offset(fid, msg), msg.data)
        self.server.metrics_written(n)
        return p.Rwrite(count=n)

    @staticmethod
    def _drop_privs(fid: Fid) -> None:
        """Clear set-user-ID / set-group-ID before a write, as Linux does (see mode_after_write)."""
        attr = fid.view.volume.getattr(fid.ino)
        mode = mode_after_write(attr.mode, attr.gid, fid.cred)
        if mode != attr.mode:
            fid.view.volume.setattr(fid.ino, mode=mode)

    @staticmethod
    def _write_offset(fid: Fid, msg: p.Twrite) -> int:
        if fid.open_flags & p.OpenFlags.APPEND:
            return fid.view.volume.getattr(fid.ino).size
        return msg.offset

    async def fsync(self, msg: p.Tfsync) -> p.Rfsync:
        fid = self._node(msg.fid)
        if not fid.view.read_only:
            await self.server.run_io(fid.view.volume.fsync, fid.ino)
        return p.Rfsync()

    def readdir(self, msg: p.Treaddir) -> p.Rreaddir:
        fid = self._node(msg.fid)
        if not fid.opened or not fid.is_dir:
            raise FsError(errno.EBADF if not fid.opened else errno.ENOTDIR, "readdir needs an open directory")
        room = min(msg.count, self.msize - 11)
        out: list[p.Dirent] = []
        used = 0
        for entry in self._dirents_from(fid, msg.offset, max(1, room // 24)):
            size = p.dirent_size(entry.name)
            if used + size > room:
                break
            out.append(entry)
            used += size
        else:
            return p.Rreaddir(data=p.encode_dirents(out))
        if not out:
            raise FsError(errno.EINVAL, "readdir count too small for the next entry")
        return p.Rreaddir(data=p.encode_dirents(out))

    def _dirents_from(self, fid: Fid, offset: int, batch: int):
        """Directory entries after ``offset``, lazily.

        Offsets are stable cookies: 1 follows ".", 2 follows "..", 3 follows
        the synthetic root entries (``.snapshots``), and a real entry's offset
        is the volume's cookie for it plus 3, so concurrent changes never make
        other entries repeat or vanish.
        """
        vol = fid.view.volume
        if offset == 0:
            yield p.Dirent(make_qid(fid.view, vol.getattr(fid.ino)), 1, p.DT_DIR, b".")
        if offset <= 1:
            try:
                pview, parent = self._up(fid.view, fid.ino)
            except FsError:  # a removed directory whose parent is gone too
                pview, parent = fid.view, fid.ino
            yield p.Dirent(make_qid(pview, pview.volume.getattr(parent)), 2, p.DT_DIR, b"..")
        if offset <= 2 and fid.view.kind == LIVE and fid.ino == vol.root:
            yield from self.server.root_extras(fid.view)
        cookie = max(offset - 3, 0)
        while True:
            entries = vol.readdir(fid.ino, cookie, batch)
            if not entries:
                return
            for entry in entries:
                if fid.view.kind == SNAPDIR:  # each entry is the root of a snapshot view
                    qid = p.Qid(p.QidType.DIR, 1, snapshot_qid_base(entry.ino) + vol.root)
                else:
                    qid = p.Qid(qid_type(entry.mode), 0, fid.view.qid_base + entry.ino)
                yield p.Dirent(qid, entry.cookie + 3, _DT.get(stat.S_IFMT(entry.mode), 0), entry.name)
                cookie = entry.cookie

    # -- attributes ------------------------------------------------------------

    def getattr(self, msg: p.Tgetattr) -> p.Rgetattr:
        fid = self._node(msg.fid)
        a = fid.view.volume.getattr(fid.ino)
        atime, atime_nsec = split_ns(a.atime_ns)
        mtime, mtime_nsec = split_ns(a.mtime_ns)
        ctime, ctime_nsec = split_ns(a.ctime_ns)
        btime, btime_nsec = split_ns(a.btime_ns)
        return p.Rgetattr(
            atime_sec=atime, atime_nsec=atime_nsec, mtime_sec=mtime, mtime_nsec=mtime_nsec,
            ctime_sec=ctime, ctime_nsec=ctime_nsec, btime_sec=btime, btime_nsec=btime_nsec,
            valid=p.GetattrMask.ALL,
            qid=make_qid(fid.view, a),
            mode=a.mode,
            uid=a.uid,
            gid=a.gid,
            nlink=a.nlink,
            rdev=a.rdev,
            size=a.size,
            blksize=4096,
            blocks=a.blocks,
            gen=a.gen,
            data_version=a.data_version,
        )

    def setattr(self, msg: p.Tsetattr) -> p.Rsetattr:
        fid = self._node(msg.fid)
        self._writable(fid)
        vol = fid.view.volume
        attr = vol.getattr(fid.ino)
        cred = fid.cred
        v = msg.valid
        kw: dict[str, int] = {}
        # Values first: a refused value changes nothing, whatever else was asked.
        if v & p.SetattrValid.SIZE and msg.size > self.server.store.max_file_size:
            raise FsError(errno.EFBIG, f"size {msg.size} exceeds the maximum file size")
        set_times = {}
        if v & p.SetattrValid.ATIME and v & p.SetattrValid.ATIME_SET:
            set_times["atime_ns"] = setattr_ns(msg.atime_sec, msg.atime_nsec)
        if v & p.SetattrValid.MTIME and v & p.SetattrValid.MTIME_SET:
            set_times["mtime_ns"] = setattr_ns(msg.mtime_sec, msg.mtime_nsec)
        if v & p.SetattrValid.MODE:
            require_owner(attr, cred)
            mode = msg.mode & 0o7777
            if not cred.is_root and not cred.in_group(attr.gid):
                mode &= ~stat.S_ISGID
            kw["mode"] = stat.S_IFMT(attr.mode) | mode
        if msg.uid == NO_ID:
            v &= ~p.SetattrValid.UID
        if msg.gid == NO_ID:
            v &= ~p.SetattrValid.GID
        if v & (p.SetattrValid.UID | p.SetattrValid.GID):
            new_uid = msg.uid if v & p.SetattrValid.UID else attr.uid
            new_gid = msg.gid if v & p.SetattrValid.GID else attr.gid
            if not cred.is_root:
                if new_uid != attr.uid or cred.uid != attr.uid:
                    raise FsError(errno.EPERM, "only root may change the owner")
                if new_gid != attr.gid and not cred.in_group(new_gid):
                    raise FsError(errno.EPERM, "not a member of the target group")
            if v & p.SetattrValid.UID:
                kw["uid"] = new_uid
            if v & p.SetattrValid.GID:
                kw["gid"] = new_gid
            if (new_uid, new_gid) != (attr.uid, attr.gid) and not stat.S_ISDIR(attr.mode):
                # chown clears set-user-ID and set-group-ID (of executables) like Linux.
                base = kw.get("mode", attr.mode)
                cleared = base & ~stat.S_ISUID
                if base & stat.S_IXGRP:
                    cleared &= ~stat.S_ISGID
                if cleared != base or "mode" in kw:
                    kw["mode"] = cleared
        if v & p.SetattrValid.SIZE:
            if stat.S_ISDIR(attr.mode):
                raise FsError(errno.EISDIR, "is a directory")
            if not stat.S_ISREG(attr.mode):
                raise FsError(errno.EINVAL, "not a regular file")
            if not (fid.opened and fid.open_flags & _WRITE_FLAGS):
                require(attr, cred, W)
            kw["size"] = msg.size
        now = None
        for flag, key in ((p.SetattrValid.ATIME, "atime_ns"), (p.SetattrValid.MTIME, "mtime_ns")):
            if not v & flag:
                continue
            if key in set_times:
                require_owner(attr, cred)
                kw[key] = set_times[key]
            else:
                if cred.uid != attr.uid and not cred.is_root and not permitted(attr.mode, attr.uid, attr.gid, cred, W):
                    raise FsError(errno.EACCES, "permission denied")
                now = now or time.time_ns()
                kw[key] = now
        if v & p.SetattrValid.CTIME or kw:
            kw["ctime_ns"] = now or time.time_ns()
        if kw:
            vol.setattr(fid.ino, **kw)
        return p.Rsetattr()

    def statfs(self, msg: p.Tstatfs) -> p.Rstatfs:
        fid = self._node(msg.fid)
        s = fid.view.volume.statfs()
        return p.Rstatfs(
            type=V9FS_MAGIC,
            bsize=s.bsize,
            blocks=s.blocks,
            bfree=s.bfree,
            bavail=s.bavail,
            files=s.files,
            ffree=s.ffree,
            fsid=s.fsid,
            namelen=NAME_MAX,
        )

    def readlink(self, msg: p.Treadlink) -> p.Rreadlink:
        fid = self._node(msg.fid)
        return p.Rreadlink(target=fid.view.volume.readlink(fid.ino))

    # -- xattrs ------------------------------------------------------------------

    def _xattr_readable(self, cred: Credentials, name: bytes) -> bool:
        return not name.startswith(b"trusted.") or cred.is_root

    def xattrwalk(self, msg: p.Txattrwalk) -> p.Rxattrwalk:
        fid = self._node(msg.fid)
        if msg.newfid != msg.fid and msg.newfid in self.fids:
            raise FsError(errno.EBADF, f"newfid {msg.newfid} is already in use")
        vol = fid.view.volume
        if msg.name:
            if not self._xattr_readable(fid.cred, msg.name):
                raise FsError(errno.ENODATA, "no such attribute")
            if msg.name.startswith(b"user."):
                require(vol.getattr(fid.ino), fid.cred, R)
            value = vol.getxattr(fid.ino, msg.name)
        else:
            names = [n for n in vol.listxattr(fid.ino) if self._xattr_readable(fid.cred, n)]
            value = b"".join(n + b"\0" for n in names)
        new = Fid(fid.view, fid.ino, fid.cred, kind=XATTR_READ, xattr_value=value, xattr_name=msg.name)
        self.fids.add(msg.newfid, new, replace=msg.newfid == msg.fid)
        return p.Rxattrwalk(size=len(value))

    def xattrcreate(self, msg: p.Txattrcreate) -> p.Rxattrcreate:
        fid = self._node(msg.fid)
        if fid.opened:
            raise FsError(errno.EBADF, "xattrcreate on an open fid")
        self._writable(fid)
        name = msg.name
        if not name or len(name) > NAME_MAX or b"\0" in name:
            raise FsError(errno.ERANGE if name else errno.EINVAL, "bad attribute name")
        if not name.startswith(_XATTR_NAMESPACES):
            raise FsError(errno.EOPNOTSUPP, "unknown attribute namespace")
        if name.startswith(b"system."):
            raise FsError(errno.EOPNOTSUPP, "POSIX ACLs are not supported")
        if msg.attr_size > XATTR_SIZE_MAX:
            raise FsError(errno.E2BIG, "attribute value larger than 64 KiB")
        attr = fid.view.volume.getattr(fid.ino)
        if name.startswith((b"trusted.", b"security.")):
            if not fid.cred.is_root:
                raise FsError(errno.EPERM, "only root may set trusted. and security. attributes")
        else:
            if not (stat.S_ISREG(attr.mode) or stat.S_ISDIR(attr.mode)):
                raise FsError(errno.EPERM, "user. attributes only on files and directories")
            if stat.S_ISDIR(attr.mode) and attr.mode & stat.S_ISVTX and fid.cred.uid != attr.uid:
                if not fid.cred.is_root:
                    raise FsError(errno.EPERM, "sticky directory")
            require(attr, fid.cred, W)
        if msg.flags & ~(XATTR_CREATE | XATTR_REPLACE):
            raise FsError(errno.EINVAL, "unknown xattr flags")
        fid.kind = XATTR_WRITE
        fid.xattr_name = name
        fid.xattr_size = msg.attr_size
        fid.xattr_flags = msg.flags
        fid.xattr_value = bytearray()
        return p.Rxattrcreate()

    def _apply_xattr(self, fid: Fid) -> None:
        vol = fid.view.volume
        value = bytes(fid.xattr_value)
        if len(value) != fid.xattr_size:
            raise FsError(errno.EINVAL, f"xattr value is {len(value)} bytes, {fid.xattr_size} announced")
        if fid.xattr_size == 0 and fid.xattr_flags & XATTR_REPLACE:
            vol.removexattr(fid.ino, fid.xattr_name)  # how Linux sends removexattr
        else:
            vol.setxattr(fid.ino, fid.xattr_name, value, fid.xattr_flags)

    # -- clunk -----------------------------------------------------------------

    def clunk(self, msg: p.Tclunk) -> p.Rclunk:
        fid = self.fids.pop(msg.fid)
        self._release(fid, apply_xattr=True)
        return p.Rclunk()

    def _release(self, fid: Fid, *, apply_xattr: bool) -> None:
        """Forget a fid: close its file, apply a pending xattr write."""
        if fid.kind == XATTR_WRITE and apply_xattr:
            self._apply_xattr(fid)
        elif fid.kind == NODE and fid.opened:
            fid.opened = False
            fid.view.volume.release(fid.ino)

    def release_all(self) -> None:
        """Session end or Tversion: drop every fid and lock, without applying xattrs."""
        for fid in self.fids.drain():
            try:
                self._release(fid, apply_xattr=False)
            except Exception:  # noqa: BLE001 - one bad fid must not keep others open
                log.exception("release failed", session=self.session_id)
        self.server.locks.release_session(self.session_id)

    # -- locks -----------------------------------------------------------------

    def _lock_fid(self, fid_no: int, lock_type: int) -> Fid:
        """The open fid a Tlock or Tgetlock names, once its lock type is known to be valid."""
        fid = self._node(fid_no)
        if not fid.opened:
            raise FsError(errno.EBADF, "lock on a fid that is not open")
        if lock_type not in (p.LockType.RDLCK, p.LockType.WRLCK, p.LockType.UNLCK):
            raise FsError(errno.EINVAL, "bad lock type")
        return fid

    async def lock(self, msg: p.Tlock) -> p.Rlock:
        fid = self._lock_fid(msg.fid, msg.type)
        # Any open fid may take either lock type, on read-only exports and in
        # snapshots too: flock(LOCK_EX) on a read-only descriptor reaches us as
        # a write lock, and fcntl's open-mode rule is the client kernel's to
        # enforce. Locks are advisory and change no data (DESIGN.md §4, §5).
        key = (fid.view.name, fid.ino)
        owner = (self.session_id, msg.client_id, msg.proc_id)
        start, end = lock_range(msg.start, msg.length)
        table = self.server.locks
        if table.try_lock(key, owner, msg.type, start, end):
            return p.Rlock(status=p.LockStatus.SUCCESS)
        if not msg.flags & p.LockFlags.BLOCK:
            return p.Rlock(status=p.LockStatus.BLOCKED)
        # Hold the request until granted: a BLOCKED reply would make the
        # kernel sleep and poll. Tflush or session end cancels the wait.
        if not await table.lock_wait(key, owner, msg.type, start, end):
            return p.Rlock(status=p.LockStatus.BLOCKED)  # too many waiting: the client polls
        return p.Rlock(status=p.LockStatus.SUCCESS)

    def getlock(self, msg: p.Tgetlock) -> p.Rgetlock:
        fid = self._lock_fid(msg.fid, msg.type)
        key = (fid.view.name, fid.ino)
        owner = (self.session_id, msg.client_id, msg.proc_id)
        start, end = lock_range(msg.start, msg.length)
        held = self.server.locks.conflict(key, owner, msg.type, start, end)
        if held is None:
            return p.Rgetlock(type=p.LockType.UNLCK, start=msg.start, length=msg.length, proc_id=msg.proc_id, client_id=msg.client_id)
        length = 0 if held.end == 2**64 - 1 else held.end - held.start + 1
        return p.Rgetlock(type=held.type, start=held.start, length=length, proc_id=held.owner[2], client_id=held.owner[1])
