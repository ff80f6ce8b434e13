"""Message dataclasses of 9P2000.L.

Each message is a dataclass whose annotated fields, in order, *are* its wire
layout after the 7-byte header: the codec reads the annotations, so the
declaration below is the single source of truth for both directions.
Strings are ``bytes`` (9P strings are not guaranteed UTF-8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, ClassVar

from .constants import NOFID, NONUNAME, MsgType

U8 = Annotated[int, "B"]
U16 = Annotated[int, "H"]
U32 = Annotated[int, "I"]
U64 = Annotated[int, "Q"]
#: A signed 64-bit field: times, which Linux sends as the u64 of a signed ``tv_sec``
#: (a time before 1970 is a huge unsigned number on the wire, read here as negative).
I64 = Annotated[int, "q"]
Str = Annotated[bytes, "s"]
#: A data blob. To encode, it may also be a tuple of bytes-like pieces, sent in
#: order: a reply gathered from several buffers (chunks held in memory) without
#: joining them. Decoding always gives bytes.
Data = Annotated[bytes, "d"]
Names = Annotated[list, "names"]
Qids = Annotated[list, "qids"]


@dataclass(frozen=True, slots=True)
class Qid:
    """A server's unique identification of a file: type, version and path."""

    type: int = 0
    version: int = 0
    path: int = 0


QidField = Annotated[Qid, "qid"]


@dataclass(slots=True)
class Message:
    """Base of every message; ``tag`` matches a reply to its request."""

    TYPE: ClassVar[MsgType]
    tag: int = field(default=0, kw_only=True)


# -- session -------------------------------------------------------------


@dataclass(slots=True)
class Tversion(Message):
    TYPE = MsgType.TVERSION
    msize: U32 = 0
    version: Str = b""


@dataclass(slots=True)
class Rversion(Message):
    TYPE = MsgType.RVERSION
    msize: U32 = 0
    version: Str = b""


@dataclass(slots=True)
class Tauth(Message):
    TYPE = MsgType.TAUTH
    afid: U32 = 0
    uname: Str = b""
    aname: Str = b""
    n_uname: U32 = NONUNAME


@dataclass(slots=True)
class Rauth(Message):
    TYPE = MsgType.RAUTH
    aqid: QidField = Qid()


@dataclass(slots=True)
class Tattach(Message):
    TYPE = MsgType.TATTACH
    fid: U32 = 0
    afid: U32 = NOFID
    uname: Str = b""
    aname: Str = b""
    n_uname: U32 = NONUNAME


@dataclass(slots=True)
class Rattach(Message):
    TYPE = MsgType.RATTACH
    qid: QidField = Qid()


@dataclass(slots=True)
class Rlerror(Message):
    TYPE = MsgType.RLERROR
    ecode: U32 = 0


@dataclass(slots=True)
class Tflush(Message):
    TYPE = MsgType.TFLUSH
    oldtag: U16 = 0


@dataclass(slots=True)
class Rflush(Message):
    TYPE = MsgType.RFLUSH


# -- walking and opening ---------------------------------------------------


@dataclass(slots=True)
class Twalk(Message):
    TYPE = MsgType.TWALK
    fid: U32 = 0
    newfid: U32 = 0
    wnames: Names = field(default_factory=list)


@dataclass(slots=True)
class Rwalk(Message):
    TYPE = MsgType.RWALK
    qids: Qids = field(default_factory=list)


@dataclass(slots=True)
class Tlopen(Message):
    TYPE = MsgType.TLOPEN
    fid: U32 = 0
    flags: U32 = 0


@dataclass(slots=True)
class Rlopen(Message):
    TYPE = MsgType.RLOPEN
    qid: QidField = Qid()
    iounit: U32 = 0


@dataclass(slots=True)
class Tlcreate(Message):
    TYPE = MsgType.TLCREATE
    fid: U32 = 0
    name: Str = b""
    flags: U32 = 0
    mode: U32 = 0
    gid: U32 = 0


@dataclass(slots=True)
class Rlcreate(Message):
    TYPE = MsgType.RLCREATE
    qid: QidField = Qid()
    iounit: U32 = 0


@dataclass(slots=True)
class Tclunk(Message):
    TYPE = MsgType.TCLUNK
    fid: U32 = 0


@dataclass(slots=True)
class Rclunk(Message):
    TYPE = MsgType.RCLUNK


@dataclass(slots=True)
class Tremove(Message):
    TYPE = MsgType.TREMOVE
    fid: U32 = 0


@dataclass(slots=True)
class Rremove(Message):
    TYPE = MsgType.RREMOVE


# -- data ------------------------------------------------------------------


@dataclass(slots=True)
class Tread(Message):
    TYPE = MsgType.TREAD
    fid: U32 = 0
    offset: U64 = 0
    count: U32 = 0


@dataclass(slots=True)
class Rread(Message):
    TYPE = MsgType.RREAD
    data: Data = b""


@dataclass(slots=True)
class Twrite(Message):
    TYPE = MsgType.TWRITE
    fid: U32 = 0
    offset: U64 = 0
    data: Data = b""


@dataclass(slots=True)
class Rwrite(Message):
    TYPE = MsgType.RWRITE
    count: U32 = 0


@dataclass(slots=True)
class Treaddir(Message):
    TYPE = MsgType.TREADDIR
    fid: U32 = 0
    offset: U64 = 0
    count: U32 = 0


@dataclass(slots=True)
class Rreaddir(Message):
    """Directory entries, packed; see :func:`encode_dirents`/:func:`decode_dirents`."""

    TYPE = MsgType.RREADDIR
    data: Data = b""


@dataclass(slots=True)
class Tfsync(Message):
    TYPE = MsgType.TFSYNC
    fid: U32 = 0
    datasync: U32 = 0


@dataclass(slots=True)
class Rfsync(Message):
    TYPE = MsgType.RFSYNC


# -- attributes --------------------------------------------------------------


@dataclass(slots=True)
class Tstatfs(Message):
    TYPE = MsgType.TSTATFS
    fid: U32 = 0


@dataclass(slots=True)
class Rstatfs(Message):
    TYPE = MsgType.RSTATFS
    type: U32 = 0
    bsize: U32 = 0
    blocks: U64 = 0
    bfree: U64 = 0
    bavail: U64 = 0
    files: U64 = 0
    ffree: U64 = 0
    fsid: U64 = 0
    namelen: U32 = 0


@dataclass(slots=True)
class Tgetattr(Message):
    TYPE = MsgType.TGETATTR
    fid: U32 = 0
    request_mask: U64 = 0


@dataclass(slots=True)
class Rgetattr(Message):
    TYPE = MsgType.RGETATTR
    valid: U64 = 0
    qid: QidField = Qid()
    mode: U32 = 0
    uid: U32 = 0
    gid: U32 = 0
    nlink: U64 = 0
    rdev: U64 = 0
    size: U64 = 0
    blksize: U64 = 0
    blocks: U64 = 0
    atime_sec: I64 = 0
    atime_nsec: U64 = 0
    mtime_sec: I64 = 0
    mtime_nsec: U64 = 0
    ctime_sec: I64 = 0
    ctime_nsec: U64 = 0
    btime_sec: I64 = 0
    btime_nsec: U64 = 0
    gen: U64 = 0
    data_version: U64 = 0


@dataclass(slots=True)
class Tsetattr(Message):
    TYPE = MsgType.TSETATTR
    fid: U32 = 0
    valid: U32 = 0
    mode: U32 = 0
    uid: U32 = 0
    gid: U32 = 0
    size: U64 = 0
    atime_sec: I64 = 0
    atime_nsec: U64 = 0
    mtime_sec: I64 = 0
    mtime_nsec: U64 = 0


@dataclass(slots=True)
class Rsetattr(Message):
    TYPE = MsgType.RSETATTR


@dataclass(slots=True)
class Txattrwalk(Message):
    TYPE = MsgType.TXATTRWALK
    fid: U32 = 0
    newfid: U32 = 0
    name: Str = b""


@dataclass(slots=True)
class Rxattrwalk(Message):
    TYPE = MsgType.RXATTRWALK
    size: U64 = 0


@dataclass(slots=True)
class Txattrcreate(Message):
    TYPE = MsgType.TXATTRCREATE
    fid: U32 = 0
    name: Str = b""
    attr_size: U64 = 0
    flags: U32 = 0


@dataclass(slots=True)
class Rxattrcreate(Message):
    TYPE = MsgType.RXATTRCREATE


# -- namespace ---------------------------------------------------------------


@dataclass(slots=True)
class Tsymlink(Message):
    TYPE = MsgType.TSYMLINK
    fid: U32 = 0
    name: Str = b""
    symtgt: Str = b""
    gid: U32 = 0


@dataclass(slots=True)
class Rsymlink(Message):
    TYPE = MsgType.RSYMLINK
    qid: QidField = Qid()


@dataclass(slots=True)
class Tmknod(Message):
    TYPE = MsgType.TMKNOD
    dfid: U32 = 0
    name: Str = b""
    mode: U32 = 0
    major: U32 = 0
    minor: U32 = 0
    gid: U32 = 0


@dataclass(slots=True)
class Rmknod(Message):
    TYPE = MsgType.RMKNOD
    qid: QidField = Qid()


@dataclass(slots=True)
class Trename(Message):
    TYPE = MsgType.TRENAME
    fid: U32 = 0
    dfid: U32 = 0
    name: Str = b""


@dataclass(slots=True)
class Rrename(Message):
    TYPE = MsgType.RRENAME


@dataclass(slots=True)
class Treadlink(Message):
    TYPE = MsgType.TREADLINK
    fid: U32 = 0


@dataclass(slots=True)
class Rreadlink(Message):
    TYPE = MsgType.RREADLINK
    target: Str = b""


@dataclass(slots=True)
class Tlink(Message):
    TYPE = MsgType.TLINK
    dfid: U32 = 0
    fid: U32 = 0
    name: Str = b""


@dataclass(slots=True)
class Rlink(Message):
    TYPE = MsgType.RLINK


@dataclass(slots=True)
class Tmkdir(Message):
    TYPE = MsgType.TMKDIR
    dfid: U32 = 0
    name: Str = b""
    mode: U32 = 0
    gid: U32 = 0


@dataclass(slots=True)
class Rmkdir(Message):
    TYPE = MsgType.RMKDIR
    qid: QidField = Qid()


@dataclass(slots=True)
class Trenameat(Message):
    TYPE = MsgType.TRENAMEAT
    olddirfid: U32 = 0
    oldname: Str = b""
    newdirfid: U32 = 0
    newname: Str = b""


@dataclass(slots=True)
class Rrenameat(Message):
    TYPE = MsgType.RRENAMEAT


@dataclass(slots=True)
class Tunlinkat(Message):
    TYPE = MsgType.TUNLINKAT
    dirfid: U32 = 0
    name: Str = b""
    flags: U32 = 0


@dataclass(slots=True)
class Runlinkat(Message):
    TYPE = MsgType.RUNLINKAT


# -- locks -----------------------------------------------------------------


@dataclass(slots=True)
class Tlock(Message):
    TYPE = MsgType.TLOCK
    fid: U32 = 0
    type: U8 = 0
    flags: U32 = 0
    start: U64 = 0
    length: U64 = 0
    proc_id: U32 = 0
    client_id: Str = b""


@dataclass(slots=True)
class Rlock(Message):
    TYPE = MsgType.RLOCK
    status: U8 = 0


@dataclass(slots=True)
class Tgetlock(Message):
    TYPE = MsgType.TGETLOCK
    fid: U32 = 0
    type: U8 = 0
    start: U64 = 0
    length: U64 = 0
    proc_id: U32 = 0
    client_id: Str = b""


@dataclass(slots=True)
class Rgetlock(Message):
    TYPE = MsgType.RGETLOCK
    type: U8 = 0
    start: U64 = 0
    length: U64 = 0
    proc_id: U32 = 0
    client_id: Str = b""


ALL_MESSAGES: tuple[type[Message], ...] = tuple(
    cls
    for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, Message) and cls is not Message
)


@dataclass(frozen=True, slots=True)
class Dirent:
    """One entry of an Rreaddir payload; ``offset`` is the cookie of the next entry."""

    qid: Qid
    offset: int
    type: int
    name: bytes


__all__ = ["ALL_MESSAGES", "Dirent", "Message", "Qid", *(c.__name__ for c in ALL_MESSAGES)]
