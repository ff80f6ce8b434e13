"""Chunks as objects in an S3-compatible bucket: :class:`S3Chunks`.

Bucket layout (docs/format.md, "Chunks on object storage"), under
``s3://BUCKET/PREFIX``::

    PREFIX/ninep-chunks          "ninep-chunks 2": the layout's marker and version
    PREFIX/ab/<64 hex>           a chunk, named by its BLAKE3-256 like a chunk file
    PREFIX/pool/...              the pool's registry and published sets (cas/pool.py)

Several stores may share a prefix (a chunk pool): ``create=True`` joins a
version-2 prefix. A version-1 prefix (one store's, before pools) becomes a
version-2 pool of one when its store is opened by this code; a new store
cannot join it before that.

The client is obstore's synchronous API, called from worker threads (its
requests release the GIL). Uploads are put-if-absent (``If-None-Match: *``):
an object that is already there is a dedup hit and costs no upload; a
server that does not support the precondition gets a HEAD first instead.
An upload is durable when it returns, so :meth:`S3Chunks.make_durable` has
nothing left to do. Every download is BLAKE3-verified. Requests are retried
with backoff on 5xx, SlowDown, timeouts and refused connections (obstore's
retry configuration, from :class:`cas.s3config.S3Settings`); when the retries
run out the operation fails with ``FsError(EIO)`` and one log line that
never contains the credentials.

Reads go through the memory LRU, then the on-disk cache
(:class:`cas.chunkcache.ChunkCache`), then the bucket; a download is
written to the disk cache. Uploads are written to the disk cache too
(recently written data reads back without a download). :meth:`prefetch`
downloads ahead into the disk cache on a few background threads.
"""

from __future__ import annotations

import errno
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import obstore
import structlog
from obstore.exceptions import (AlreadyExistsError, NotFoundError, NotSupportedError,
                                PermissionDeniedError, UnauthenticatedError)
from obstore.store import S3Store

from .chunkbackend import ChunkStats
from .chunkbase import ChunkBase, chunk_hash
from .chunkcache import ChunkCache
from .errors import CorruptChunkError, FsError, StoreFormatError
from .pool import TOUCH_AGE
from .s3config import S3Settings

log = structlog.get_logger(__name__)

#: version of the bucket layout, in the marker object (2: a shared pool)
LAYOUT_VERSION = 2
MARKER = "ninep-chunks"
_KEY = re.compile(r"^([0-9a-f]{2})/([0-9a-f]{64})$")
# obstore raises NotFoundError, or the builtin FileNotFoundError (GET), for a missing object
_NOT_FOUND = (NotFoundError, FileNotFoundError)
_LOG_EVERY = 5.0  # seconds between two log lines about the same failing operation


def _unsupported(exc: Exception) -> bool:
    """Whether a conditional upload failed because the server does not implement it (501)."""
    return isinstance(exc, NotSupportedError) or (
        "501" in str(exc) and "NotImplemented" in str(exc))


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of ``s3://BUCKET[/PREFIX]``; ValueError for anything else."""
    m = re.fullmatch(r"s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])(?:/(.*))?", url)
    if m is None:
        raise ValueError(f"not an s3://BUCKET/PREFIX location: {url!r}")
    prefix = (m.group(2) or "").strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise ValueError(f"bad prefix in {url!r}")
    return m.group(1), prefix


def canonical_url(url: str) -> str:
    """``url`` without trailing or doubled slashes (how a store records it)."""
    bucket, prefix = parse_url(url)
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


class S3Chunks(ChunkBase):
    """Chunks in a bucket, with a local cache (see the module docstring).

    ``url`` is ``s3://BUCKET/PREFIX``; ``cache_root`` the directory of the
    on-disk cache, bounded by ``cache_bytes``. ``create=True`` makes a new
    store a member of the pool at the prefix (creating its marker, or joining
    a version-2 one); otherwise the marker must be there with a supported
    layout version (version 1 is migrated to 2).
    Both check that the bucket answers with the credentials given, failing
    fast with a message that says what to check.
    """

    #: other stores may reference these chunks: deletion is gc's alone (cas/gc.py)
    shared = True
    readahead_threads = 8  # GETs wait on the network: as many as the measured 8 threads
    readahead_batch = 1

    def __init__(self, url: str, settings: S3Settings, cache_root: str, cache_bytes: int, *,
                 chunk_size: int, create: bool = False, io_threads: int = 8,
                 memory_bytes: int | None = None):
        # the memory LRU holds more than a read-ahead window (32 chunks), so what
        # read-ahead downloaded is still in memory when the reader gets there
        super().__init__(memory_bytes if memory_bytes is not None else max(40 * chunk_size, 48 << 20),
                         io_threads)
        self.bucket, self.prefix = parse_url(url)
        self.location = canonical_url(url)
        self._settings = settings
        self._secrets = settings.secrets()
        self._endpoint = settings.endpoint or "the AWS default endpoint"
        opts = settings.obstore_options()
        try:
            self._store = S3Store(self.bucket, prefix=self.prefix or None, **opts)
        except Exception as exc:
            raise self._unusable(exc) from None
        self._conditional = settings.conditional_put
        #: a dedup hit on an object older than this (seconds) re-uploads it (cas/pool.py)
        self.touch_age = TOUCH_AGE
        self._inflight: dict[str, threading.Event] = {}
        self._last_log: dict[str, float] = {}
        self._uploads = self._upload_bytes = self._dedup = 0
        self._downloads = self._download_bytes = self._errors = 0
        self._check_marker(opts, create)
        self.cache = ChunkCache(cache_root, cache_bytes)

    # -- opening
    def _unusable(self, exc: Exception) -> FsError:
        return FsError(errno.EIO, (
            f"cannot use object storage at {self._endpoint} for {self.location}: "
            f"{self._clean(exc)}; check the endpoint (AWS_ENDPOINT_URL, AWS_ALLOW_HTTP for "
            f"http), the bucket and the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"))

    def _check_marker(self, opts: dict, create: bool) -> None:
        """Create or check the marker object, failing fast (few retries) with a clear message."""
        quick = dict(opts, retry_config={
            "max_retries": 2, "retry_timeout": timedelta(seconds=min(5.0, self._settings.retry_timeout)),
            "backoff": {"init_backoff": timedelta(seconds=0.1), "max_backoff": timedelta(seconds=1),
                        "base": 2.0}})
        want = f"{MARKER} {LAYOUT_VERSION}\n".encode()
        try:
            probe = S3Store(self.bucket, prefix=self.prefix or None, **quick)
            if create:
                if self._conditional:
                    try:
                        obstore.put(probe, MARKER, want, mode="create")
                        return
                    except AlreadyExistsError:
                        pass
                    except Exception as exc:
                        if not _unsupported(exc):
                            raise
                        self._conditional = False
                try:
                    obstore.head(probe, MARKER)
                except _NOT_FOUND:
                    obstore.put(probe, MARKER, want)
                    return
            try:
                got = bytes(obstore.get(probe, MARKER).bytes())
            except _NOT_FOUND:
                raise StoreFormatError(
                    f"{self.location} holds no ninep chunks (no {MARKER!r} object): check the "
                    f"bucket and prefix, and the endpoint {self._endpoint}") from None
            version = self._layout(got)
            if version == 1:
                if create:
                    raise StoreFormatError(
                        f"{self.location} holds the chunks of a ninep store made before chunk "
                        f"pools (layout 1): open that store with this version first (which "
                        f"makes the prefix a pool), or give the new store another prefix")
                obstore.put(probe, MARKER, want)
                log.warning("chunk layout 1 migrated to 2: the prefix is now a pool of one",
                            location=self.location)
        except StoreFormatError:
            raise
        except Exception as exc:
            raise self._unusable(exc) from None

    def _layout(self, got: bytes) -> int:
        parts = got.split()
        if len(parts) != 2 or parts[0] != MARKER.encode() or parts[1] not in (b"1", b"2"):
            raise StoreFormatError(f"{self.location}: chunk layout {got[:40]!r}, this code "
                                   f"supports {MARKER} 1 and {LAYOUT_VERSION}")
        return int(parts[1])

    # -- other objects under the prefix (the pool's registry and sets, cas/pool.py)
    def read_object(self, key: str) -> bytes | None:
        """The object ``key`` (relative to the prefix), or None if absent."""
        try:
            return bytes(obstore.get(self._store, key).bytes())
        except _NOT_FOUND:
            return None
        except Exception as exc:
            raise self._failed("read", key, exc) from None

    def write_object(self, key: str, data: bytes) -> None:
        """Create or replace object ``key``."""
        try:
            obstore.put(self._store, key, data)
        except Exception as exc:
            raise self._failed("write", key, exc) from None

    def delete_object(self, key: str) -> None:
        """Delete object ``key`` (absent is fine)."""
        try:
            obstore.delete(self._store, key)
        except _NOT_FOUND:
            pass
        except Exception as exc:
            raise self._failed("delete", key, exc) from None

    def list_objects(self, prefix: str) -> list[tuple[str, int, float]]:
        """(key, size, last modified as a Unix time) of every object under ``prefix``."""
        try:
            return [(m["path"], int(m["size"]), m["last_modified"].timestamp())
                    for batch in obstore.list(self._store, prefix) for m in batch]
        except Exception as exc:
            raise self._failed("listing", prefix, exc) from None

    def object_time(self, key: str) -> float:
        """The last-modified time of object ``key``, by the server's clock."""
        try:
            return obstore.head(self._store, key)["last_modified"].timestamp()
        except Exception as exc:
            raise self._failed("lookup", key, exc) from None

    # -- errors
    def _clean(self, exc: BaseException) -> str:
        """A short description of ``exc`` with any credential masked."""
        text = f"{type(exc).__name__}: {exc}"
        for s in self._secrets:
            text = text.replace(s, "***")
        return text if len(text) <= 400 else text[:400] + "..."

    def _failed(self, op: str, h: str, exc: Exception) -> OSError:
        """The error to raise for a failed request (logged, at most once per op every few seconds)."""
        if isinstance(exc, _NOT_FOUND):
            return FileNotFoundError(errno.ENOENT, f"chunk not in {self.location}", h)
        refused = isinstance(exc, (PermissionDeniedError, UnauthenticatedError))
        what = ("object storage refused the credentials" if refused
                else "object storage unreachable")
        detail = self._clean(exc)
        now = time.monotonic()
        with self._lock:
            self._errors += 1
            quiet = now - self._last_log.get(op, -_LOG_EVERY) < _LOG_EVERY
            if not quiet:
                self._last_log[op] = now
        if not quiet:
            log.error(f"chunk {op} failed: {what} (check the endpoint, the bucket and the "
                      f"credentials)", location=self.location, endpoint=self._endpoint,
                      chunk=h, error=detail)
        return FsError(errno.EIO, f"chunk {op} failed: {what} at {self.location}: {detail}")

    def _key(self, h: str) -> str:
        return f"{h[:2]}/{h}"

    # -- writing
    def put(self, data, h: str | None = None, pin: bool = False) -> str:
        """Upload ``data`` unless present (put-if-absent); return its hash. Durable on return."""
        if h is None:
            h = chunk_hash(data)
        if pin:
            self.pin(h)
        try:
            fresh = self._upload(h, data)
        except BaseException:
            if pin:
                self.unpin(h)
            raise
        with self._lock:
            if fresh:
                self._uploads += 1
                self._upload_bytes += len(data)
                self.chunks_written += 1
                self.bytes_written += len(data)
            else:
                self._dedup += 1
        if fresh:
            self.cache.put(h, data)
        return h

    def _upload(self, h: str, data) -> bool:
        """Put ``data`` as ``h`` if absent; True if uploaded, False if it was there."""
        key = self._key(h)
        try:
            if self._conditional:
                try:
                    obstore.put(self._store, key, data, mode="create")
                    return True
                except AlreadyExistsError:
                    self._touch(key, data)
                    return False
                except Exception as exc:
                    if not _unsupported(exc):
                        raise
                    log.warning("object storage does not support put-if-absent; checking with "
                                "HEAD before each upload", location=self.location)
                    self._conditional = False
            try:
                meta = obstore.head(self._store, key)
                if time.time() - meta["last_modified"].timestamp() > self.touch_age:
                    obstore.put(self._store, key, data)
                return False
            except _NOT_FOUND:
                obstore.put(self._store, key, data)
                return True
        except Exception as exc:
            raise self._failed("upload", h, exc) from None

    def _touch(self, key: str, data) -> None:
        """A dedup hit: re-upload an object older than ``touch_age``, so that its time
        tells other stores' gc it is in use again (cas/pool.py)."""
        try:
            meta = obstore.head(self._store, key)
        except _NOT_FOUND:
            meta = None  # deleted by a gc meanwhile: upload it again
        if meta is None or time.time() - meta["last_modified"].timestamp() > self.touch_age:
            obstore.put(self._store, key, data)

    def make_durable(self) -> None:
        """Nothing to do: an upload is durable when :meth:`put` returns."""

    # -- reading
    def get(self, h: str) -> bytes:
        """The verified content of ``h`` (memory, disk cache, then the bucket)."""
        data = self.cached(h, count=True)
        if data is None:
            data = self._load(h)
            self._remember(h, data)
        return data

    def get_nowait(self, h: str) -> bytes | None:
        """The content of ``h`` from memory or a cache file in the page cache, else None."""
        data = self.cached(h, count=True)
        if data is None:
            data = self.cache.get_nowait(h)
            if data is not None:
                self._remember(h, data)
        return data

    def get_into(self, h: str, dest: memoryview) -> int | None:
        """Copy verified chunk ``h`` into ``dest``; its length, or None if longer than ``dest``."""
        data = self.cached(h)
        if data is None:
            data = self._load(h)
        n = len(data)
        if n > len(dest):
            return None
        dest[:n] = data
        return n

    def get_many_into(self, items: list[tuple[str, memoryview]]) -> list[int | None]:
        """:meth:`get_into` for several chunks, downloads spread over the I/O threads."""
        if len(items) < 2:
            return [self.get_into(h, dest) for h, dest in items]
        parts = self._spread(lambda part: [self.get_into(h, d) for h, d in part], items)
        for p in parts:
            if isinstance(p, BaseException):
                raise p
        return [n for part in parts for n in part]

    def _load(self, h: str, count: bool = True) -> bytes:
        """From the disk cache, else downloaded (once, if several threads want it) and cached.

        ``count`` counts the lookup as a cache hit or miss (read-ahead does not).
        """
        while True:
            data = self.cache.get(h, count)
            count = False
            if data is not None:
                return data
            with self._lock:
                busy = self._inflight.get(h)
                if busy is None:
                    busy = self._inflight[h] = threading.Event()
                    mine = True
                else:
                    mine = False
            if not mine:
                busy.wait()
                if h in self.cache:
                    continue
                # the other download failed (or the chunk did not fit the cache): our own
            try:
                data = self._download(h)
                self.cache.put(h, data)
                return data
            finally:
                if mine:
                    with self._lock:
                        self._inflight.pop(h, None)
                    busy.set()

    def _download(self, h: str, verify: bool = True) -> bytes:
        try:
            data = bytes(obstore.get(self._store, self._key(h)).bytes())
        except Exception as exc:
            raise self._failed("download", h, exc) from None
        with self._lock:
            self._downloads += 1
            self._download_bytes += len(data)
        if verify and chunk_hash(data) != h:
            log.error("corrupt chunk object", chunk=h, location=self.location, length=len(data))
            raise CorruptChunkError(h, f"corrupt chunk {h} in {self.location}")
        return data

    def advise(self, hashes) -> None:
        """Download these chunks into the disk cache and memory unless cached (a read-ahead thread)."""
        for h in hashes:
            if self.cached(h) is not None or h in self.cache:
                continue
            try:
                self._remember(h, self._load(h, count=False))
            except OSError:
                pass  # read-ahead is advice: the reader reports the error

    def drop_cache(self) -> None:
        """Forget every cached chunk, in memory and on disk: the next reads download."""
        self._forget_memory()
        self.cache.clear()

    # -- enumeration and checking
    def has(self, h: str) -> bool:
        """Whether the bucket holds chunk ``h`` (a HEAD request)."""
        try:
            self.size_of(h)
            return True
        except FileNotFoundError:
            return False

    def size_of(self, h: str) -> int:
        """The object's size (FileNotFoundError if absent)."""
        try:
            return int(obstore.head(self._store, self._key(h))["size"])
        except Exception as exc:
            raise self._failed("lookup", h, exc) from None

    def verify(self, h: str) -> bool:
        """Download ``h`` (bypassing the caches) and re-hash it; False if absent or bad."""
        try:
            data = self._download(h, verify=False)
        except FileNotFoundError:
            return False
        return chunk_hash(data) == h

    def sizes(self, on_dir: Callable[[], None] | None = None) -> dict[str, int]:
        """Every chunk object and its size, from one listing of the prefix."""
        out: dict[str, int] = {}
        done = 0
        try:
            for batch in obstore.list(self._store, chunk_size=1000):
                for meta in batch:
                    m = _KEY.match(meta["path"])
                    if m is None:
                        continue
                    if on_dir:
                        while done < int(m.group(1), 16):
                            on_dir()
                            done += 1
                    out[m.group(2)] = int(meta["size"])
        except Exception as exc:
            raise self._failed("listing", "", exc) from None
        if on_dir:
            while done < 256:
                on_dir()
                done += 1
        return out

    def listing(self) -> dict[str, tuple[int, float]]:
        """Every chunk object's (size, last modified as a Unix time, by the server's clock)."""
        out = {}
        for key, size, mtime in self.list_objects(""):
            m = _KEY.match(key)
            if m is not None:
                out[m.group(2)] = (size, mtime)
        return out

    def __iter__(self) -> Iterator[str]:
        """The hash of every chunk object."""
        return iter(self.sizes())

    def usage(self) -> tuple[int, int]:
        """(number of chunk objects, total bytes)."""
        sizes = self.sizes()
        return len(sizes), sum(sizes.values())

    # -- deleting
    def _remove(self, h: str) -> bool:
        self.cache.discard(h)
        if not self.has(h):
            return False
        try:
            obstore.delete(self._store, self._key(h))
        except Exception as exc:
            raise self._failed("delete", h, exc) from None
        return True

    # -- housekeeping
    def remove_temporaries(self) -> int:
        """Delete leftover temporary files of the disk cache (the bucket has none)."""
        return self.cache.remove_temporaries()

    @property
    def settings(self) -> S3Settings:
        """The endpoint, credentials and retry settings in use (catalog copies use them; never log them)."""
        return self._settings

    def stats(self) -> ChunkStats:
        """Counters since open (see :class:`cas.chunkbackend.ChunkStats`)."""
        c = self.cache
        with self._lock:
            return ChunkStats(cache_hits=c.hits, cache_misses=c.misses, cache_bytes=c.bytes,
                              cache_limit=c.limit, memory_hits=self.memory_hits,
                              memory_misses=self.memory_misses, memory_bytes=self.memory_bytes,
                              memory_limit=self.memory_limit, uploads=self._uploads,
                              upload_bytes=self._upload_bytes, dedup_skips=self._dedup,
                              downloads=self._downloads, download_bytes=self._download_bytes,
                              errors=self._errors)
