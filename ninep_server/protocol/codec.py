"""Pure encode/decode of 9P2000.L frames (no I/O).

``decode(frame)`` turns one complete frame into a message dataclass and
``encode(message)`` does the reverse. :class:`FrameBuffer` splits a byte
stream into frames. The layout of every message comes from the annotations
in :mod:`.messages`, compiled once into a short list of steps: runs of
fixed-width integers (and qids) are packed with one ``struct.Struct``.
"""

from __future__ import annotations

import struct
import typing
from dataclasses import dataclass, fields
from typing import Any, Iterable

from .constants import HEADER_SIZE, MAX_WALK_NAMES, MsgType
from .messages import ALL_MESSAGES, Dirent, Message, Qid, Rwalk, Twalk

_HEADER = struct.Struct("<IBH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_QID = struct.Struct("<BIQ")
_DIRENT_HEAD = struct.Struct("<BIQQBH")
_WALK_HEAD = struct.Struct("<IIH")
_TWALK = int(MsgType.TWALK)


class ProtocolError(Exception):
    """A frame that is not valid 9P2000.L.

    ``tag`` and ``type`` are set when the header could be read, so that a
    server can still answer the request with Rlerror.
    """

    def __init__(self, reason: str, tag: int | None = None, type: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.tag = tag
        self.type = type

    def __str__(self) -> str:
        where = ""
        if self.type is not None:
            where = f" (type {self.type}, tag {self.tag})"
        return f"{self.reason}{where}"


@dataclass(frozen=True, slots=True)
class _Fixed:
    st: struct.Struct
    names: tuple[str, ...]
    qids: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class _Var:
    kind: str  # "s", "d", "names", "qids"
    name: str


_FIXED_CODES = {"B": "B", "H": "H", "I": "I", "Q": "Q", "q": "q", "qid": "BIQ"}


def _compile(cls: type[Message]) -> tuple[_Fixed | _Var, ...]:
    hints = typing.get_type_hints(cls, include_extras=True)
    steps: list[_Fixed | _Var] = []
    run: list[tuple[str, str]] = []

    def flush() -> None:
        if run:
            fmt = "<" + "".join(_FIXED_CODES[k] for _, k in run)
            steps.append(
                _Fixed(struct.Struct(fmt), tuple(n for n, _ in run), tuple(k == "qid" for _, k in run))
            )
            run.clear()

    for f in fields(cls):
        if f.name == "tag":
            continue
        kind = hints[f.name].__metadata__[0]
        if kind in _FIXED_CODES:
            run.append((f.name, kind))
        else:
            flush()
            steps.append(_Var(kind, f.name))
    flush()
    return tuple(steps)


_LAYOUT: dict[type[Message], tuple[_Fixed | _Var, ...]] = {c: _compile(c) for c in ALL_MESSAGES}
_BY_TYPE: dict[int, type[Message]] = {int(c.TYPE): c for c in ALL_MESSAGES}


def _fast_paths():
    """Single-struct codecs for the common shapes, used by encode/decode when they apply.

    A message made of integers and qids, optionally followed by one data blob
    (Tread, Tclunk, Rgetattr, Rlopen, Rwrite, Rread, Twrite, ...), packs as
    one ``struct`` with the header in front: no per-field loop. Decoding
    takes the qid-free ones.
    """
    enc: dict[type, tuple[struct.Struct, Any, bool]] = {}
    dec: dict[int, tuple[type, struct.Struct]] = {}
    for cls, steps in _LAYOUT.items():
        fixed = steps[0] if steps and type(steps[0]) is _Fixed else None
        rest = steps[1:] if fixed else steps
        if rest and (len(rest) > 1 or rest[0].kind != "d"):
            continue
        names, qids = (fixed.names, fixed.qids) if fixed else ((), ())
        blob = rest[0].name if rest else None
        fmt = "<IBH" + (fixed.st.format[1:] if fixed else "") + ("I" if blob else "")
        # The field values in wire order, qids flattened: generated like
        # dataclasses generates __init__, since a per-field loop is what this avoids.
        exprs = [f"m.{n}.type, m.{n}.version, m.{n}.path" if q else f"m.{n}" for n, q in zip(names, qids)]
        if blob:
            exprs.append(f"m.{blob}")
        getter = eval("lambda m: (" + "".join(e + ", " for e in exprs) + ")")  # noqa: S307
        enc[cls] = (struct.Struct(fmt), getter, bool(blob))
        if not blob and not any(qids):
            dec[int(cls.TYPE)] = (cls, struct.Struct("<" + fmt[4:]))
    return enc, dec


_FAST_ENCODE, _FAST_DECODE = _fast_paths()

# Rwalk (a reply to every lookup) by the number of qids it carries: one struct each
_RWALK = int(MsgType.RWALK)
_RWALK_BY_COUNT = [struct.Struct("<IBHH" + "BIQ" * n) for n in range(MAX_WALK_NAMES + 1)]


def _encode_rwalk(msg: Rwalk) -> bytes | None:
    """Rwalk packed in one go (the general encoder's loop cost twice as much); None
    for more qids than a walk may have, which the general encoder then handles."""
    qids = msg.qids
    n = len(qids)
    if n > MAX_WALK_NAMES:
        return None
    st = _RWALK_BY_COUNT[n]
    if n == 1:   # a lookup of one name, the common case: half the cost of the loop below
        q = qids[0]
        return st.pack(st.size, _RWALK, msg.tag, 1, q.type, q.version, q.path)
    values = []
    for q in qids:
        values += (q.type, q.version, q.path)
    return st.pack(st.size, _RWALK, msg.tag, n, *values)


def message_class(type_: int) -> type[Message] | None:
    """The message class for a wire type number, or None if unknown."""
    return _BY_TYPE.get(type_)


# -- encoding ----------------------------------------------------------------


def blob_length(data) -> int:
    """Bytes in a data blob: a bytes-like object, or a tuple of them (see ``Data``)."""
    return len(data) if type(data) is not tuple else sum(map(len, data))


def encode_parts(msg: Message) -> tuple[bytes, Any]:
    """Serialize one message as ``(head, payload)``: the frame is ``head + payload``.

    For a message that ends in a data blob (Rread, Rreaddir, Twrite, ...)
    ``payload`` is that blob itself, not copied, so a sender can hand both
    to one ``sendmsg``/``writev`` without building the frame; for any other
    message ``head`` is the whole frame and ``payload`` is empty. The blob
    may be any bytes-like object (a memoryview of a cached chunk, say), or
    a tuple of them (see ``Data``): the payload is then that tuple.
    """
    fast = _FAST_ENCODE.get(type(msg))
    if fast is not None and fast[2]:
        st, getter, _ = fast
        values = getter(msg)
        data = values[-1]
        n = blob_length(data)
        try:
            return st.pack(st.size + n, msg.TYPE, msg.tag, *values[:-1], n), data
        except struct.error as exc:
            raise ValueError(f"cannot encode {type(msg).__name__}: {exc}") from None
    return encode(msg), b""


def encode(msg: Message) -> bytes:
    """Serialize one message into a complete frame (size field included)."""
    fast = _FAST_ENCODE.get(type(msg))
    if fast is not None:
        st, getter, blob = fast
        values = getter(msg)
        try:
            if blob:
                data = values[-1]
                if type(data) is tuple:
                    data = b"".join(data)
                return st.pack(st.size + len(data), msg.TYPE, msg.tag, *values[:-1], len(data)) + data
            return st.pack(st.size, msg.TYPE, msg.tag, *values)
        except struct.error as exc:
            raise ValueError(f"cannot encode {type(msg).__name__}: {exc}") from None
    if type(msg) is Rwalk:
        try:
            frame = _encode_rwalk(msg)
        except struct.error as exc:
            raise ValueError(f"cannot encode Rwalk: {exc}") from None
        if frame is not None:
            return frame
    parts: list[Any] = [b""]
    try:
        for step in _LAYOUT[type(msg)]:
            if type(step) is _Fixed:
                values: list[int] = []
                for name, is_qid in zip(step.names, step.qids):
                    v = getattr(msg, name)
                    if is_qid:
                        values += (v.type, v.version, v.path)
                    else:
                        values.append(v)
                parts.append(step.st.pack(*values))
            else:
                v = getattr(msg, step.name)
                if step.kind == "s":
                    parts.append(_U16.pack(len(v)))
                    parts.append(v)
                elif step.kind == "d":
                    parts.append(_U32.pack(len(v)))
                    parts.append(v)
                elif step.kind == "names":
                    parts.append(_U16.pack(len(v)))
                    for name in v:
                        parts.append(_U16.pack(len(name)))
                        parts.append(name)
                else:  # qids
                    parts.append(_U16.pack(len(v)))
                    for q in v:
                        parts.append(_QID.pack(q.type, q.version, q.path))
    except struct.error as exc:
        raise ValueError(f"cannot encode {type(msg).__name__}: {exc}") from None
    body_len = sum(len(p) for p in parts)
    parts[0] = _HEADER.pack(body_len + HEADER_SIZE, msg.TYPE, msg.tag)
    return b"".join(parts)


# -- decoding ----------------------------------------------------------------


def decode_header(frame: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """Return (size, type, tag) of a frame's header, or raise ProtocolError."""
    if len(frame) < HEADER_SIZE:
        raise ProtocolError(f"frame of {len(frame)} bytes is shorter than the 7-byte header")
    return _HEADER.unpack_from(frame, 0)


def decode(frame: bytes | bytearray | memoryview) -> Message:
    """Parse one complete frame. Raises :class:`ProtocolError` and nothing else."""
    size, type_, tag = decode_header(frame)
    fast = _FAST_DECODE.get(type_)
    if fast is not None and size == len(frame) == HEADER_SIZE + fast[1].size:
        cls, st = fast
        return cls(*st.unpack_from(frame, HEADER_SIZE), tag=tag)
    if type_ == _TWALK and size == len(frame):
        msg = _decode_walk(frame, size, tag)
        if msg is not None:
            return msg
    try:
        return _decode_body(frame, size, type_, tag)
    except ProtocolError:
        raise
    except Exception as exc:  # defensive: the decoder promises one exception type
        raise ProtocolError(f"undecodable frame: {exc!r}", tag, type_) from None


def _decode_walk(frame: Any, size: int, tag: int) -> Twalk | None:
    """A well-formed Twalk (one per entry of an ``ls -l``), without the general
    decoder's per-field loop; None for anything else, which the general decoder
    then reports precisely."""
    if size < HEADER_SIZE + _WALK_HEAD.size:
        return None
    fid, newfid, count = _WALK_HEAD.unpack_from(frame, HEADER_SIZE)
    if count > MAX_WALK_NAMES:
        return None
    pos = HEADER_SIZE + _WALK_HEAD.size
    names = []
    for _ in range(count):
        if pos + 2 > size:
            return None
        n = frame[pos] | frame[pos + 1] << 8
        pos += 2
        if pos + n > size:
            return None
        names.append(bytes(frame[pos:pos + n]))
        pos += n
    if pos != size:
        return None
    return Twalk(fid=fid, newfid=newfid, wnames=names, tag=tag)


def _decode_body(frame: Any, size: int, type_: int, tag: int) -> Message:
    if size != len(frame):
        raise ProtocolError(f"size field says {size} bytes but the frame has {len(frame)}", tag, type_)
    cls = _BY_TYPE.get(type_)
    if cls is None:
        raise ProtocolError(f"unknown message type {type_}", tag, type_)
    buf = memoryview(frame)
    pos = HEADER_SIZE
    kwargs: dict[str, Any] = {}

    def need(n: int, what: str) -> None:
        if pos + n > size:
            raise ProtocolError(f"{cls.__name__}: {what} runs past the end of the frame", tag, type_)

    for step in _LAYOUT[cls]:
        if type(step) is _Fixed:
            need(step.st.size, f"field {step.names[0]}")
            values = step.st.unpack_from(buf, pos)
            pos += step.st.size
            i = 0
            for name, is_qid in zip(step.names, step.qids):
                if is_qid:
                    kwargs[name] = Qid(values[i], values[i + 1], values[i + 2])
                    i += 3
                else:
                    kwargs[name] = values[i]
                    i += 1
            continue
        kind = step.kind
        if kind == "s":
            need(2, f"length of {step.name}")
            (n,) = _U16.unpack_from(buf, pos)
            pos += 2
            need(n, f"string {step.name}")
            kwargs[step.name] = bytes(buf[pos : pos + n])
            pos += n
        elif kind == "d":
            need(4, f"count of {step.name}")
            (n,) = _U32.unpack_from(buf, pos)
            pos += 4
            need(n, f"{n} bytes of {step.name}")
            kwargs[step.name] = bytes(buf[pos : pos + n])
            pos += n
        elif kind == "names":
            need(2, "nwname")
            (count,) = _U16.unpack_from(buf, pos)
            pos += 2
            if count > MAX_WALK_NAMES:
                raise ProtocolError(f"{cls.__name__} has {count} names, more than {MAX_WALK_NAMES}", tag, type_)
            names = []
            for _ in range(count):
                need(2, "length of a walk name")
                (n,) = _U16.unpack_from(buf, pos)
                pos += 2
                need(n, "a walk name")
                names.append(bytes(buf[pos : pos + n]))
                pos += n
            kwargs[step.name] = names
        else:  # qids
            need(2, "nwqid")
            (count,) = _U16.unpack_from(buf, pos)
            pos += 2
            if count > MAX_WALK_NAMES:
                raise ProtocolError(f"{cls.__name__} has {count} qids, more than {MAX_WALK_NAMES}", tag, type_)
            need(13 * count, "the qid list")
            qids = []
            for _ in range(count):
                qids.append(Qid(*_QID.unpack_from(buf, pos)))
                pos += 13
            kwargs[step.name] = qids
    if pos != size:
        raise ProtocolError(f"{cls.__name__}: {size - pos} trailing bytes after the last field", tag, type_)
    return cls(**kwargs, tag=tag)


# -- directory entries ---------------------------------------------------------


def dirent_size(name: bytes) -> int:
    """Bytes one entry with this name takes in an Rreaddir payload."""
    return 24 + len(name)


def encode_dirents(entries: Iterable[Dirent]) -> bytes:
    """Pack entries into an Rreaddir payload."""
    out = bytearray()
    for e in entries:
        out += _DIRENT_HEAD.pack(e.qid.type, e.qid.version, e.qid.path, e.offset, e.type, len(e.name))
        out += e.name
    return bytes(out)


def decode_dirents(data: bytes) -> list[Dirent]:
    """Unpack an Rreaddir payload; raises ProtocolError on a malformed one."""
    out: list[Dirent] = []
    pos = 0
    end = len(data)
    while pos < end:
        if pos + _DIRENT_HEAD.size > end:
            raise ProtocolError("Rreaddir: truncated directory entry")
        qtype, qvers, qpath, offset, dtype, n = _DIRENT_HEAD.unpack_from(data, pos)
        pos += _DIRENT_HEAD.size
        if pos + n > end:
            raise ProtocolError("Rreaddir: entry name runs past the end")
        out.append(Dirent(Qid(qtype, qvers, qpath), offset, dtype, bytes(data[pos : pos + n])))
        pos += n
    return out


# -- stream framing --------------------------------------------------------------


class FrameBuffer:
    """Accumulates stream bytes and yields complete frames.

    A size field below the header size or above ``max_size`` cannot be
    resynchronised, so it raises ProtocolError and the connection must close.
    """

    def __init__(self, max_size: int):
        self.max_size = max_size
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def __len__(self) -> int:
        return len(self._buf)

    def next_frame(self) -> bytes | None:
        """The next complete frame, or None until more bytes arrive."""
        buf = self._buf
        if len(buf) < 4:
            return None
        (size,) = _U32.unpack_from(buf, 0)
        if size < HEADER_SIZE:
            raise ProtocolError(f"frame size {size} is smaller than the 7-byte header")
        if size > self.max_size:
            tag = type_ = None
            if len(buf) >= HEADER_SIZE:
                _, type_, tag = _HEADER.unpack_from(buf, 0)
            raise ProtocolError(f"frame size {size} exceeds msize {self.max_size}", tag, type_)
        if len(buf) < size:
            return None
        if len(buf) == size:  # the common case: one whole frame buffered
            frame = bytes(buf)
            buf.clear()
            return frame
        with memoryview(buf) as view:  # one copy (slicing the bytearray would make two)
            frame = view[:size].tobytes()
        del buf[:size]  # cheap: bytearray drops a prefix without moving the rest
        return frame

    def needed(self) -> int:
        """How many more bytes complete the current frame (at least 1)."""
        if len(self._buf) < 4:
            return 4 - len(self._buf)
        (size,) = _U32.unpack_from(self._buf, 0)
        return max(1, size - len(self._buf))
