"""What the storage engine needs of a chunk store: the ``ChunkBackend`` protocol.

Two implementations: :class:`cas.chunks.ChunkStore` (chunk files in the
store directory) and :class:`cas.s3chunks.S3Chunks` (objects in an
S3-compatible bucket, with a local on-disk cache). Everything in ``cas``
outside those two modules (commits, reads, gc, fsck, scrub, stats, import
and export) reaches chunks only through these methods.

Chunks are immutable, named by the hex BLAKE3-256 of their content, and
every method that returns content has verified it against its name
(:class:`cas.errors.CorruptChunkError`, errno EIO, otherwise). A missing
chunk is ``FileNotFoundError`` (readers re-plan: a concurrent gc may have
removed a chunk an overwrite dropped); a store that cannot be reached is
``FsError(EIO)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ChunkStats:
    """Counters of a chunk backend since it was opened (remote fields are 0 for local chunks).

    ``cache_*`` describe the local on-disk cache of a remote backend: reads it
    served (hits), reads that had to download (misses), its size and bound.
    ``dedup_skips`` counts uploads that found the object already present;
    ``errors`` counts remote requests that failed after their retries.
    ``memory_*`` describe the in-memory LRU of verified chunks every backend
    keeps: lookups of the read path it served (hits) or not (misses), its
    size and bound.
    """

    cache_hits: int = 0
    cache_misses: int = 0
    cache_bytes: int = 0
    cache_limit: int = 0
    memory_hits: int = 0
    memory_misses: int = 0
    memory_bytes: int = 0
    memory_limit: int = 0
    uploads: int = 0
    upload_bytes: int = 0
    dedup_skips: int = 0
    downloads: int = 0
    download_bytes: int = 0
    errors: int = 0

    @property
    def cache_hit_ratio(self) -> float:
        """hits / (hits + misses), 0.0 before any read."""
        n = self.cache_hits + self.cache_misses
        return self.cache_hits / n if n else 0.0

    @property
    def memory_hit_ratio(self) -> float:
        """Memory LRU hits / (hits + misses), 0.0 before any read."""
        n = self.memory_hits + self.memory_misses
        return self.memory_hits / n if n else 0.0


@runtime_checkable
class ChunkBackend(Protocol):
    """A content-addressed chunk store (see the module docstring)."""

    #: where the chunks live: ``"local:/path/chunks"`` or ``"s3://bucket/prefix"``
    location: str
    #: whether other stores may reference these chunks (cas/pool.py): if so, a
    #: dropped chunk is left to gc, which knows every store's references
    shared: bool
    #: chunks and bytes this process stored (deduplicated ones not counted)
    chunks_written: int
    bytes_written: int

    # -- writing
    def put(self, data, h: str | None = None, pin: bool = False) -> str:
        """Store ``data`` unless present; return its hash. ``pin`` pins before the existence check."""

    def put_many(self, contents: Sequence, pin: bool = True) -> list[str]:
        """:meth:`put` a batch (in parallel); on error nothing of it stays pinned."""

    def make_durable(self) -> None:
        """Make every chunk stored so far durable (a no-op where put is already durable)."""

    # -- pins (DESIGN §6: the in-flight set gc must not delete)
    def unpin(self, h: str) -> None:
        """Release one pin of ``h``."""

    def pinned(self, h: str) -> bool:
        """Whether ``h`` is pinned."""

    # -- reading
    def get(self, h: str) -> bytes:
        """The verified content of ``h``."""

    def cached(self, h: str) -> bytes | None:
        """The verified content of ``h`` if held in memory, else None (no I/O)."""

    def get_nowait(self, h: str) -> bytes | None:
        """The verified content of ``h`` if it needs no waiting for I/O, else None."""

    def get_into(self, h: str, dest: memoryview) -> int | None:
        """Read and verify ``h`` into ``dest``; its length, or None if longer than ``dest``."""

    def get_many_into(self, items: list[tuple[str, memoryview]]) -> list[int | None]:
        """:meth:`get_into` for several chunks, their I/O overlapped."""

    def prefetch(self, hashes) -> None:
        """Read ahead in the background; returns at once."""

    def wait_readahead(self, timeout: float | None = None) -> bool:
        """Wait for the read-ahead submitted so far; False if ``timeout`` passed first."""

    def drop_cache(self) -> None:
        """Forget cached chunks: the next reads fetch from the backing store and verify."""

    # -- enumeration and checking (gc, fsck, scrub, stats)
    def has(self, h: str) -> bool:
        """Whether chunk ``h`` is stored."""

    def size_of(self, h: str) -> int:
        """The stored size of ``h`` (FileNotFoundError if absent)."""

    def verify(self, h: str) -> bool:
        """Re-read ``h`` from the backing store (no cache) and re-hash it; False if absent or bad."""

    def sizes(self, on_dir: Callable[[], None] | None = None) -> dict[str, int]:
        """Every stored chunk and its size; ``on_dir()`` is called 256 times (progress)."""

    def __iter__(self) -> Iterator[str]:
        """Every stored chunk's hash."""

    def usage(self) -> tuple[int, int]:
        """(number of chunks, total bytes)."""

    # -- deleting
    def delete(self, h: str) -> bool:
        """Remove ``h``; False if it was absent."""

    def delete_if_unpinned(self, h: str) -> bool:
        """Remove ``h`` unless pinned, atomically with respect to ``put(pin=True)``."""

    # -- housekeeping
    def remove_temporaries(self) -> int:
        """Delete leftovers of interrupted writes; returns how many."""

    def stats(self) -> ChunkStats:
        """Counters (see :class:`ChunkStats`)."""

    def close(self) -> None:
        """Stop helper threads (joined); idempotent."""
