"""The state every 9P operation of one connection shares: its fids and msize.

The operation groups (:mod:`.handlers`, :mod:`.attr_ops`, :mod:`.data_ops`,
:mod:`.xattr_ops`, :mod:`.lock_ops`) each hold the same :class:`Connection`
and use its checks on the fids a request names.
"""

from __future__ import annotations

import errno
import stat
from dataclasses import dataclass
from typing import Any

from cas import FsError

from . import protocol as p
from .access import W, X, Credentials, require
from .fids import NODE, Fid, FidTable, View


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


def writable(fid: Fid) -> None:
    """EROFS unless the fid's view may be changed."""
    if fid.view.read_only:
        raise FsError(errno.EROFS, "read-only file system")


@dataclass(eq=False, slots=True)
class Connection:
    """One connection's fids, negotiated msize and session id."""

    fids: FidTable
    session_id: int
    msize: int = p.MAX_MSIZE

    def node(self, fid_no: int) -> Fid:
        """The fid ``fid_no``, which must name a node (not an xattr fid)."""
        fid = self.fids.get(fid_no)
        if fid.kind != NODE:
            raise FsError(errno.EBADF, f"fid {fid_no} is an xattr fid")
        return fid

    def directory(self, fid_no: int) -> tuple[Fid, Any]:
        """A fid naming a directory, and the directory's attributes."""
        fid = self.node(fid_no)
        attr = fid.view.volume.getattr(fid.ino)
        if not stat.S_ISDIR(attr.mode):
            raise FsError(errno.ENOTDIR, "not a directory")
        return fid, attr

    def dir_for_change(self, fid_no: int) -> tuple[Fid, Any]:
        """A directory fid in which the caller may add or remove entries."""
        fid, attr = self.directory(fid_no)
        writable(fid)
        require(attr, fid.cred, W | X, fid.view.volume)
        return fid, attr


def new_gid(parent_attr, cred: Credentials, requested: int) -> int:
    """The group of a new entry: the directory's if set-group-ID, else the caller's choice if allowed."""
    if parent_attr.mode & stat.S_ISGID:
        return parent_attr.gid
    if cred.is_root or cred.trust_client_gid or cred.in_group(requested):
        return requested
    return cred.gid
