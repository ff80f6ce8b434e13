"""Choosing and opening a store's chunk backend from its ``chunks`` location.

A store records where its chunks live in the catalog's meta table (key
``chunks``) when it is created: absent for the local chunk directory (so
stores made before object storage existed read as local), or the
``s3://BUCKET/PREFIX`` URL. :func:`open_chunks` opens that backend.
"""

from __future__ import annotations

import os

from .chunkbackend import ChunkBackend
from .chunkbase import MEMORY_CACHE_BYTES
from .chunks import ChunkStore
from .errors import StoreFormatError
from .s3config import S3Settings

LOCAL = "local"
#: chunk size of a new store: local, and on object storage (measured: docs/format.md)
LOCAL_CHUNK_SIZE = 128 * 1024
S3_CHUNK_SIZE = 1 << 20
#: the default bound of an S3 store's local chunk cache
CHUNK_CACHE_BYTES = 1 << 30
#: catalog meta key naming the chunk location
META_KEY = "chunks"


def normalize(location: str | None) -> str | None:
    """``None`` stays None (whatever the store has); "local" or a canonical ``s3://`` URL.

    Raises StoreFormatError for anything else.
    """
    if location is None or location == LOCAL:
        return location
    if location.startswith("s3://"):
        from .s3chunks import canonical_url
        try:
            return canonical_url(location)
        except ValueError as exc:
            raise StoreFormatError(str(exc)) from None
    raise StoreFormatError(f"chunk location {location!r}: expected 'local' or s3://BUCKET/PREFIX")


def default_chunk_size(location: str | None) -> int:
    """The chunk size of a new store whose chunks go to ``location``."""
    return S3_CHUNK_SIZE if is_remote(location) else LOCAL_CHUNK_SIZE


def is_remote(location: str | None) -> bool:
    """Whether ``location`` is object storage."""
    return bool(location) and location != LOCAL


def recorded(meta: dict) -> str:
    """The chunk location a catalog's meta records ("local" when absent)."""
    return meta.get(META_KEY) or LOCAL


def check_matches(path: str, have: str, want: str | None) -> None:
    """StoreFormatError naming both when a store opened with ``want`` records ``have``."""
    if want is not None and want != have:
        raise StoreFormatError(
            f"{path}: the store's chunks are in {_describe(have)}, but it was opened with "
            f"chunks={_describe(want)}; open it without a chunks option or with "
            f"chunks={have!r}")


def _describe(location: str) -> str:
    return "the local chunk directory (local)" if location == LOCAL else location


def open_chunks(store_path: str, location: str, *, chunk_size: int, create: bool,
                s3: S3Settings | None = None, cache_bytes: int | None = None,
                memory_bytes: int | None = None) -> ChunkBackend:
    """Open the backend of ``location`` for the store at ``store_path``.

    Local chunks live in ``STORE/chunks``; an S3 store's cache in
    ``STORE/chunk-cache``. ``create`` claims an S3 prefix for a new store.
    ``memory_bytes`` bounds the memory LRU of verified chunks (None: the
    backend's default, 256 MiB for local chunks).
    """
    if not is_remote(location):
        return ChunkStore(os.path.join(store_path, "chunks"), chunk_size=chunk_size,
                          memory_bytes=MEMORY_CACHE_BYTES if memory_bytes is None else memory_bytes)
    from .s3chunks import S3Chunks
    return S3Chunks(location, s3 if s3 is not None else S3Settings.resolve(),
                    os.path.join(store_path, "chunk-cache"),
                    CHUNK_CACHE_BYTES if cache_bytes is None else cache_bytes,
                    chunk_size=chunk_size, create=create, memory_bytes=memory_bytes)
