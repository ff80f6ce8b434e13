"""Shared chunk pools: several stores, one bucket prefix of chunks (docs/format.md, "Chunk pools").

Every store whose chunks are on object storage is a member of the pool at
its prefix. It registers itself and publishes the set of chunk hashes its
catalog references (every dataset and snapshot)::

    PREFIX/pool/stores/<id>.json        the member's registry record (JSON, format 2)
    PREFIX/pool/refs/<id>/<sequence>    a published set (binary, format 1)

A record names the member's latest set; a set is written first, then the
record moves on to it, then older sets of that member are deleted. gc on
any member deletes a chunk only when no member's latest set names it and
its object is older than a grace period (uploads in flight, and dedup hits
of other stores: a store that finds an old object by dedup re-uploads it,
so its time says it is in use again; see :data:`TOUCH_AGE`). gc refuses
while a member's set is older than the staleness bound, unless forced;
:meth:`Pool.forget` removes a dead member.

A published set::

    b"NINEPREF"  u16 format (1)  u64 count        big-endian header
    zlib(sorted 32-byte BLAKE3 digests)           count * 32 bytes once inflated
    32-byte BLAKE3-256 of everything above
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import blake3
import structlog

from .errors import StoreFormatError

log = structlog.get_logger(__name__)

#: version of a registry record (2 added ``role``; version 1 records read as role "store")
RECORD_FORMAT = 2
_RECORD_FORMATS = (1, 2)
#: roles of a member: a store that writes chunks, or a read-only replica that only reads them
ROLE_STORE = "store"
ROLE_REPLICA = "replica"
#: version of a published set
REFS_FORMAT = 1
REFS_MAGIC = b"NINEPREF"
_HEAD = struct.Struct(">8sHQ")
STORES = "pool/stores/"
REFS = "pool/refs/"
#: defaults: seconds between publications, gc's grace period, staleness factor
REFRESH_INTERVAL = 600.0
GRACE = 3600.0
STALE_FACTOR = 3
#: a dedup hit on an object older than this re-uploads it (its time becomes now);
#: must stay below GRACE minus the staleness bound (3600 - 3 * 600 = 1800)
TOUCH_AGE = 900.0


class PoolStaleError(RuntimeError):
    """gc refused: a registered store has not published its set recently enough."""


def new_store_id() -> str:
    """A random store id (32 hex digits)."""
    return uuid.uuid4().hex


def encode_refs(hashes: Iterable[str]) -> bytes:
    """The published-set object of ``hashes`` (hex BLAKE3-256 names)."""
    digests = sorted(bytes.fromhex(h) for h in hashes)
    blob = _HEAD.pack(REFS_MAGIC, REFS_FORMAT, len(digests)) + zlib.compress(b"".join(digests), 6)
    return blob + blake3.blake3(blob).digest()


def decode_refs(data: bytes, what: str = "published set") -> set[str]:
    """The hashes of a published-set object; StoreFormatError if damaged or of another version."""
    if len(data) < _HEAD.size + 32 or blake3.blake3(data[:-32]).digest() != data[-32:]:
        raise StoreFormatError(f"{what}: damaged (checksum mismatch)")
    magic, version, count = _HEAD.unpack_from(data)
    if magic != REFS_MAGIC or version != REFS_FORMAT:
        raise StoreFormatError(f"{what}: format {magic!r} {version}, this code reads {REFS_FORMAT}")
    raw = zlib.decompress(data[_HEAD.size:-32])
    if len(raw) != 32 * count:
        raise StoreFormatError(f"{what}: {len(raw)} bytes for {count} hashes")
    return {raw[i:i + 32].hex() for i in range(0, len(raw), 32)}


@dataclass
class Member:
    """A registry record: one store of the pool."""

    id: str
    host: str
    path: str
    created: float
    refreshed: float = 0.0      # when its latest set was published (0: never)
    sequence: int = 0           # of its latest set
    refs: str | None = None     # key of its latest set, relative to the prefix
    count: int = 0              # hashes in it
    size: int = 0               # bytes of the object
    format: int = RECORD_FORMAT
    role: str = ROLE_STORE      # ROLE_STORE, or ROLE_REPLICA (ninep serve --replica)

    def age(self, now: float | None = None) -> float:
        """Seconds since its latest set was published (since creation if never)."""
        return (time.time() if now is None else now) - (self.refreshed or self.created)

    @classmethod
    def parse(cls, data: bytes, key: str) -> "Member":
        try:
            doc = json.loads(data)
            if doc.get("format") not in _RECORD_FORMATS:
                raise StoreFormatError(f"{key}: registry record format {doc.get('format')}, "
                                       f"this code reads {' and '.join(map(str, _RECORD_FORMATS))}")
            return cls(**doc)
        except (ValueError, TypeError) as exc:
            raise StoreFormatError(f"{key}: not a registry record: {exc}") from None


class Pool:
    """The pool at an :class:`cas.s3chunks.S3Chunks` prefix, seen by store ``store_id``.

    ``hashes()`` returns this store's referenced chunks (called by :meth:`publish`).
    ``store_id`` None: a tool that lists or forgets members without being one.
    ``role``: what the member is (:data:`ROLE_STORE`, or :data:`ROLE_REPLICA` for a
    read-only replica, which publishes the chunks of the catalog copy it serves).
    ``refresh_interval``: seconds between publications (the staleness bound is
    :data:`STALE_FACTOR` times it); ``grace``: gc's grace period.
    """

    def __init__(self, objects, store_id: str | None = None, path: str = "",
                 hashes: Callable[[], set[str]] | None = None, *,
                 refresh_interval: float = REFRESH_INTERVAL, grace: float = GRACE,
                 role: str = ROLE_STORE):
        self.objects = objects
        self.role = role
        self.store_id = store_id
        self.path = path
        self._hashes = hashes
        self.refresh_interval = refresh_interval
        #: gc keeps unreferenced objects younger than this (seconds)
        self.grace = grace
        #: the object store's time of this store's latest set (gc measures ages against it)
        self.published_at = 0.0
        self._lock = threading.Lock()

    def _record_key(self, sid: str) -> str:
        return f"{STORES}{sid}.json"

    def member(self, sid: str) -> Member | None:
        """The registry record of ``sid``, or None."""
        key = self._record_key(sid)
        data = self.objects.read_object(key)
        return None if data is None else Member.parse(data, key)

    def members(self) -> list[Member]:
        """Every registered store, oldest first."""
        out = []
        for key, _size, _mtime in self.objects.list_objects(STORES):
            if key.endswith(".json"):
                data = self.objects.read_object(key)
                if data is not None:
                    out.append(Member.parse(data, key))
        return sorted(out, key=lambda m: m.created)

    def _write(self, m: Member) -> None:
        m.format, m.role = RECORD_FORMAT, self.role
        self.objects.write_object(self._record_key(m.id),
                                  json.dumps(asdict(m), sort_keys=True).encode())

    def register(self) -> Member:
        """Add this store to the registry (keeping its record if it has one)."""
        m = self.member(self.store_id)
        if m is None:
            m = Member(id=self.store_id, host=socket.gethostname(),
                       path=os.path.realpath(self.path), created=time.time(), role=self.role)
            self._write(m)
            log.info("store joined the chunk pool", store_id=self.store_id, role=self.role,
                     location=self.objects.location)
        return m

    def publish(self, hashes: set[str] | None = None) -> Member:
        """Publish this store's referenced chunks (``hashes``, default: asked for) as a new
        set; return the updated record."""
        with self._lock:  # one publication at a time: sequence numbers and deletions
            return self._publish(hashes)

    def _publish(self, hashes: set[str] | None) -> Member:
        if hashes is None:
            hashes = self._hashes()
        m = self.member(self.store_id) or self.register()
        m.host, m.path = socket.gethostname(), os.path.realpath(self.path)
        data = encode_refs(hashes)
        m.sequence += 1
        key = f"{REFS}{self.store_id}/{m.sequence:020d}"
        self.objects.write_object(key, data)
        self.published_at = self.objects.object_time(key)
        m.refs, m.count, m.size, m.refreshed = key, len(hashes), len(data), time.time()
        self._write(m)
        for old, _size, _mtime in self.objects.list_objects(f"{REFS}{self.store_id}/"):
            if old != key:
                self.objects.delete_object(old)
        log.debug("published chunk set", store_id=self.store_id, count=len(hashes))
        return m

    def forget(self, sid: str) -> bool:
        """Remove store ``sid`` from the pool (its record and sets); False if unknown."""
        m = self.member(sid)
        for key, _size, _mtime in self.objects.list_objects(f"{REFS}{sid}/"):
            self.objects.delete_object(key)
        if m is None:
            return False
        self.objects.delete_object(self._record_key(sid))
        log.warning("store removed from the chunk pool", store_id=sid, host=m.host, path=m.path)
        return True

    def stale_after(self) -> float:
        """The staleness bound: sets older than this block gc."""
        return STALE_FACTOR * self.refresh_interval

    def others_referenced(self, *, force: bool = False) -> set[str]:
        """Every hash the latest sets of the other members name.

        Raises PoolStaleError naming the first member whose set is older than
        :meth:`stale_after` (or missing), unless ``force``.
        """
        out: set[str] = set()
        now = time.time()
        for m in self.members():
            if m.id == self.store_id:
                continue
            if m.age(now) > self.stale_after() or m.refs is None:
                msg = (f"store {m.id} on host {m.host} ({m.path}) last published its chunk set "
                       f"{m.age(now):.1f} s ago (bound {self.stale_after():.1f} s)")
                if not force:
                    raise PoolStaleError(
                        f"gc refused: {msg}; start that store, or remove it from the pool with "
                        f"`ninep pool forget {self.objects.location} {m.id}`, or use --force")
                log.warning(f"gc forced past a stale pool member: {msg}")
            if m.refs is not None:
                data = self.objects.read_object(m.refs)
                if data is None:
                    if not force:
                        raise PoolStaleError(f"gc refused: the chunk set {m.refs} of store {m.id} "
                                             f"on host {m.host} is missing")
                    continue
                out |= decode_refs(data, m.refs)
        return out
