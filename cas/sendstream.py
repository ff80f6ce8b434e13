"""The snapshot send stream: a sans-I/O encoder and decoder (docs/format.md, "Send streams").

A stream is the magic ``ninepsnd``, a big-endian u32 version, then records.
A record is a kind byte, a big-endian u64 payload length and the payload:

- ``H`` header: UTF-8 JSON (:class:`Header`), exactly once, first;
- ``R`` rows: one Arrow IPC stream (schema and one record batch) whose schema
  metadata names the table and whether the rows are added (``add``) or the
  keys of removed rows (``del``); see :data:`SCHEMAS`;
- ``C`` chunk: the 32-byte BLAKE3 hash, then the chunk's bytes;
- ``T`` trailer: the 32-byte BLAKE3 of every byte before the trailer record.
  Nothing may follow it.

The :class:`Encoder` turns values into bytes and the :class:`Decoder` bytes
into :class:`Header`, :class:`Rows`, :class:`Chunk` and :class:`End` events;
neither does I/O. The decoder holds at most one record in memory, and
refuses records larger than their kind allows, so a hostile stream cannot
make it buffer more.
"""

from __future__ import annotations

import errno
import json
import struct
from dataclasses import asdict, dataclass
from typing import Iterator

import blake3
import pyarrow as pa

from .errors import FsError

MAGIC = b"ninepsnd"
VERSION = 1
_START = struct.Struct(">8sI")
_REC = struct.Struct(">BQ")

HEADER, ROWS, CHUNK, TRAILER = b"H"[0], b"R"[0], b"C"[0], b"T"[0]
MAX_HEADER = 64 << 10
MAX_ROWS = 64 << 20
#: largest chunk record: the hash and a chunk of the largest chunk size a store allows
MAX_CHUNK = 32 + (16 << 20)

_I64, _I32, _BIN = pa.int64(), pa.int32(), pa.binary()
_INODE_FIELDS = [("ino", _I64), ("mode", _I32), ("uid", _I64), ("gid", _I64), ("nlink", _I64),
                 ("rdev", _I64), ("size", _I64), ("atime", _I64), ("mtime", _I64),
                 ("ctime", _I64), ("btime", _I64), ("dver", _I64), ("parent", _I64),
                 ("next_seq", _I64), ("target", _BIN)]

#: (table, op) -> the exact schema of its row batches. ``add`` batches hold
#: whole rows (inode numbers as the sender numbers them; inodes without
#: their dataset column); ``del`` batches hold the keys of rows removed.
SCHEMAS: dict[tuple[str, str], pa.Schema] = {
    ("inodes", "add"): pa.schema(_INODE_FIELDS),
    ("entries", "add"): pa.schema([("parent", _I64), ("name", _BIN), ("child", _I64),
                                   ("seq", _I64), ("type", _I32)]),
    ("extents", "add"): pa.schema([("ino", _I64), ("idx", _I64), ("hash", pa.string()),
                                   ("length", _I32)]),
    ("xattrs", "add"): pa.schema([("ino", _I64), ("name", _BIN), ("value", _BIN)]),
    ("inodes", "del"): pa.schema([("ino", _I64)]),
    ("entries", "del"): pa.schema([("parent", _I64), ("name", _BIN)]),
    ("extents", "del"): pa.schema([("ino", _I64), ("idx", _I64)]),
    ("xattrs", "del"): pa.schema([("ino", _I64), ("name", _BIN)]),
}


class StreamError(FsError):
    """The stream is truncated, corrupt, of another version or not a send stream (EBADMSG)."""

    def __init__(self, message: str, code: int = errno.EBADMSG):
        super().__init__(code, message)


@dataclass
class Header:
    """What a stream holds. ``kind`` is ``full`` or ``incremental`` (then ``base_guid``
    names the snapshot the receiver must have); ``root`` is the sender's root inode."""

    kind: str
    dataset: str
    snapshot: str
    guid: str
    created_ns: int
    chunk_size: int
    root: int
    base_guid: str | None = None
    base_snapshot: str | None = None

    def check(self) -> None:
        if self.kind not in ("full", "incremental"):
            raise StreamError(f"unknown stream kind {self.kind!r}")
        if (self.kind == "incremental") != (self.base_guid is not None):
            raise StreamError("an incremental stream needs a base GUID, a full stream none")
        for name, value in (("dataset", self.dataset), ("snapshot", self.snapshot),
                            ("guid", self.guid)):
            if not isinstance(value, str) or not value:
                raise StreamError(f"header field {name!r} is not a string")
        for name in ("created_ns", "chunk_size", "root"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise StreamError(f"header field {name!r} is not an integer")
        if not 0 < self.chunk_size <= 16 << 20:
            raise StreamError(f"chunk size {self.chunk_size} out of range")


@dataclass
class Rows:
    """A batch of rows of ``table``: added rows (``op`` "add") or removed keys ("del")."""

    table: str
    op: str
    batch: pa.RecordBatch


@dataclass
class Chunk:
    """One chunk: its hex name and bytes (the receiver verifies one against the other)."""

    hash: str
    data: bytes


@dataclass
class End:
    """The trailer was read and its checksum matched."""


Event = Header | Rows | Chunk | End


class Encoder:
    """Builds a stream piece by piece; every method returns the bytes to write next."""

    def __init__(self):
        self._hash = blake3.blake3()
        self.bytes = 0

    def _emit(self, parts: list) -> list:
        for p in parts:
            self._hash.update(p)
            self.bytes += len(p)
        return parts

    def _record(self, kind: int, payload_parts: list) -> list:
        n = sum(len(p) for p in payload_parts)
        return self._emit([_REC.pack(kind, n), *payload_parts])

    def start(self, header: Header) -> list:
        """The magic, the version and the header record."""
        header.check()
        body = json.dumps(asdict(header), sort_keys=True).encode()
        return self._emit([_START.pack(MAGIC, VERSION)]) + self._record(HEADER, [body])

    def rows(self, table: str, op: str, batch: pa.RecordBatch) -> list:
        """A rows record (``batch`` is cast to the table's schema)."""
        schema = SCHEMAS[(table, op)]
        batch = pa.RecordBatch.from_arrays(
            [batch.column(f.name).cast(f.type) for f in schema], schema=schema)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, schema.with_metadata({"table": table, "op": op})) as w:
            w.write_batch(batch)
        return self._record(ROWS, [sink.getvalue()])

    def chunk(self, h: str, data) -> list:
        """A chunk record."""
        return self._record(CHUNK, [bytes.fromhex(h), data])

    def end(self) -> list:
        """The trailer: the checksum of everything so far."""
        digest = self._hash.digest()
        out = [_REC.pack(TRAILER, len(digest)), digest]
        self.bytes += sum(len(p) for p in out)
        return out


class Decoder:
    """Parses a stream fed in pieces of any size: ``feed(data)`` then iterate :meth:`events`.

    Raises :class:`StreamError` on anything but a well-formed stream of this
    version; :meth:`close` raises it if the stream ended early.
    """

    def __init__(self):
        self._buf = bytearray()
        self._hash = blake3.blake3()
        self._started = False
        self._header: Header | None = None
        self._done = False
        self.bytes = 0

    def feed(self, data) -> None:
        if self._done and data:
            raise StreamError("data after the end of the stream")
        self._buf += data
        self.bytes += len(data)

    def _take(self, n: int) -> bytes:
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def events(self) -> Iterator[Event]:
        """The events complete in what was fed so far."""
        while not self._done:
            if not self._started:
                if len(self._buf) < _START.size:
                    if not MAGIC.startswith(bytes(self._buf[:len(MAGIC)])):
                        raise StreamError("not a ninep send stream (bad magic)")
                    return
                magic, version = _START.unpack(self._take(_START.size))
                if magic != MAGIC:
                    raise StreamError("not a ninep send stream (bad magic)")
                if version != VERSION:
                    raise StreamError(f"send stream version {version}; this ninep reads "
                                      f"version {VERSION}", errno.EPROTONOSUPPORT)
                self._hash.update(_START.pack(magic, version))
                self._started = True
            if len(self._buf) < _REC.size:
                return
            kind, n = _REC.unpack_from(self._buf)
            self._limit(kind, n)
            if len(self._buf) < _REC.size + n:
                return
            head = self._take(_REC.size)
            payload = self._take(n)
            if kind == TRAILER:
                if payload != self._hash.digest():
                    raise StreamError("stream checksum mismatch: the stream is corrupt")
                self._done = True
                if self._buf:
                    raise StreamError("data after the end of the stream")
                yield End()
                return
            self._hash.update(head)
            self._hash.update(payload)
            yield self._parse(kind, payload)

    def _limit(self, kind: int, n: int) -> None:
        if self._header is None and kind != HEADER:
            raise StreamError("the stream does not start with a header")
        if kind == HEADER:
            if self._header is not None:
                raise StreamError("a second header record")
            limit = MAX_HEADER
        elif kind == ROWS:
            limit = MAX_ROWS
        elif kind == CHUNK:
            limit = 32 + self._header.chunk_size
        elif kind == TRAILER:
            limit = 32
        else:
            raise StreamError(f"unknown record kind {kind:#x}")
        if n > limit:
            raise StreamError(f"record of kind {chr(kind)!r} is {n} bytes, more than {limit}")

    def _parse(self, kind: int, payload: bytes) -> Event:
        if kind == HEADER:
            try:
                fields = json.loads(payload)
                header = Header(**fields)
            except (ValueError, TypeError) as exc:
                raise StreamError(f"bad header: {exc}") from None
            header.check()
            self._header = header
            return header
        if kind == CHUNK:
            if len(payload) < 33:
                raise StreamError("empty chunk record")
            return Chunk(payload[:32].hex(), payload[32:])
        return _parse_rows(payload)

    def close(self) -> None:
        """The input ended: raise StreamError unless the trailer was read."""
        if not self._done:
            raise StreamError(f"the stream ends early (after {self.bytes} bytes, "
                              "before its trailer): truncated")


def _parse_rows(payload: bytes) -> Rows:
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(payload))
        batches = list(reader)
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise StreamError(f"bad rows record: {exc}") from None
    meta = reader.schema.metadata or {}
    table = meta.get(b"table", b"").decode("ascii", "replace")
    op = meta.get(b"op", b"").decode("ascii", "replace")
    schema = SCHEMAS.get((table, op))
    if schema is None:
        raise StreamError(f"rows of unknown table {table!r} ({op!r})")
    if len(batches) != 1 or not reader.schema.remove_metadata().equals(schema):
        raise StreamError(f"rows of {table} ({op}) do not have the expected columns")
    return Rows(table, op, batches[0])
