"""The local chunk backend: content-addressed chunk files named by their BLAKE3-256 hash."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading
from collections.abc import Callable, Iterator

import structlog

from .chunkbackend import ChunkStats
from .chunkbase import MEMORY_CACHE_BYTES, ChunkBase, chunk_hash
from .errors import CorruptChunkError, FsError
from .perms import CHUNK_MODE, DIR_MODE

log = structlog.get_logger(__name__)

__all__ = ["ChunkStore", "chunk_hash", "read_if_resident", "mkdir_private"]


def _load_syncfs():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.syncfs
        fn.argtypes = [ctypes.c_int]
        return fn
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs()
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


def mkdir_private(path: str) -> None:
    """Create directory ``path`` (0700, whatever the umask) unless it exists."""
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        return
    os.chmod(path, DIR_MODE)


def read_if_resident(path: str) -> bytes | None:
    """The content of file ``path`` if it is all in the kernel's page cache, else None.

    Reads with ``RWF_NOWAIT`` (which fails rather than wait for the disk);
    None also when the file is missing or the system lacks ``RWF_NOWAIT``.
    """
    if _RWF_NOWAIT is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
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
    return bytes(buf) if n == size else None


class ChunkStore(ChunkBase):
    """Chunk files under ``root/<2 hex>/<64 hex>``.

    A chunk is written to a temporary file in its directory and renamed into
    place; it is never rewritten. Every read from disk re-hashes the content
    and raises CorruptChunkError on mismatch. An LRU of at most
    ``memory_bytes`` keeps verified chunks in memory (like ZFS's ARC, content
    is verified when it enters memory, not again on every hit); reads and
    read-ahead fill it. Chunks are not fsynced one by one:
    :meth:`make_durable` flushes everything written so far in one batch.

    Pins, the memory cache, the I/O threads that :meth:`put_many` spreads a
    batch over and the read-ahead threads are :class:`ChunkBase`'s. They
    spend nearly all their time in system calls and BLAKE3, which release
    the GIL. Opening a cold chunk file waits for its inode to be read: two
    read-ahead threads overlap those waits.
    """

    def __init__(self, root: str, memory_bytes: int = MEMORY_CACHE_BYTES, chunk_size: int = 128 * 1024,
                 io_threads: int | None = None):
        super().__init__(memory_bytes, io_threads if io_threads is not None
                         else min(4, os.cpu_count() or 1))
        self.root = root
        self.location = f"local:{root}"
        self._expect = chunk_size
        self._unsynced = 0
        mkdir_private(root)
        for i in range(256):
            mkdir_private(os.path.join(root, f"{i:02x}"))

    def path(self, h: str) -> str:
        """The chunk file of ``h`` (local backend only)."""
        return f"{self.root}/{h[:2]}/{h}"

    def stats(self) -> ChunkStats:
        """Counters: the memory LRU's; the remote and disk-cache ones are zero for local chunks."""
        with self._lock:
            return ChunkStats(memory_hits=self.memory_hits, memory_misses=self.memory_misses,
                              memory_bytes=self.memory_bytes, memory_limit=self.memory_limit)

    # -- writing ---------------------------------------------------------
    def put(self, data, h: str | None = None, pin: bool = False) -> str:
        """Store ``data`` and return its hash (deduplicated by content).

        With ``pin=True`` the hash is pinned before the existence check, so a
        concurrent gc cannot delete a chunk that dedup just found.
        """
        if h is None:
            h = chunk_hash(data)
        if pin:
            self.pin(h)
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
        # What was just hashed is as verified as a chunk read back: a read
        # soon after the write (a build, a copy, a checkout) is served from
        # memory, as the page cache serves it for a plain file system.
        self._remember(h, data if type(data) is bytes else bytes(data))
        return h

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
        data = self.cached(h, count=True)
        if data is None:
            data = _read_whole(self.path(h), self._expect)
            self._check(h, data)
            self._remember(h, data)
        return data

    def get_nowait(self, h: str) -> bytes | None:
        """The verified content of ``h`` if no disk access is needed, else None.

        Served from the read cache, or read from the kernel's page cache with
        ``RWF_NOWAIT`` (which fails rather than wait for the disk) and verified
        here: about 40 µs for a 128 KiB chunk, cheap enough for an event loop.
        Raises CorruptChunkError like :meth:`get`; a missing chunk gives None
        (the blocking path reports it).
        """
        data = self.cached(h, count=True)
        if data is not None:
            return data
        data = read_if_resident(self.path(h))
        if data is None:
            return None
        self._check(h, data)
        self._remember(h, data)
        return data

    def _check(self, h: str, data) -> None:
        """Raise CorruptChunkError (and log it) unless ``data`` hashes to ``h``."""
        if chunk_hash(data) != h:
            log.error("corrupt chunk", chunk=h, path=self.path(h), length=len(data))
            raise CorruptChunkError(h)

    def drop_cache(self) -> None:
        """Forget every chunk held in memory: the next reads verify from disk."""
        self._forget_memory()

    def get_into(self, h: str, dest: memoryview) -> int | None:
        """Read chunk ``h`` into ``dest`` and verify it; return its length.

        Returns None (reading nothing useful) if the chunk is longer than
        ``dest``; the caller then uses :meth:`get`. Reads the file whatever
        the memory LRU holds, and keeps a copy of what it verified there.
        """
        fd = os.open(self.path(h), os.O_RDONLY | os.O_CLOEXEC)
        try:
            return self._read_verify(fd, h, dest)
        finally:
            os.close(fd)

    def _read_verify(self, fd: int, h: str, dest: memoryview) -> int | None:
        """Read file ``fd`` into ``dest`` and verify it as chunk ``h``; None if it is longer."""
        cap = len(dest)
        total = 0
        while total < cap:
            n = os.readv(fd, [dest[total:]])
            if not n:
                break
            total += n
        if total == cap and os.read(fd, 1):
            return None
        got = dest[:total]
        self._check(h, got)
        self._remember(h, got.tobytes())
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

    def advise(self, hashes) -> None:
        """Read these chunks ahead into the memory LRU, verified (a read-ahead thread).

        Every file is announced to the kernel (``WILLNEED``) first, so the
        disk reads overlap; then each is read and hashed here, off the
        reader's thread, and kept in memory: the reads that follow are
        copies from memory. Chunks already in memory and missing files are
        skipped; a corrupt one is left out (and logged), so the reader's
        own read reports it.
        """
        fds: list[tuple[str, int]] = []
        try:
            for h in hashes:
                if self.cached(h) is not None:
                    continue
                try:
                    fd = os.open(self.path(h), os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                fds.append((h, fd))
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            if not self.memory_limit:
                return  # no memory to keep them in: the kernel's read-ahead is all there is
            for h, fd in fds:
                data = os.read(fd, self._expect + 1)
                if len(data) > self._expect:
                    continue  # longer than the store's chunks: the reader's own read copes
                if chunk_hash(data) != h:
                    log.error("corrupt chunk", chunk=h, path=self.path(h), length=len(data))
                    continue
                self._remember(h, data)
        finally:
            for _, fd in fds:
                os.close(fd)

    def has(self, h: str) -> bool:
        """Whether chunk ``h`` is stored."""
        return os.path.exists(self.path(h))

    def size_of(self, h: str) -> int:
        """The size of chunk file ``h`` (FileNotFoundError if absent)."""
        return os.stat(self.path(h)).st_size

    def verify(self, h: str) -> bool:
        """Re-hash chunk ``h`` from disk (bypassing the cache); False if absent or bad.

        Raises OSError if the file cannot be read.
        """
        try:
            return chunk_hash(_read_whole(self.path(h), self._expect)) == h
        except FileNotFoundError:
            return False

    # -- deleting --------------------------------------------------------
    def _remove(self, h: str) -> bool:
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
