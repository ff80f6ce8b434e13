"""Names and limits, defined once: what an entry, xattr, dataset or snapshot may be called.

Entry names are bytes, as a client sent them: anything but ``/`` and NUL,
not ``.`` or ``..``, at most :data:`NAME_MAX` bytes. Xattr names lie in one
of :data:`XATTR_PREFIXES`' namespaces. Dataset and snapshot names are short
ASCII words (:data:`LABEL_RE`), safe in paths, URLs and ``dataset@snapshot``
labels. :data:`V9FS_MAGIC`, the statfs type a tree reports, is here too.
"""

from __future__ import annotations

import errno
import re

from .errors import FsError

NAME_MAX = 255          # bytes in one entry name (Linux NAME_MAX)
SYMLINK_MAX = 4095      # bytes in a symlink target (Linux PATH_MAX - 1)
SYMLOOP_MAX = 40        # symlinks followed in one path walk before ELOOP
XATTR_NAME_MAX = 255    # bytes in an xattr name
XATTR_SIZE_MAX = 65536  # bytes in an xattr value
XATTR_PREFIXES = (b"user.", b"trusted.", b"security.", b"system.")
#: times are signed 64-bit nanoseconds since 1970: 1677-09-21 to 2262-04-11
TIME_NS_MIN, TIME_NS_MAX = -(2**63), 2**63 - 1
V9FS_MAGIC = 0x01021997  # statfs f_type of a v9fs mount

#: dataset and snapshot names
LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_name(name: bytes) -> bytes:
    """Validate a new entry name (bytes): ENAMETOOLONG past 255, EINVAL for '/', NUL, '.', '..'."""
    if type(name) is not bytes:
        name = bytes(name)
    if len(name) > NAME_MAX:
        raise FsError(errno.ENAMETOOLONG, f"ENAMETOOLONG: {name[:32]!r}")
    if not name or name == b"." or name == b".." or b"/" in name or b"\0" in name:
        raise FsError(errno.EINVAL, f"EINVAL: invalid name {name!r}")
    return name


def check_xattr_name(name: bytes) -> bytes:
    """Validate an xattr name: EINVAL if empty, ERANGE past 255 bytes, EOPNOTSUPP outside
    the user, trusted, security and system namespaces."""
    name = bytes(name)
    if not name:
        raise FsError(errno.EINVAL, "EINVAL: empty xattr name")
    if len(name) > XATTR_NAME_MAX:
        raise FsError(errno.ERANGE, "ERANGE: xattr name too long")
    if not name.startswith(XATTR_PREFIXES):
        raise FsError(errno.EOPNOTSUPP, f"EOPNOTSUPP: xattr namespace of {name!r}")
    return name


def check_label(name: str, what: str = "snapshot") -> str:
    """Validate a snapshot or dataset name (EINVAL unless it matches ``LABEL_RE``)."""
    if not isinstance(name, str) or not LABEL_RE.fullmatch(name):
        raise FsError(errno.EINVAL, f"EINVAL: bad {what} name {name!r} "
                                    f"(must match [A-Za-z0-9][A-Za-z0-9_.-]{{0,63}})")
    return name
