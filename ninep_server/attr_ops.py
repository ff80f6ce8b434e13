"""Attribute operations: Tgetattr, Tsetattr, Tstatfs, Treadlink.

Tsetattr checks every value before it changes anything, so a refused value
leaves the inode as it was, whatever else the request asked for.
"""

from __future__ import annotations

import errno
import stat
import time

from cas import FsError
from cas.names import TIME_NS_MAX, TIME_NS_MIN

from . import protocol as p
from .access import W, permitted, require, require_owner
from .connection import Connection, make_qid, writable

_WRITE_FLAGS = p.OpenFlags.WRONLY | p.OpenFlags.RDWR

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
    if not TIME_NS_MIN <= ns <= TIME_NS_MAX:
        raise FsError(errno.EINVAL, f"time {sec}.{nsec:09d} s is outside 1677-2262")
    return ns


def split_ns(ns: int) -> tuple[int, int]:
    """Nanoseconds to (seconds, nanoseconds) with 0 <= nanoseconds < 10**9, like timespec."""
    return divmod(ns, 1_000_000_000)


class AttrOps:
    """Tgetattr, Tsetattr, Tstatfs and Treadlink of one connection."""

    def __init__(self, conn: Connection, max_file_size: int):
        self.conn = conn
        self.max_file_size = max_file_size

    def getattr(self, msg: p.Tgetattr) -> p.Rgetattr:
        fid = self.conn.node(msg.fid)
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
        fid = self.conn.node(msg.fid)
        writable(fid)
        vol = fid.view.volume
        attr = vol.getattr(fid.ino)
        cred = fid.cred
        v = msg.valid
        kw: dict[str, int] = {}
        # Values first: a refused value changes nothing, whatever else was asked.
        if v & p.SetattrValid.SIZE and msg.size > self.max_file_size:
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
                require(attr, cred, W, vol)
            kw["size"] = msg.size
        now = None
        for flag, key in ((p.SetattrValid.ATIME, "atime_ns"), (p.SetattrValid.MTIME, "mtime_ns")):
            if not v & flag:
                continue
            if key in set_times:
                require_owner(attr, cred)
                kw[key] = set_times[key]
            else:
                if cred.uid != attr.uid and not cred.is_root and not permitted(attr.mode, attr.uid, attr.gid, cred, W, vol, fid.ino):
                    raise FsError(errno.EACCES, "permission denied")
                now = now or time.time_ns()
                kw[key] = now
        if v & p.SetattrValid.CTIME or kw:
            kw["ctime_ns"] = now or time.time_ns()
        if kw:
            vol.setattr(fid.ino, **kw)
        return p.Rsetattr()

    def statfs(self, msg: p.Tstatfs) -> p.Rstatfs:
        fid = self.conn.node(msg.fid)
        s = fid.view.volume.statfs()
        return p.Rstatfs(
            type=s.type,
            bsize=s.bsize,
            blocks=s.blocks,
            bfree=s.bfree,
            bavail=s.bavail,
            files=s.files,
            ffree=s.ffree,
            fsid=s.fsid,
            namelen=s.namelen,
        )

    def readlink(self, msg: p.Treadlink) -> p.Rreadlink:
        fid = self.conn.node(msg.fid)
        return p.Rreadlink(target=fid.view.volume.readlink(fid.ino))

