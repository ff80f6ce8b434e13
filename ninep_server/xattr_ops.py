"""Extended attributes: Txattrwalk, Txattrcreate, and applying a value at Tclunk.

A Txattrwalk fid holds a value (or the name list) that Tread returns; a
Txattrcreate fid collects a value through Twrite, set when it is clunked.
``trusted.`` attributes are root's alone. In ``system.`` only the two POSIX
ACLs exist (``system.posix_acl_access`` and ``_default``): their owner (or
root) may set them, anyone may read them, and the volume checks the value
and keeps the mode in step (cas/acl.py).
"""

from __future__ import annotations

import errno
import stat

from cas import XATTR_CREATE, XATTR_REPLACE, FsError, acl
from cas.names import XATTR_NAME_MAX, XATTR_PREFIXES, XATTR_SIZE_MAX

from . import protocol as p
from .access import R, W, Credentials, require, require_owner
from .connection import Connection, writable
from .fids import XATTR_READ, XATTR_WRITE, Fid


def _readable(cred: Credentials, name: bytes) -> bool:
    return not name.startswith(b"trusted.") or cred.is_root


def apply_xattr(fid: Fid) -> None:
    """Set (or remove) the attribute a clunked Txattrcreate fid collected."""
    vol = fid.view.volume
    value = bytes(fid.xattr_value)
    if len(value) != fid.xattr_size:
        raise FsError(errno.EINVAL, f"xattr value is {len(value)} bytes, {fid.xattr_size} announced")
    if fid.xattr_size == 0 and fid.xattr_flags & XATTR_REPLACE:
        vol.removexattr(fid.ino, fid.xattr_name)  # how Linux sends removexattr
    else:
        vol.setxattr(fid.ino, fid.xattr_name, value, fid.xattr_flags)
        if fid.xattr_name == acl.ACCESS and not fid.cred.is_root:
            # Like posix_acl_update_mode: a caller outside the file's group
            # loses set-group-ID when the ACL rewrites the mode.
            attr = vol.getattr(fid.ino)
            if attr.mode & stat.S_ISGID and not fid.cred.in_group(attr.gid):
                vol.setattr(fid.ino, mode=attr.mode & ~stat.S_ISGID)


class XattrOps:
    """Txattrwalk and Txattrcreate of one connection."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def xattrwalk(self, msg: p.Txattrwalk) -> p.Rxattrwalk:
        fid = self.conn.node(msg.fid)
        if msg.newfid != msg.fid and msg.newfid in self.conn.fids:
            raise FsError(errno.EBADF, f"newfid {msg.newfid} is already in use")
        vol = fid.view.volume
        if msg.name:
            if not _readable(fid.cred, msg.name):
                raise FsError(errno.ENODATA, "no such attribute")
            if msg.name.startswith(b"user."):
                require(vol.getattr(fid.ino), fid.cred, R, vol)
            value = vol.getxattr(fid.ino, msg.name)
        else:
            names = [n for n in vol.listxattr(fid.ino) if _readable(fid.cred, n)]
            value = b"".join(n + b"\0" for n in names)
        new = Fid(fid.view, fid.ino, fid.cred, kind=XATTR_READ, xattr_value=value, xattr_name=msg.name)
        self.conn.fids.add(msg.newfid, new, replace=msg.newfid == msg.fid)
        return p.Rxattrwalk(size=len(value))

    def xattrcreate(self, msg: p.Txattrcreate) -> p.Rxattrcreate:
        fid = self.conn.node(msg.fid)
        if fid.opened:
            raise FsError(errno.EBADF, "xattrcreate on an open fid")
        writable(fid)
        name = msg.name
        if not name or len(name) > XATTR_NAME_MAX or b"\0" in name:
            raise FsError(errno.ERANGE if name else errno.EINVAL, "bad attribute name")
        if not name.startswith(XATTR_PREFIXES):
            raise FsError(errno.EOPNOTSUPP, "unknown attribute namespace")
        if name.startswith(b"system.") and name not in acl.NAMES:
            raise FsError(errno.EOPNOTSUPP, "system. holds only the POSIX ACLs")
        if msg.attr_size > XATTR_SIZE_MAX:
            raise FsError(errno.E2BIG, "attribute value larger than 64 KiB")
        attr = fid.view.volume.getattr(fid.ino)
        if name in acl.NAMES:
            if stat.S_ISLNK(attr.mode):
                raise FsError(errno.EOPNOTSUPP, "symlinks carry no POSIX ACL")
            require_owner(attr, fid.cred)
        elif name.startswith((b"trusted.", b"security.")):
            if not fid.cred.is_root:
                raise FsError(errno.EPERM, "only root may set trusted. and security. attributes")
        else:
            if not (stat.S_ISREG(attr.mode) or stat.S_ISDIR(attr.mode)):
                raise FsError(errno.EPERM, "user. attributes only on files and directories")
            if stat.S_ISDIR(attr.mode) and attr.mode & stat.S_ISVTX and fid.cred.uid != attr.uid:
                if not fid.cred.is_root:
                    raise FsError(errno.EPERM, "sticky directory")
            require(attr, fid.cred, W, fid.view.volume)
        if msg.flags & ~(XATTR_CREATE | XATTR_REPLACE):
            raise FsError(errno.EINVAL, "unknown xattr flags")
        fid.kind = XATTR_WRITE
        fid.xattr_name = name
        fid.xattr_size = msg.attr_size
        fid.xattr_flags = msg.flags
        fid.xattr_value = bytearray()
        return p.Rxattrcreate()

