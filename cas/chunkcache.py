"""The local on-disk cache of a remote chunk backend: ``STORE/chunk-cache/``.

Layout like the local chunk directory (``chunk-cache/<2 hex>/<64 hex>``),
owner-only whatever the umask (directories 0700, files 0600: cached chunks
hold file contents). The cache holds at most ``limit`` bytes; the least
recently used chunks are evicted first. The LRU order is kept in memory and
rebuilt from the files' modification times when the cache is opened.

Every read re-hashes the file: a cache file whose content does not match
its name is deleted and reported as a miss, so the caller fetches the chunk
again from the backing store. ``hits`` and ``misses`` count :meth:`get`
lookups (the hit-ratio metric).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import structlog

from .chunkbase import chunk_hash
from .chunks import mkdir_private, read_if_resident
from .perms import FILE_MODE

log = structlog.get_logger(__name__)


def _is_hash(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


class ChunkCache:
    """A size-bounded LRU of verified chunk files under ``root`` (see the module docstring)."""

    def __init__(self, root: str, limit: int):
        self.root = root
        self.limit = max(0, limit)
        self._lock = threading.Lock()
        self._index: OrderedDict[str, int] = OrderedDict()  # hash -> size, oldest first
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        mkdir_private(root)
        for i in range(256):
            mkdir_private(os.path.join(root, f"{i:02x}"))
        self._rebuild()

    def _path(self, h: str) -> str:
        return f"{self.root}/{h[:2]}/{h}"

    def _rebuild(self) -> None:
        """Index the files present, oldest modification first; drop temporaries and strays."""
        found = []
        for i in range(256):
            with os.scandir(os.path.join(self.root, f"{i:02x}")) as it:
                for e in it:
                    if not _is_hash(e.name):
                        if e.name.startswith(".tmp-"):
                            _unlink(e.path)
                        continue
                    try:
                        st = e.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    found.append((st.st_mtime_ns, e.name, st.st_size))
        found.sort()
        for _, h, size in found:
            self._index[h] = size
            self._bytes += size
        self._evict()

    @property
    def bytes(self) -> int:
        """Bytes of chunks the cache holds now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, h: str) -> bool:
        with self._lock:
            return h in self._index

    def order(self) -> list[str]:
        """The cached hashes, least recently used first."""
        with self._lock:
            return list(self._index)

    def get(self, h: str, count: bool = True) -> bytes | None:
        """The verified content of ``h`` from the cache (a hit), else None (a miss).

        ``count=False`` leaves the hit and miss counters alone (read-ahead).
        """
        with self._lock:
            known = h in self._index
            if known:
                self._index.move_to_end(h)
            elif count:
                self.misses += 1
        if not known:
            return None
        try:
            with open(self._path(h), "rb", buffering=0) as f:
                data = f.read()
        except FileNotFoundError:
            self._drop(h)
            if count:
                with self._lock:
                    self.misses += 1
            return None
        return self._checked(h, data, count)

    def get_nowait(self, h: str) -> bytes | None:
        """Like :meth:`get` when the file is in the kernel's page cache; None (not counted) otherwise."""
        with self._lock:
            if h not in self._index:
                return None
        data = read_if_resident(self._path(h))
        if data is None:
            return None
        with self._lock:
            if h in self._index:
                self._index.move_to_end(h)
        return self._checked(h, data, True)

    def _checked(self, h: str, data: bytes, count: bool) -> bytes | None:
        if chunk_hash(data) != h:
            log.warning("corrupt chunk cache file dropped; fetching the chunk again",
                        chunk=h, path=self._path(h), length=len(data))
            self._drop(h)
            if count:
                with self._lock:
                    self.misses += 1
            return None
        if count:
            with self._lock:
                self.hits += 1
        return data

    def put(self, h: str, data) -> None:
        """Keep verified chunk ``h`` (evicting the least recently used beyond the bound)."""
        n = len(data)
        if n > self.limit:
            return
        with self._lock:
            if h in self._index:
                self._index.move_to_end(h)
                return
        path = self._path(h)
        tmp = f"{self.root}/{h[:2]}/.tmp-{h[:16]}-{os.getpid()}-{threading.get_ident()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
            try:
                os.fchmod(fd, FILE_MODE)  # whatever the umask
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.rename(tmp, path)
        except OSError as exc:
            _unlink(tmp)
            log.warning("chunk cache write failed", chunk=h, error=str(exc))
            return
        with self._lock:
            if h not in self._index:
                self._index[h] = n
                self._bytes += n
        self._evict()

    def discard(self, h: str) -> None:
        """Remove ``h`` from the cache if present."""
        self._drop(h)

    def clear(self) -> None:
        """Empty the cache."""
        with self._lock:
            gone = list(self._index)
            self._index.clear()
            self._bytes = 0
        for h in gone:
            _unlink(self._path(h))

    def remove_temporaries(self) -> int:
        """Delete leftover temporary files of interrupted cache writes."""
        n = 0
        for i in range(256):
            with os.scandir(os.path.join(self.root, f"{i:02x}")) as it:
                for e in it:
                    if e.name.startswith(".tmp-") and _unlink(e.path):
                        n += 1
        return n

    def _drop(self, h: str) -> None:
        with self._lock:
            size = self._index.pop(h, None)
            if size is not None:
                self._bytes -= size
        _unlink(self._path(h))

    def _evict(self) -> None:
        gone = []
        with self._lock:
            while self._bytes > self.limit and self._index:
                h, size = self._index.popitem(last=False)
                self._bytes -= size
                gone.append(h)
        for h in gone:
            _unlink(self._path(h))


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
