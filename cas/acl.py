"""POSIX ACLs: the Linux xattr format and the rules tying an ACL to the mode.

With the ``posixacl`` mount option the Linux 9P client keeps ACLs in two
xattrs, :data:`ACCESS` (``system.posix_acl_access``) and :data:`DEFAULT`
(``system.posix_acl_default``). Their value is the kernel's binary format:
a little-endian u32 version (2), then 8-byte entries ``(u16 tag, u16 perm,
u32 id)``. This module decodes and checks that format as Linux's
``posix_acl_from_xattr`` and ``posix_acl_valid`` do, and implements the
mode rules of POSIX.1e draft 17 as Linux applies them (fs/posix_acl.c):

- :func:`update_mode`: setting an access ACL sets the mode's permission
  bits from it; an ACL the mode can express is stored as the mode alone;
- :func:`chmod`: a mode change rewrites the owner, mask (or owning group)
  and other entries;
- :func:`inherit`: a new object in a directory with a default ACL gets that
  ACL masked by the create mode.

Pure functions over immutable tuples; no 9P and no storage here. Errors are
``FsError`` with Linux's errno: EINVAL for a malformed ACL, EOPNOTSUPP for a
version other than 2.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

from .errors import FsError

ACCESS = b"system.posix_acl_access"
DEFAULT = b"system.posix_acl_default"
NAMES = (ACCESS, DEFAULT)

VERSION = 2
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
#: the id of entries that name no one (owner, owning group, mask, other);
#: as a named user or group it is (uid_t)-1, no id at all: EINVAL
UNDEFINED_ID = 0xFFFFFFFF
R, W, X = 4, 2, 1

_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")
_NAMED = (USER, GROUP)
# Entries must come in this order of tags (named ones by ascending id).
_RANK = {USER_OBJ: 0, USER: 1, GROUP_OBJ: 2, GROUP: 3, MASK: 4, OTHER: 5}


@dataclass(frozen=True, slots=True)
class Entry:
    """One ACL entry: a tag, rwx permission bits, and the uid/gid of a named entry."""

    tag: int
    perm: int
    id: int = UNDEFINED_ID


Acl = tuple[Entry, ...]


def _invalid(why: str) -> FsError:
    return FsError(errno.EINVAL, f"EINVAL: malformed POSIX ACL: {why}")


def decode(value: bytes) -> Acl | None:
    """The valid ACL in an xattr value, or None for an empty one (no entries).

    An empty value or a bare header means "no ACL", as Linux reads it.
    The id of an unnamed entry is ignored (Linux does not read it).
    """
    value = bytes(value)
    if not value:
        return None
    if len(value) < _HEADER.size or (len(value) - _HEADER.size) % _ENTRY.size:
        raise _invalid(f"{len(value)} bytes is not a header plus 8-byte entries")
    (version,) = _HEADER.unpack_from(value)
    if version != VERSION:
        raise FsError(errno.EOPNOTSUPP, f"EOPNOTSUPP: POSIX ACL version {version}")
    acl = tuple(Entry(tag, perm, ident if tag in _NAMED else UNDEFINED_ID)
                for tag, perm, ident in _ENTRY.iter_unpack(value[_HEADER.size:]))
    if not acl:
        return None
    validate(acl)
    return acl


def decode_stored(value: bytes | None) -> Acl | None:
    """The ACL in a stored xattr value; None if absent, empty, or not a valid ACL
    (a value stored before ACLs were checked counts as no ACL: the mode alone decides)."""
    if not value:
        return None
    try:
        return decode(value)
    except FsError:
        return None


def validate(acl: Acl) -> None:
    """EINVAL unless ``acl`` is well formed, as ``posix_acl_valid`` requires.

    Exactly one owner, owning-group and other entry; at most one mask, which
    must be there if any named entry is; tags in the order owner, named
    users, owning group, named groups, mask, other; named ids ascending and
    unique and not (uid_t)-1; permissions within rwx.
    """
    rank = -1
    prev_id = -1
    named = False
    seen: set[int] = set()
    for e in acl:
        r = _RANK.get(e.tag)
        if r is None:
            raise _invalid(f"unknown tag {e.tag:#x}")
        if e.perm & ~(R | W | X):
            raise _invalid(f"permission bits {e.perm:#x}")
        if r < rank:
            raise _invalid("entries out of order")
        if e.tag in _NAMED:
            if e.id >= UNDEFINED_ID:
                raise _invalid(f"id {e.id}")
            if r == rank and e.id <= prev_id:
                raise _invalid(f"id {e.id} repeated or out of order")
            prev_id = e.id
            named = True
        else:
            if e.tag in seen:
                raise _invalid(f"second entry of tag {e.tag:#x}")
            seen.add(e.tag)
        rank = r
    for tag in (USER_OBJ, GROUP_OBJ, OTHER):
        if tag not in seen:
            raise _invalid(f"no entry of tag {tag:#x}")
    if named and MASK not in seen:
        raise _invalid("named entries without a mask")


def encode(acl: Acl) -> bytes:
    """The xattr value of ``acl`` (unnamed entries carry :data:`UNDEFINED_ID`)."""
    return _HEADER.pack(VERSION) + b"".join(
        _ENTRY.pack(e.tag, e.perm, e.id if e.tag in _NAMED else UNDEFINED_ID) for e in acl)


def from_mode(mode: int) -> Acl:
    """The minimal ACL (owner, group, other) that says what ``mode`` says."""
    return (Entry(USER_OBJ, (mode >> 6) & 7), Entry(GROUP_OBJ, (mode >> 3) & 7), Entry(OTHER, mode & 7))


def equiv_mode(acl: Acl, mode: int) -> tuple[int, bool]:
    """(``mode`` with its rwx bits from ``acl``, whether the mode alone says all the ACL says).

    The group bits come from the mask when there is one; an ACL with a mask
    or a named entry is not equivalent to any mode.
    """
    bits = 0
    equivalent = True
    for e in acl:
        if e.tag == USER_OBJ:
            bits |= e.perm << 6
        elif e.tag == GROUP_OBJ:
            bits |= e.perm << 3
        elif e.tag == OTHER:
            bits |= e.perm
        elif e.tag == MASK:
            bits = (bits & ~0o070) | (e.perm << 3)
            equivalent = False
        else:
            equivalent = False
    return (mode & ~0o777) | bits, equivalent


def update_mode(acl: Acl, mode: int) -> tuple[int, Acl | None]:
    """Setting access ACL ``acl`` on an inode of ``mode``: (new mode, ACL to store or None)."""
    new, equivalent = equiv_mode(acl, mode)
    return new, None if equivalent else acl


def chmod(acl: Acl, mode: int) -> Acl:
    """The access ACL after a chmod to ``mode``: owner, mask (or the owning
    group, without a mask) and other take the mode's bits; named entries stay."""
    has_mask = any(e.tag == MASK for e in acl)
    out = []
    for e in acl:
        if e.tag == USER_OBJ:
            e = Entry(USER_OBJ, (mode >> 6) & 7)
        elif e.tag == MASK or (e.tag == GROUP_OBJ and not has_mask):
            e = Entry(e.tag, (mode >> 3) & 7)
        elif e.tag == OTHER:
            e = Entry(OTHER, mode & 7)
        out.append(e)
    return tuple(out)


def inherit(default: Acl, mode: int) -> tuple[int, Acl | None]:
    """A new object created with ``mode`` under a directory whose default ACL is ``default``.

    Returns (its mode, its access ACL or None when the mode says it all):
    each of owner, mask (or the owning group, without a mask) and other is
    the AND of the default entry and the create mode, and the mode's bits
    become those entries. The umask plays no part: the ACL replaces it.
    """
    has_mask = any(e.tag == MASK for e in default)
    out = []
    for e in default:
        if e.tag == USER_OBJ:
            e = Entry(USER_OBJ, e.perm & (mode >> 6) & 7)
        elif e.tag == MASK or (e.tag == GROUP_OBJ and not has_mask):
            e = Entry(e.tag, e.perm & (mode >> 3) & 7)
        elif e.tag == OTHER:
            e = Entry(OTHER, e.perm & mode & 7)
        out.append(e)
    acl = tuple(out)
    new, equivalent = equiv_mode(acl, mode)
    return new, None if equivalent else acl


def permits(acl: Acl, uid: int, owner: int, in_group, group: int, want: int) -> bool:
    """POSIX.1e access check of ``want`` (rwx bits) for ``uid`` against ``acl``.

    ``in_group(gid)`` says whether the caller is a member of ``gid``;
    ``group`` is the file's owning group. The first matching class decides:
    the owner entry; a named user (limited by the mask); the owning group
    and named groups, any of which may grant (limited by the mask), none
    matching falling through to other.
    """
    mask = 7
    for e in acl:
        if e.tag == MASK:
            mask = e.perm
    matched_group = False
    for e in acl:
        tag = e.tag
        if tag == USER_OBJ:
            if uid == owner:
                return e.perm & want == want
        elif tag == USER:
            if uid == e.id:
                return e.perm & mask & want == want
        elif tag == GROUP_OBJ or tag == GROUP:
            if in_group(group if tag == GROUP_OBJ else e.id):
                if e.perm & mask & want == want:
                    return True
                matched_group = True
        elif tag == OTHER:
            return not matched_group and e.perm & want == want
    return False
