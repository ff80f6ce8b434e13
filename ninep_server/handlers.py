"""9P2000.L operations mapped onto a view's tree, with permission checks.

One :class:`Handlers` instance serves one connection. Each ``T`` message
class maps to a method returning the ``R`` message: a method of this class
for names (attach, walk, open, create, remove, rename, readdir, clunk), or
of one of the operation groups it holds (:mod:`.attr_ops`, :mod:`.data_ops`,
:mod:`.xattr_ops`, :mod:`.lock_ops`). What a name leads to across views
(``/.snapshots``, snapshots) is the :class:`~.namespace.Namespace`'s call. Plain methods run inline
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
from typing import Any, Callable

import structlog

from cas import FsError
from cas.names import NAME_MAX

from . import protocol as p
from .access import R, W, X, check_sticky, credentials_for, require, uid_for_name
from .attr_ops import AttrOps
from .connection import Connection, make_qid, new_gid, qid_type, writable
from .context import HandlerContext
from .data_ops import DataOps
from .fids import NODE, XATTR_WRITE, Fid, FidTable
from .lock_ops import LockOps
from .xattr_ops import XattrOps, apply_xattr

log = structlog.get_logger(__name__)

_ACCMODE = p.OpenFlags.ACCMODE
# Linux's dev_t inside the kernel: 12-bit major, 20-bit minor (MINORBITS).
MAJOR_MAX = (1 << 12) - 1
MINOR_MAX = (1 << 20) - 1

_DT = {
    stat.S_IFDIR: p.DT_DIR,
    stat.S_IFREG: p.DT_REG,
    stat.S_IFLNK: p.DT_LNK,
    stat.S_IFIFO: p.DT_FIFO,
    stat.S_IFSOCK: p.DT_SOCK,
    stat.S_IFCHR: p.DT_CHR,
    stat.S_IFBLK: p.DT_BLK,
}


def _check_unlinkat_flags(flags: int) -> None:
    """unlinkat(2) knows one flag, AT_REMOVEDIR; any other bit is EINVAL, as Linux says."""
    if flags & ~p.AT_REMOVEDIR:
        raise FsError(errno.EINVAL, f"unknown unlinkat flags {flags:#x}")


class Handlers:
    """The per-connection 9P2000.L operations.

    Names, walks, opens, creation, removal, renames, directory listing and
    clunk are methods of this class; attributes, data, xattrs and locks are
    answered by the operation groups it holds, which share its
    :class:`~.connection.Connection`.
    """

    def __init__(self, ctx: HandlerContext, session_id: int, peer_host: str | None):
        self.namespace = ctx.namespace
        self.host_identity = ctx.host_identity
        self.peer_host = peer_host
        self.conn = Connection(FidTable(ctx.max_fids), session_id)
        self.fids = self.conn.fids
        self.data = DataOps(self.conn, ctx)
        self.locks = LockOps(self.conn, ctx.locks)
        groups = (self, AttrOps(self.conn, ctx.max_file_size), self.data, XattrOps(self.conn), self.locks)
        self.inline: dict[type, Callable[[Any], p.Message]] = {}
        self.tasks: dict[type, Callable[[Any], Any]] = {}
        # Tried inline first; a None reply means "run the task instead".
        self.fast: dict[type, Callable[[Any], p.Message | None]] = {
            p.Tread: self.data.read_inline, p.Twrite: self.data.write_inline,
            p.Tmkdir: self.mkdir_inline, p.Tunlinkat: self.unlinkat_inline}
        for cls in p.ALL_MESSAGES:
            if not cls.__name__.startswith("T") or cls in (p.Tversion, p.Tflush):
                continue
            name = cls.__name__[1:].lower()
            method = next((getattr(g, name) for g in groups if hasattr(g, name)), None)
            if method is None:
                continue
            if inspect.iscoroutinefunction(method):
                self.tasks[cls] = method
            else:
                self.inline[cls] = method

    @property
    def session_id(self) -> int:
        return self.conn.session_id

    @property
    def msize(self) -> int:
        return self.conn.msize

    @msize.setter
    def msize(self, value: int) -> None:
        self.conn.msize = value

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
        view = self.namespace.attach(aname, self.peer_host)
        uid = msg.n_uname if msg.n_uname != p.NONUNAME else uid_for_name(msg.uname)
        if uid is None:
            raise FsError(errno.EINVAL, f"unknown user {msg.uname!r} and no n_uname")
        cred = credentials_for(uid, view.export, self.host_identity)
        attr = view.volume.getattr(view.volume.root)
        self.fids.add(msg.fid, Fid(view, view.volume.root, cred, is_dir=True))
        log.debug("attach", session=self.session_id, export=view.name, uid=cred.uid)
        return p.Rattach(qid=make_qid(view, attr))

    # -- walking ---------------------------------------------------------------

    def walk(self, msg: p.Twalk) -> p.Rwalk:
        fid = self.conn.node(msg.fid)
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
                require(attr, fid.cred, X, view.volume)
                if wname == b"..":
                    view, ino = self.namespace.up(view, ino)
                    parent, name = None, b""
                    attr = view.volume.getattr(ino)
                elif wname == b"." or not wname:
                    pass
                else:
                    if b"/" in wname or b"\0" in wname:
                        raise FsError(errno.ENOENT, "no such file or directory")
                    if len(wname) > NAME_MAX:
                        raise FsError(errno.ENAMETOOLONG, "name longer than 255 bytes")
                    crossing = self.namespace.cross(view, ino, wname)
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

    # -- opening and creating ----------------------------------------------------

    def lopen(self, msg: p.Tlopen) -> p.Rlopen:
        fid = self.conn.node(msg.fid)
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
            writable(fid)
        require(attr, fid.cred, want | (W if flags & p.OpenFlags.TRUNC else 0), vol)
        if flags & p.OpenFlags.TRUNC and stat.S_ISREG(attr.mode) and attr.size:
            attr = vol.setattr(fid.ino, size=0)
        vol.open(fid.ino)
        fid.opened, fid.open_flags, fid.is_dir = True, flags, stat.S_ISDIR(attr.mode)
        return p.Rlopen(qid=make_qid(fid.view, attr), iounit=0)

    def lcreate(self, msg: p.Tlcreate) -> p.Rlcreate:
        fid, dattr = self.conn.dir_for_change(msg.fid)
        if fid.opened:
            raise FsError(errno.EBADF, "fid is already open")
        self.namespace.check_new_name(fid.view, fid.ino, msg.name)
        vol = fid.view.volume
        gid = new_gid(dattr, fid.cred, msg.gid)
        attr = vol.create(fid.ino, msg.name, stat.S_IFREG | (msg.mode & 0o7777), fid.cred.uid, gid)
        vol.open(attr.ino)
        fid.parent, fid.ino, fid.name = fid.ino, attr.ino, msg.name
        fid.opened, fid.open_flags, fid.is_dir = True, msg.flags, False
        return p.Rlcreate(qid=make_qid(fid.view, attr), iounit=0)

    def mkdir_inline(self, msg: p.Tmkdir) -> p.Rmkdir | None:
        """A plain mkdir, inline; None for mkdir in /.snapshots (a snapshot: :meth:`mkdir`)."""
        if self.namespace.administers(self.conn.node(msg.dfid).view):
            return None
        return self._mkdir(msg)

    async def mkdir(self, msg: p.Tmkdir) -> p.Rmkdir:
        fid = self.conn.node(msg.dfid)
        if not self.namespace.administers(fid.view):
            return self._mkdir(msg)
        return p.Rmkdir(qid=await self.namespace.mkdir(fid.view, fid.cred, msg.name))

    def _mkdir(self, msg: p.Tmkdir) -> p.Rmkdir:
        fid, dattr = self.conn.dir_for_change(msg.dfid)
        self.namespace.check_new_name(fid.view, fid.ino, msg.name)
        mode = msg.mode & 0o7777
        gid = new_gid(dattr, fid.cred, msg.gid)
        if dattr.mode & stat.S_ISGID:
            mode |= stat.S_ISGID
        attr = fid.view.volume.mkdir(fid.ino, msg.name, stat.S_IFDIR | mode, fid.cred.uid, gid)
        return p.Rmkdir(qid=make_qid(fid.view, attr))

    def symlink(self, msg: p.Tsymlink) -> p.Rsymlink:
        fid, dattr = self.conn.dir_for_change(msg.fid)
        self.namespace.check_new_name(fid.view, fid.ino, msg.name)
        gid = new_gid(dattr, fid.cred, msg.gid)
        attr = fid.view.volume.symlink(fid.ino, msg.name, msg.symtgt, fid.cred.uid, gid)
        return p.Rsymlink(qid=make_qid(fid.view, attr))

    def mknod(self, msg: p.Tmknod) -> p.Rmknod:
        fid, dattr = self.conn.dir_for_change(msg.dfid)
        self.namespace.check_new_name(fid.view, fid.ino, msg.name)
        kind = stat.S_IFMT(msg.mode)
        if kind not in (stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFREG):
            raise FsError(errno.EINVAL, "mknod of an unsupported file type")
        if kind in (stat.S_IFCHR, stat.S_IFBLK) and not fid.cred.is_root:
            raise FsError(errno.EPERM, "only root may create device nodes")
        if msg.major > MAJOR_MAX or msg.minor > MINOR_MAX:
            raise FsError(errno.EINVAL, f"device {msg.major}:{msg.minor} out of range")
        gid = new_gid(dattr, fid.cred, msg.gid)
        rdev = os.makedev(msg.major, msg.minor)
        attr = fid.view.volume.mknod(fid.ino, msg.name, kind | (msg.mode & 0o7777), rdev, fid.cred.uid, gid)
        return p.Rmknod(qid=make_qid(fid.view, attr))

    def link(self, msg: p.Tlink) -> p.Rlink:
        dfid, _ = self.conn.dir_for_change(msg.dfid)
        target = self.conn.node(msg.fid)
        if target.view is not dfid.view:
            raise FsError(errno.EXDEV, "cross-export link")
        self.namespace.check_new_name(dfid.view, dfid.ino, msg.name)
        tattr = target.view.volume.getattr(target.ino)
        if stat.S_ISDIR(tattr.mode):
            raise FsError(errno.EPERM, "hard links to directories are not allowed")
        dfid.view.volume.link(target.ino, dfid.ino, msg.name)
        return p.Rlink()

    # -- removing and renaming -------------------------------------------------------

    def unlinkat_inline(self, msg: p.Tunlinkat) -> p.Runlinkat | None:
        """A plain unlinkat, inline; None in /.snapshots (deletes a snapshot: :meth:`unlinkat`)."""
        _check_unlinkat_flags(msg.flags)
        if self.namespace.administers(self.conn.node(msg.dirfid).view):
            return None
        return self._unlinkat(msg)

    async def unlinkat(self, msg: p.Tunlinkat) -> p.Runlinkat:
        _check_unlinkat_flags(msg.flags)
        fid = self.conn.node(msg.dirfid)
        if not self.namespace.administers(fid.view):
            return self._unlinkat(msg)
        await self.namespace.rmdir(fid.view, fid.cred, msg.name, msg.flags)
        return p.Runlinkat()

    def _unlinkat(self, msg: p.Tunlinkat) -> p.Runlinkat:
        fid, dattr = self.conn.dir_for_change(msg.dirfid)
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
            writable(fid)
            parent = fid.parent
            vol = fid.view.volume
            dattr = vol.getattr(parent)
            require(dattr, fid.cred, W | X, vol)
            victim = vol.lookup(parent, fid.name)
            if victim.ino != fid.ino:
                raise FsError(errno.ENOENT, "the file was renamed or replaced")
            check_sticky(dattr, victim, fid.cred)
            if stat.S_ISDIR(victim.mode):
                vol.rmdir(parent, fid.name)
            else:
                vol.unlink(parent, fid.name)
        finally:
            self._release(self.fids.pop(msg.fid), apply=False)
        return p.Rremove()

    def renameat(self, msg: p.Trenameat) -> p.Rrenameat:
        old, oldattr = self.conn.dir_for_change(msg.olddirfid)
        new, newattr = self.conn.dir_for_change(msg.newdirfid)
        self._rename(old, oldattr, msg.oldname, new, newattr, msg.newname)
        return p.Rrenameat()

    def rename(self, msg: p.Trename) -> p.Rrename:
        fid = self.conn.node(msg.fid)
        if fid.parent is None:
            raise FsError(errno.EBUSY, "cannot rename the root of a view")
        writable(fid)
        vol = fid.view.volume
        oldparent = fid.parent
        oldattr = vol.getattr(oldparent)
        require(oldattr, fid.cred, W | X, vol)
        new, newattr = self.conn.dir_for_change(msg.dfid)
        self._rename(fid, oldattr, fid.name, new, newattr, msg.name, oldparent=oldparent)
        fid.parent, fid.name = new.ino, msg.name
        return p.Rrename()

    def _rename(self, old: Fid, oldattr, oldname: bytes, new: Fid, newattr, newname: bytes, oldparent=None) -> None:
        if old.view is not new.view:
            raise FsError(errno.EXDEV, "cross-export rename")
        if oldname in (b".", b".."):
            raise FsError(errno.EINVAL, "cannot rename . or ..")
        self.namespace.check_new_name(new.view, new.ino, newname)
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
            require(victim, old.cred, W, vol)
        vol.rename(oldparent, oldname, new.ino, newname)


    def readdir(self, msg: p.Treaddir) -> p.Rreaddir:
        fid = self.conn.node(msg.fid)
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
                pview, parent = self.namespace.up(fid.view, fid.ino)
            except FsError:  # a removed directory whose parent is gone too
                pview, parent = fid.view, fid.ino
            yield p.Dirent(make_qid(pview, pview.volume.getattr(parent)), 2, p.DT_DIR, b"..")
        if offset <= 2:
            yield from self.namespace.root_extras(fid.view, fid.ino)
        cookie = max(offset - 3, 0)
        crossing = self.namespace.crossing_qid
        while True:
            entries = vol.readdir(fid.ino, cookie, batch)
            if not entries:
                return
            for entry in entries:
                qid = crossing(fid.view, entry) or p.Qid(qid_type(entry.mode), 0, fid.view.qid_base + entry.ino)
                yield p.Dirent(qid, entry.cookie + 3, _DT.get(stat.S_IFMT(entry.mode), 0), entry.name)
                cookie = entry.cookie

    # -- clunk -----------------------------------------------------------------

    def clunk(self, msg: p.Tclunk) -> p.Rclunk:
        fid = self.fids.pop(msg.fid)
        self._release(fid, apply=True)
        return p.Rclunk()

    def _release(self, fid: Fid, *, apply: bool) -> None:
        """Forget a fid: close its file, apply a pending xattr write."""
        if fid.kind == XATTR_WRITE and apply:
            apply_xattr(fid)
        elif fid.kind == NODE and fid.opened:
            fid.opened = False
            fid.view.volume.release(fid.ino)

    def release_all(self) -> None:
        """Session end or Tversion: drop every fid and lock, without applying xattrs."""
        for fid in self.fids.drain():
            try:
                self._release(fid, apply=False)
            except Exception:  # noqa: BLE001 - one bad fid must not keep others open
                log.exception("release failed", session=self.session_id)
        self.locks.release_all()

