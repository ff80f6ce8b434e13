"""Named constants of the 9P2000.L protocol.

Values follow the Linux v9fs client (include/net/9p/9p.h) and diod's
protocol description. Everything here is a plain integer, or an integer
enum, so it can be used directly on the wire.

The bit sets (:class:`QidType`, :class:`OpenFlags`, :class:`GetattrMask`,
:class:`SetattrValid`, :class:`LockFlags`, :class:`XattrFlags`) are classes
of plain ``int`` attributes, not ``enum.IntFlag``: on CPython 3.11 every
``&`` or ``|`` with an IntFlag member builds an enum member in Python
(about 1 µs, measured here), and a Tsetattr tests up to ten bits.
"""

from __future__ import annotations

import enum

__all__ = [
    "VERSION_9P2000L",
    "VERSION_UNKNOWN",
    "NOTAG",
    "NOFID",
    "NONUNAME",
    "HEADER_SIZE",
    "MAX_WALK_NAMES",
    "IOHDRSZ",
    "MAX_MSIZE",
    "MsgType",
    "QidType",
    "OpenFlags",
    "GetattrMask",
    "SetattrValid",
    "LockType",
    "LockFlags",
    "LockStatus",
    "XattrFlags",
    "AT_REMOVEDIR",
    "DT_UNKNOWN",
    "DT_FIFO",
    "DT_CHR",
    "DT_DIR",
    "DT_BLK",
    "DT_REG",
    "DT_LNK",
    "DT_SOCK",
]

VERSION_9P2000L = b"9P2000.L"
VERSION_UNKNOWN = b"unknown"

NOTAG = 0xFFFF
NOFID = 0xFFFFFFFF
NONUNAME = 0xFFFFFFFF

HEADER_SIZE = 7  # size[4] type[1] tag[2]
MAX_WALK_NAMES = 16
#: Room taken by an Rread/Twrite header (size, type, tag, count). A reply's data
#: may use msize minus this.
IOHDRSZ = 24
#: Largest msize ninep will negotiate on stream transports.
MAX_MSIZE = 1024 * 1024


class MsgType(enum.IntEnum):
    """9P2000.L message type numbers (T is even, its R is T + 1)."""

    TLERROR = 6
    RLERROR = 7
    TSTATFS = 8
    RSTATFS = 9
    TLOPEN = 12
    RLOPEN = 13
    TLCREATE = 14
    RLCREATE = 15
    TSYMLINK = 16
    RSYMLINK = 17
    TMKNOD = 18
    RMKNOD = 19
    TRENAME = 20
    RRENAME = 21
    TREADLINK = 22
    RREADLINK = 23
    TGETATTR = 24
    RGETATTR = 25
    TSETATTR = 26
    RSETATTR = 27
    TXATTRWALK = 30
    RXATTRWALK = 31
    TXATTRCREATE = 32
    RXATTRCREATE = 33
    TREADDIR = 40
    RREADDIR = 41
    TFSYNC = 50
    RFSYNC = 51
    TLOCK = 52
    RLOCK = 53
    TGETLOCK = 54
    RGETLOCK = 55
    TLINK = 70
    RLINK = 71
    TMKDIR = 72
    RMKDIR = 73
    TRENAMEAT = 74
    RRENAMEAT = 75
    TUNLINKAT = 76
    RUNLINKAT = 77
    TVERSION = 100
    RVERSION = 101
    TAUTH = 102
    RAUTH = 103
    TATTACH = 104
    RATTACH = 105
    TFLUSH = 108
    RFLUSH = 109
    TWALK = 110
    RWALK = 111
    TREAD = 116
    RREAD = 117
    TWRITE = 118
    RWRITE = 119
    TCLUNK = 120
    RCLUNK = 121
    TREMOVE = 122
    RREMOVE = 123


class QidType:
    """Bits of qid.type."""

    FILE = 0x00
    SYMLINK = 0x02
    TMP = 0x04
    AUTH = 0x08
    MOUNT = 0x10
    EXCL = 0x20
    APPEND = 0x40
    DIR = 0x80


class OpenFlags:
    """Tlopen/Tlcreate flags (the Linux values, as the kernel sends them)."""

    RDONLY = 0o0
    WRONLY = 0o1
    RDWR = 0o2
    ACCMODE = 0o3
    CREATE = 0o100
    EXCL = 0o200
    NOCTTY = 0o400
    TRUNC = 0o1000
    APPEND = 0o2000
    NONBLOCK = 0o4000
    DSYNC = 0o10000
    FASYNC = 0o20000
    DIRECT = 0o40000
    LARGEFILE = 0o100000
    DIRECTORY = 0o200000
    NOFOLLOW = 0o400000
    NOATIME = 0o1000000
    CLOEXEC = 0o2000000
    SYNC = 0o4000000


class GetattrMask:
    """Tgetattr request_mask / Rgetattr valid bits."""

    MODE = 0x00000001
    NLINK = 0x00000002
    UID = 0x00000004
    GID = 0x00000008
    RDEV = 0x00000010
    ATIME = 0x00000020
    MTIME = 0x00000040
    CTIME = 0x00000080
    INO = 0x00000100
    SIZE = 0x00000200
    BLOCKS = 0x00000400
    BTIME = 0x00000800
    GEN = 0x00001000
    DATA_VERSION = 0x00002000
    BASIC = 0x000007FF
    ALL = 0x00003FFF


class SetattrValid:
    """Tsetattr valid bits."""

    MODE = 0x00000001
    UID = 0x00000002
    GID = 0x00000004
    SIZE = 0x00000008
    ATIME = 0x00000010
    MTIME = 0x00000020
    CTIME = 0x00000040
    ATIME_SET = 0x00000080
    MTIME_SET = 0x00000100


class LockType(enum.IntEnum):
    """Tlock/Tgetlock type."""

    RDLCK = 0
    WRLCK = 1
    UNLCK = 2


class LockFlags:
    """Tlock flags."""

    BLOCK = 1
    RECLAIM = 2


class LockStatus(enum.IntEnum):
    """Rlock status."""

    SUCCESS = 0
    BLOCKED = 1
    ERROR = 2
    GRACE = 3


class XattrFlags:
    """Txattrcreate flags (setxattr(2) flags)."""

    CREATE = 1
    REPLACE = 2


#: Tunlinkat flag meaning "remove a directory" (the Linux AT_REMOVEDIR value).
AT_REMOVEDIR = 0x200

#: dirent type values used in Rreaddir (the DT_* of dirent.h).
DT_UNKNOWN = 0
DT_FIFO = 1
DT_CHR = 2
DT_DIR = 4
DT_BLK = 6
DT_REG = 8
DT_LNK = 10
DT_SOCK = 12
