"""What every chunk backend shares: pins, the in-memory LRU of verified chunks,
spreading a batch over I/O threads, and read-ahead bookkeeping.

The memory LRU is bounded in bytes. A chunk enters it only after its content
was hashed and matched its name, so a hit needs no second BLAKE3 pass (like
ZFS's ARC, which keeps checksummed blocks); every read from a file or an
object is verified on the way in. ``memory_hits`` and ``memory_misses``
count the lookups of the read path (:meth:`ChunkBase.cached` with
``count=True``), the hit-ratio metric.

:class:`ChunkBase` is the base class of :class:`cas.chunks.ChunkStore` and
:class:`cas.s3chunks.S3Chunks`. A subclass provides :meth:`put`,
:meth:`_remove` (the actual deletion) and :meth:`advise` (the read-ahead
of a list of hashes, run on a read-ahead thread).
"""

from __future__ import annotations

import errno
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

import blake3

from .errors import FsError

#: default bound of the memory LRU of verified chunks (Store.open's chunk_memory_bytes)
MEMORY_CACHE_BYTES = 256 << 20

# prefetch() skips a chunk it announced less than _ANNOUNCED_FOR seconds ago
# (at most _ANNOUNCED_MAX of them): long enough for a reader's overlapping
# windows, short enough that a later pass over evicted data is read ahead again
_ANNOUNCED_FOR = 1.0
_ANNOUNCED_MAX = 4096


def chunk_hash(data) -> str:
    """Hex BLAKE3-256 of ``data``; uses all cores only for MiB-sized buffers."""
    if len(data) >= 1 << 20:
        return blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest()
    return blake3.blake3(data).hexdigest()


class ChunkBase:
    """Pins, memory LRU, I/O thread pools and read-ahead bookkeeping of a chunk backend.

    Pins protect chunks that uncommitted metadata refers to from deletion
    (DESIGN §6): ``put(pin=True)`` pins before its existence check,
    :meth:`delete_if_unpinned` checks the pin and marks the chunk as being
    deleted under one lock, and a pin taken while a deletion runs waits for
    it to finish (so the existence check that follows sees the chunk gone
    and stores it again). The deletion itself runs outside the lock, which
    matters when it is a network request.

    Helper threads, started on first use and joined by :meth:`close`:
    ``io_threads - 1`` workers for :meth:`_spread` (the caller's thread does
    its share) and ``readahead_threads`` behind :meth:`prefetch`.
    """

    #: read-ahead threads, and how many hashes one read-ahead job takes (0: all)
    readahead_threads = 2
    readahead_batch = 0

    #: whether other stores may reference these chunks (a pool): then only gc deletes
    shared = False

    def __init__(self, memory_bytes: int, io_threads: int):
        self._lock = threading.Lock()
        self._unpinned = threading.Condition(self._lock)
        self._pins: dict[str, int] = {}
        self._deleting: set[str] = set()
        self._rcache: OrderedDict[str, bytes] = OrderedDict()
        self._rcache_bytes = 0
        #: bound of the memory LRU of verified chunks, in bytes (0: none kept)
        self.memory_limit = max(0, memory_bytes)
        self.memory_hits = 0
        self.memory_misses = 0
        self._io_threads = max(1, io_threads)
        self._workers: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._announced: OrderedDict[str, float] = OrderedDict()
        self._ahead: set[Future] = set()
        self._closed = False
        self.bytes_written = 0
        self.chunks_written = 0

    # -- subclass hooks
    def put(self, data, h: str | None = None, pin: bool = False) -> str:
        raise NotImplementedError

    def _remove(self, h: str) -> bool:
        """Delete ``h`` from the backing store; False if it was absent."""
        raise NotImplementedError

    def advise(self, hashes) -> None:
        """Read these chunks ahead (runs on a read-ahead thread)."""
        raise NotImplementedError

    # -- pins
    def pin(self, h: str) -> None:
        """Pin ``h``; waits while a deletion of ``h`` is under way."""
        with self._lock:
            while h in self._deleting:
                self._unpinned.wait()
            self._pins[h] = self._pins.get(h, 0) + 1

    def unpin(self, h: str) -> None:
        """Release one pin of ``h``."""
        with self._lock:
            n = self._pins.get(h, 0) - 1
            if n > 0:
                self._pins[h] = n
            else:
                self._pins.pop(h, None)

    def pinned(self, h: str) -> bool:
        """Whether ``h`` is pinned."""
        with self._lock:
            return h in self._pins

    # -- deleting
    def delete(self, h: str) -> bool:
        """Remove chunk ``h``; returns False if it was absent."""
        with self._lock:
            self._drop_memory(h)
        return self._remove(h)

    def delete_if_unpinned(self, h: str) -> bool:
        """Remove chunk ``h`` unless pinned; atomic with respect to ``put(pin=True)``."""
        with self._lock:
            if h in self._pins or h in self._deleting:
                return False
            self._deleting.add(h)
            self._drop_memory(h)
        try:
            return self._remove(h)
        finally:
            with self._lock:
                self._deleting.discard(h)
                self._unpinned.notify_all()

    # -- the memory LRU of verified chunks
    def cached(self, h: str, count: bool = False) -> bytes | None:
        """The verified content of ``h`` if it is held in memory, else None (no I/O).

        ``count=True`` counts the lookup as a memory hit or miss: the read
        path's lookups do, read-ahead's and housekeeping's do not.
        """
        with self._lock:
            data = self._rcache.get(h)
            if data is not None:
                self._rcache.move_to_end(h)
                if count:
                    self.memory_hits += 1
            elif count:
                self.memory_misses += 1
            return data

    @property
    def memory_bytes(self) -> int:
        """Bytes of verified chunks held in memory now."""
        return self._rcache_bytes

    def _remember(self, h: str, data: bytes) -> None:
        """Keep verified ``data`` of ``h`` in memory, evicting the least recently used beyond the bound."""
        n = len(data)
        if n > self.memory_limit:
            return
        with self._lock:
            old = self._rcache.get(h)
            if old is not None:
                self._rcache.move_to_end(h)
                return
            self._rcache[h] = data
            self._rcache_bytes += n
            while self._rcache_bytes > self.memory_limit:
                _, gone = self._rcache.popitem(last=False)
                self._rcache_bytes -= len(gone)

    def _drop_memory(self, h: str) -> None:
        """Forget ``h`` (the caller holds the lock)."""
        data = self._rcache.pop(h, None)
        if data is not None:
            self._rcache_bytes -= len(data)

    def _forget_memory(self) -> None:
        with self._lock:
            self._rcache.clear()
            self._rcache_bytes = 0

    # -- batches over the I/O threads
    def put_many(self, contents: Sequence, pin: bool = True) -> list[str]:
        """:meth:`put` each of ``contents``; return their hashes in order.

        A batch is spread over the I/O threads, so hashing and storing one
        chunk overlaps with the next. On error no chunk of the batch stays
        pinned and the first error is raised.
        """
        parts = self._spread(lambda part: self._put_all(part, pin), contents)
        failed = [r for r in parts if isinstance(r, BaseException)]
        if failed:
            if pin:
                for part in parts:
                    if not isinstance(part, BaseException):
                        for h in part:
                            self.unpin(h)
            raise failed[0]
        return [h for part in parts for h in part]

    def _put_all(self, contents: Sequence, pin: bool) -> list[str]:
        """Put ``contents`` one after the other; unpin them all if one fails."""
        out: list[str] = []
        try:
            for data in contents:
                out.append(self.put(data, pin=pin))
        except BaseException:
            if pin:
                for h in out:
                    self.unpin(h)
            raise
        return out

    def _spread(self, fn: Callable[[Sequence], list], items: Sequence) -> list:
        """``fn`` over consecutive parts of ``items``, one part per I/O thread.

        The caller's thread does the first part. Every part runs to its end;
        returns each part's result in order, or the exception it raised.
        """
        k = min(len(items), self._io_threads)
        if k < 2:
            parts = [items]
        else:
            step = -(-len(items) // k)
            parts = [items[i:i + step] for i in range(0, len(items), step)]
        futures = []
        if len(parts) > 1:
            pool = self._pool("_workers", self._io_threads - 1, "chunk-io")
            futures = [pool.submit(fn, p) for p in parts[1:]]
        results: list = []
        try:
            results.append(fn(parts[0]))
        except BaseException as exc:
            results.append(exc)
        for f in futures:
            try:
                results.append(f.result())
            except BaseException as exc:
                results.append(exc)
        return results

    def _pool(self, attr: str, workers: int, name: str) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise FsError(errno.EIO, "chunk store is closed")
            pool = getattr(self, attr)
            if pool is None:
                pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
                setattr(self, attr, pool)
            return pool

    # -- read-ahead
    def prefetch(self, hashes) -> None:
        """Read-ahead: have :meth:`advise` fetch these chunks in the background.

        Returns at once. Chunks announced recently are skipped, so a
        sequential reader may pass an overlapping window on every read.
        """
        now = time.monotonic()
        with self._lock:
            if self._closed:
                return
            seen = self._announced
            while seen and (len(seen) > _ANNOUNCED_MAX
                            or next(iter(seen.values())) < now - _ANNOUNCED_FOR):
                seen.popitem(last=False)
            fresh = [h for h in hashes if h not in seen]
            for h in fresh:
                seen[h] = now
        if not fresh:
            return
        step = self.readahead_batch or len(fresh)
        try:
            pool = self._pool("_reader", self.readahead_threads, "chunk-readahead")
            for i in range(0, len(fresh), step):
                job = pool.submit(self.advise, fresh[i:i + step])
                with self._lock:
                    self._ahead.add(job)
                job.add_done_callback(self._ahead_done)
        except (FsError, RuntimeError):
            pass  # closing: read-ahead is only advice

    def _ahead_done(self, job: Future) -> None:
        with self._lock:
            self._ahead.discard(job)

    def wait_readahead(self, timeout: float | None = None) -> bool:
        """Wait until the read-ahead submitted so far is done; False if ``timeout`` passed first."""
        with self._lock:
            jobs = set(self._ahead)
        return not wait(jobs, timeout=timeout).not_done

    def close(self) -> None:
        """Stop the helper threads (pending read-ahead is dropped, running work joined); idempotent."""
        with self._lock:
            self._closed = True
            pools = [p for p in (self._workers, self._reader) if p is not None]
            self._workers = self._reader = None
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
