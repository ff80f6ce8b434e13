"""Content-addressed chunk files named by their BLAKE3-256 hash."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import blake3
import structlog

from .errors import CorruptChunkError, FsError
from .perms import CHUNK_MODE, DIR_MODE

log = structlog.get_logger(__name__)

_HEX = frozenset("0123456789abcdef")


def chunk_hash(data) -> str:
    """Hex BLAKE3-256 of ``data``; uses all cores only for MiB-sized buffers."""
    if len(data) >= 1 << 20:
        return blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest()
    return blake3.blake3(data).hexdigest()


def _load_syncfs():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.syncfs
        fn.argtypes = [ctypes.c_int]
        return fn
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()
# prefetch() skips a chunk it announced less than _ANNOUNCED_FOR seconds ago
# (at most _ANNOUNCED_MAX of them): long enough for a reader's overlapping
# windows, short enough that a later pass over evicted data is read ahead again
_ANNOUNCED_FOR = 1.0
_ANNOUNCED_MAX = 4096
# Opening a cold chunk file waits for its inode to be read: two threads overlap those waits.
_READAHEAD_THREADS = 2
_RWF_NOWAIT = getattr(os, "RWF_NOWAIT", None)


def _read_whole(path: str, expect: int) -> bytes:
    """The content of ``path`` in three system calls when it is at most ``expect`` bytes.

    (``open().read()`` takes seven: it stats the file and reads again for EOF.)
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, expect + 1)
        if len(data) <= expect:
            return data
        parts = [data]
        while more := os.read(fd, 1 << 20):
            parts.append(more)
        return b"".join(parts)
    finally:
        os.close(fd)


def _mkdir_private(path: str) -> None:
    """Create directory ``path`` (0700, whatever the umask) unless it exists."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        return
    os.chmod(path, DIR_MODE)


class ChunkStore:
    """Chunk files under ``root/<2 hex>/<64 hex>``.

    A chunk is written to a temporary file in its directory and renamed into
    place; it is never rewritten. Every read from disk re-hashes the content
    and raises CorruptChunkError on mismatch. A small LRU cache keeps the
    last ``read_cache`` verified chunks in memory (like ZFS's ARC, content
    is verified when it enters memory, not again on every hit); read-ahead
    fills it. Chunks are not fsynced one by one:
    :meth:`make_durable` flushes everything written so far in one batch.

    Pins protect chunks that uncommitted metadata refers to from deletion:
    :meth:`put` pins its hash, :meth:`unpin` releases it, and
    :meth:`delete_if_unpinned` checks the pin under the same lock.

    Helper threads, started on first use and joined by :meth:`close`:
    ``io_threads - 1`` workers that :meth:`put_many` spreads a batch of
    chunks over (the caller's thread does its share), and
    ``_READAHEAD_THREADS`` behind :meth:`prefetch`. They spend nearly all
    their time in system calls and BLAKE3, which release the GIL.
    """

    def __init__(self, root: str, read_cache: int = 128, chunk_size: int = 128 * 1024,
                 io_threads: int | None = None):
        self.root = root
        self._expect = chunk_size
        self._lock = threading.Lock()
        self._pins: dict[str, int] = {}
        self._rcache: OrderedDict[str, bytes] = OrderedDict()
        self._rcache_max = read_cache
        self._io_threads = max(1, io_threads if io_threads is not None
                               else min(4, os.cpu_count() or 1))
        self._workers: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._announced: OrderedDict[str, float] = OrderedDict()
        self._closed = False
        self._unsynced = 0
        self.bytes_written = 0
        self.chunks_written = 0
        _mkdir_private(root)
        for i in range(256):
            _mkdir_private(os.path.join(root, f"{i:02x}"))

    def path(self, h: str) -> str:
        return f"{self.root}/{h[:2]}/{h}"

    # -- writing ---------------------------------------------------------
    def put(self, data, h: str | None = None, pin: bool = False) -> str:
        """Store ``data`` and return its hash (deduplicated by content).

        With ``pin=True`` the hash is pinned before the existence check, so a
        concurrent gc cannot delete a chunk that dedup just found.
        """
        if h is None:
            h = chunk_hash(data)
        if pin:
            with self._lock:
                self._pins[h] = self._pins.get(h, 0) + 1
        final = self.path(h)
        if os.path.exists(final):
            return h
        tmp = f"{self.root}/{h[:2]}/.tmp-{h[:16]}-{os.getpid()}-{threading.get_ident()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, CHUNK_MODE)
            try:
                os.fchmod(fd, CHUNK_MODE)  # whatever the umask (a chunk holds file contents)
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
            finally:
                os.close(fd)
            os.rename(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if pin:
                self.unpin(h)
            raise
        with self._lock:
            self._unsynced += 1
            self.bytes_written += len(data)
            self.chunks_written += 1
        return h

    def put_many(self, contents: Sequence, pin: bool = True) -> list[str]:
        """:meth:`put` each of ``contents``; return their hashes in order.

        A batch is spread over the I/O threads, so hashing and creating
        one chunk file overlaps with the next. On error no chunk of the batch
        stays pinned and the first error is raised.
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

    def _pool(self, attr: str, workers: int, name: str) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise FsError(errno.EIO, "chunk store is closed")
            pool = getattr(self, attr)
            if pool is None:
                pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
                setattr(self, attr, pool)
            return pool

    def close(self) -> None:
        """Stop the helper threads (pending read-ahead is dropped); idempotent."""
        with self._lock:
            self._closed = True
            pools = [p for p in (self._workers, self._reader) if p is not None]
            self._workers = self._reader = None
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)

    def unpin(self, h: str) -> None:
        with self._lock:
            n = self._pins.get(h, 0) - 1
            if n > 0:
                self._pins[h] = n
            else:
                self._pins.pop(h, None)

    def pinned(self, h: str) -> bool:
        with self._lock:
            return h in self._pins

    def make_durable(self) -> None:
        """Make every chunk written so far durable (one syncfs, or sync)."""
        with self._lock:
            if not self._unsynced:
                return
            self._unsynced = 0
        if _syncfs is not None:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                if _syncfs(fd) != 0:
                    e = ctypes.get_errno()
                    raise FsError(e, f"syncfs failed: {os.strerror(e)}")
            finally:
                os.close(fd)
        else:
            os.sync()

    # -- reading ---------------------------------------------------------
    def get(self, h: str) -> bytes:
        """Return the verified content of chunk ``h``.

        Raises CorruptChunkError (EIO) if the content does not hash to ``h``
        and FileNotFoundError if the chunk is absent.
        """
        data = self.cached(h)
        if data is None:
            data = _read_whole(self.path(h), self._expect)
            self._check(h, data)
            self._remember(h, data)
        return data

    def cached(self, h: str) -> bytes | None:
        """The verified content of ``h`` if it is held in memory, else None (no I/O)."""
        with self._lock:
            data = self._rcache.get(h)
            if data is not None:
                self._rcache.move_to_end(h)
            return data

    def get_nowait(self, h: str) -> bytes | None:
        """The verified content of ``h`` if no disk access is needed, else None.

        Served from the read cache, or read from the kernel's page cache with
        ``RWF_NOWAIT`` (which fails rather than wait for the disk) and verified
        here: about 40 µs for a 128 KiB chunk, cheap enough for an event loop.
        Raises CorruptChunkError like :meth:`get`; a missing chunk gives None
        (the blocking path reports it).
        """
        data = self.cached(h)
        if data is not None or _RWF_NOWAIT is None:
            return data
        try:
            fd = os.open(self.path(h), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            size = os.fstat(fd).st_size
            buf = bytearray(size)
            try:
                n = os.preadv(fd, [buf], 0, _RWF_NOWAIT) if size else 0
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EOPNOTSUPP, errno.EINVAL):
                    return None  # not all in the page cache (or no RWF_NOWAIT here)
                raise
        finally:
            os.close(fd)
        if n != size:
            return None
        data = bytes(buf)
        self._check(h, data)
        self._remember(h, data)
        return data

    def _check(self, h: str, data) -> None:
        """Raise CorruptChunkError (and log it) unless ``data`` hashes to ``h``."""
        if chunk_hash(data) != h:
            log.error("corrupt chunk", chunk=h, path=self.path(h), length=len(data))
            raise CorruptChunkError(h)

    def _remember(self, h: str, data: bytes) -> None:
        if self._rcache_max:
            with self._lock:
                self._rcache[h] = data
                if len(self._rcache) > self._rcache_max:
                    self._rcache.popitem(last=False)

    def drop_cache(self) -> None:
        """Forget every chunk held in memory: the next reads verify from disk."""
        with self._lock:
            self._rcache.clear()

    def get_into(self, h: str, dest: memoryview) -> int | None:
        """Read chunk ``h`` into ``dest`` and verify it; return its length.

        Returns None (reading nothing useful) if the chunk is longer than
        ``dest``; the caller then uses :meth:`get`. Bypasses the read cache.
        """
        fd = os.open(self.path(h), os.O_RDONLY | os.O_CLOEXEC)
        try:
            return self._read_verify(fd, h, dest)
        finally:
            os.close(fd)

    def _read_verify(self, fd: int, h: str, dest: memoryview) -> int | None:
        cap = len(dest)
        total = 0
        while total < cap:
            n = os.readv(fd, [dest[total:]])
            if not n:
                break
            total += n
        if total == cap and os.read(fd, 1):
            return None
        self._check(h, dest[:total])
        return total

    def get_many_into(self, items: list[tuple[str, memoryview]]) -> list[int | None]:
        """:meth:`get_into` for several chunks, with their disk reads overlapped.

        Every file is opened and announced to the kernel (``WILLNEED``) before
        the first is read, so a read from disk waits for one round of I/O
        rather than one per chunk. (Splitting the reads over the I/O threads
        measured slower: waking a thread costs about what half of a 1 MiB
        read saves.)
        """
        if len(items) < 2:
            return [self.get_into(h, dest) for h, dest in items]
        fds: list[int] = []
        try:
            for h, _ in items:
                fd = os.open(self.path(h), os.O_RDONLY | os.O_CLOEXEC)
                fds.append(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            return [self._read_verify(fd, h, dest) for fd, (h, dest) in zip(fds, items)]
        finally:
            for fd in fds:
                os.close(fd)

    def prefetch(self, hashes) -> None:
        """Read-ahead: have these chunk files read into the page cache, in the background.

        Returns at once. A read-ahead thread opens each file and asks the
        kernel for it (``WILLNEED``), so even the file-system lookups of a
        cold chunk stay off the caller's thread; the reads that follow find
        the data in memory. Chunks announced recently are skipped, so a
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
        if fresh:
            try:
                self._pool("_reader", _READAHEAD_THREADS, "chunk-readahead").submit(self.advise, fresh)
            except (FsError, RuntimeError):
                pass  # closing: read-ahead is only advice

    def advise(self, hashes) -> None:
        """Ask the kernel to start reading these chunk files into the page cache.

        The kernel reads them asynchronously; the reads that follow find them
        in memory. Missing files are skipped.
        """
        for h in hashes:
            try:
                fd = os.open(self.path(h), os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            finally:
                os.close(fd)

    def has(self, h: str) -> bool:
        return os.path.exists(self.path(h))

    def size_of(self, h: str) -> int:
        return os.stat(self.path(h)).st_size

    def verify(self, h: str) -> bool:
        """Re-hash chunk ``h`` from disk (bypassing the cache)."""
        try:
            return chunk_hash(_read_whole(self.path(h), self._expect)) == h
        except FileNotFoundError:
            return False

    # -- deleting --------------------------------------------------------
    def delete(self, h: str) -> bool:
        """Remove chunk ``h``; returns False if it was absent."""
        with self._lock:
            self._rcache.pop(h, None)
        try:
            os.unlink(self.path(h))
            return True
        except FileNotFoundError:
            return False

    def delete_if_unpinned(self, h: str) -> bool:
        """Remove chunk ``h`` unless pinned; the check and unlink are atomic wrt put(pin=True)."""
        with self._lock:
            if h in self._pins:
                return False
            self._rcache.pop(h, None)
            try:
                os.unlink(self.path(h))
                return True
            except FileNotFoundError:
                return False

    # -- enumeration -----------------------------------------------------
    def entries(self, on_dir: Callable[[], None] | None = None) -> Iterator[tuple[str, os.DirEntry]]:
        """Yield (hash, directory entry) of every stored chunk, temporaries excluded.

        ``on_dir()`` is called after each of the 256 fan-out directories (progress).
        """
        for i in range(256):
            d = os.path.join(self.root, f"{i:02x}")
            try:
                it = os.scandir(d)
            except FileNotFoundError:
                it = None
            if it is not None:
                with it:
                    for e in it:
                        n = e.name
                        if len(n) == 64 and not n.startswith("."):
                            yield n, e
            if on_dir:
                on_dir()

    def sizes(self, on_dir: Callable[[], None] | None = None) -> dict[str, int]:
        """Every stored chunk with its size in bytes (chunks deleted meanwhile are skipped)."""
        out: dict[str, int] = {}
        for h, e in self.entries(on_dir):
            try:
                out[h] = e.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                pass
        return out

    def __iter__(self) -> Iterator[str]:
        """Yield the hash of every stored chunk (temporary files excluded)."""
        for h, _ in self.entries():
            yield h

    def usage(self) -> tuple[int, int]:
        """Return (number of chunks, total bytes) by scanning the store."""
        sizes = self.sizes()
        return len(sizes), sum(sizes.values())

    def remove_temporaries(self) -> int:
        """Delete leftover temporary files from interrupted writes."""
        n = 0
        for i in range(256):
            d = os.path.join(self.root, f"{i:02x}")
            with os.scandir(d) as it:
                for e in it:
                    if e.name.startswith(".tmp-"):
                        try:
                            os.unlink(e.path)
                            n += 1
                        except OSError as exc:
                            if exc.errno != errno.ENOENT:
                                raise
        return n
