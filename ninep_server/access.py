"""Who a request acts as, and POSIX permission checks for that identity.

The Linux client attaches once per uid and sends only the numeric uid, never
groups. Supplementary groups come from the export's ``groups`` map when it
has an entry for the uid, and otherwise from the host's user database
(``getgrouplist``), as diod does. A uid unknown to both has only its primary
gid, taken as equal to the uid's own number when nothing says otherwise.

POSIX ACLs count as Linux's ``acl_permission_check`` counts them: root
passes (execute needs an x bit somewhere), the owner gets the owner bits,
and anyone else is checked against the access ACL (named users, owning and
named groups, all limited by the mask, then other) when the inode has one
and its group bits are not all clear; otherwise against the group or other
bits. The ACL is read only on that last path, so owners and root never
load it.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
from dataclasses import dataclass

from cas import FsError, acl

from .config import ExportConfig

R, W, X = 4, 2, 1


@dataclass(frozen=True, slots=True)
class Credentials:
    """The identity a fid acts as."""

    uid: int
    gid: int
    groups: frozenset[int]
    #: The uid is unknown to the host and the config: accept the gid the
    #: client asks for in create requests, since nothing says otherwise.
    trust_client_gid: bool = False

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def in_group(self, gid: int) -> bool:
        return gid == self.gid or gid in self.groups


def host_identity(uid: int) -> tuple[int, frozenset[int]] | None:
    """(primary gid, all gids) of ``uid`` in the host's user database."""
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:
        return None
    try:
        groups = os.getgrouplist(pw.pw_name, pw.pw_gid)
    except OSError:
        groups = [pw.pw_gid]
    return pw.pw_gid, frozenset(groups)


class HostIdentities:
    """Host user-database identities of uids, each looked up once."""

    def __init__(self) -> None:
        self._known: dict[int, tuple | None] = {}

    def __call__(self, uid: int):
        if uid not in self._known:
            self._known[uid] = host_identity(uid)
        return self._known[uid]


def uid_for_name(uname: bytes) -> int | None:
    """Resolve a Tattach uname when n_uname is absent."""
    try:
        return pwd.getpwnam(os.fsdecode(uname)).pw_uid
    except (KeyError, ValueError):
        pass
    try:
        return int(uname)
    except ValueError:
        return None


def credentials_for(uid: int, export: ExportConfig, lookup=host_identity) -> Credentials:
    """Apply squashing and find the groups of ``uid`` for this export.

    ``lookup`` resolves a uid in the host database (the server passes a
    per-server :class:`HostIdentities`).
    """
    if export.squash == "all" or (export.squash == "root" and uid == 0):
        return Credentials(export.anon_uid, export.anon_gid, frozenset({export.anon_gid}))
    if export.groups and uid in export.groups:
        gids = export.groups[uid]
        primary = gids[0] if gids else uid
        return Credentials(uid, primary, frozenset(gids))
    host = lookup(uid)
    if host is not None:
        return Credentials(uid, host[0], host[1])
    return Credentials(uid, uid, frozenset({uid}), trust_client_gid=True)


def access_acl(tree, ino: int) -> acl.Acl | None:
    """The access ACL of inode ``ino`` of ``tree``, or None (no ACL, or a stored
    value that is not a valid ACL: then the mode alone decides)."""
    return acl.decode_stored(tree.access_acl(ino))


def permitted(mode: int, owner: int, group: int, cred: Credentials, want: int,
              tree=None, ino: int = 0) -> bool:
    """POSIX access check of ``want`` (R|W|X bits) against a mode, and against
    the access ACL of inode ``ino`` of ``tree`` when one is given and matters."""
    if cred.is_root:
        if want & X and not stat.S_ISDIR(mode) and not mode & 0o111:
            return False
        return True
    if cred.uid == owner:
        bits = (mode >> 6) & 7
    else:
        if tree is not None and mode & 0o070:
            entries = access_acl(tree, ino)
            if entries is not None:
                return acl.permits(entries, cred.uid, owner, cred.in_group, group, want)
        if cred.in_group(group):
            bits = (mode >> 3) & 7
        else:
            bits = mode & 7
    return bits & want == want


def require(attr, cred: Credentials, want: int, tree) -> None:
    """Raise EACCES unless ``cred`` has ``want`` on the inode ``attr`` of ``tree``
    (whose access ACL counts; ``tree`` None: the mode alone)."""
    if not permitted(attr.mode, attr.uid, attr.gid, cred, want, tree, attr.ino):
        raise FsError(errno.EACCES, "permission denied")


def require_owner(attr, cred: Credentials) -> None:
    """Raise EPERM unless ``cred`` owns the inode or is root."""
    if not cred.is_root and cred.uid != attr.uid:
        raise FsError(errno.EPERM, "operation not permitted")


def check_sticky(dir_attr, victim_attr, cred: Credentials) -> None:
    """In a sticky directory only the owner of an entry or of the directory may remove it."""
    if dir_attr.mode & stat.S_ISVTX and not cred.is_root:
        if cred.uid not in (dir_attr.uid, victim_attr.uid):
            raise FsError(errno.EPERM, "sticky directory")


def mode_after_write(mode: int, gid: int, cred: Credentials) -> int:
    """The mode a regular file keeps after ``cred`` writes to it.

    Linux's ``file_remove_privs`` (``setattr_should_drop_suidgid`` in
    fs/attr.c): a writer without CAP_FSETID clears set-user-ID always, and
    set-group-ID when the group may execute or the writer is not in the
    file's group. The v9fs client does not do this itself for cache=none
    writes (``v9fs_file_write_iter`` sends Twrite straight away), so the
    server does.
    """
    if cred.is_root or not stat.S_ISREG(mode) or not mode & (stat.S_ISUID | stat.S_ISGID):
        return mode
    new = mode & ~stat.S_ISUID
    if mode & stat.S_ISGID and (mode & stat.S_IXGRP or not cred.in_group(gid)):
        new &= ~stat.S_ISGID
    return new
