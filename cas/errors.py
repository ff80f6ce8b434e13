"""Exceptions raised by the storage engine."""

from __future__ import annotations

import errno as _errno
import os


class FsError(OSError):
    """A filesystem error carrying a POSIX errno (``exc.errno``).

    Raised as ``FsError(errno.ENOENT, "message")``; the 9P layer maps it to
    Rlerror with ``exc.errno``.
    """

    def __init__(self, code: int, message: str | None = None):
        super().__init__(code, message if message is not None else os.strerror(code))


class CorruptChunkError(FsError):
    """A chunk's content does not match its BLAKE3 name (errno EIO)."""

    def __init__(self, chunk_hash: str, message: str | None = None):
        self.chunk_hash = chunk_hash
        super().__init__(_errno.EIO, message or f"corrupt chunk {chunk_hash}")


class StoreFormatError(Exception):
    """The store directory has an unknown or incompatible on-disk format."""


class StoreLockedError(FsError):
    """Another process holds the store's lock file."""

    def __init__(self, path: str):
        super().__init__(_errno.EBUSY, f"store {path} is locked by another process")


def fs_error(code: int, what: str = "") -> FsError:
    """An FsError whose message names the errno, then ``what`` (the errno's text if empty)."""
    return FsError(code, f"{_errno.errorcode.get(code, code)}: {what}" if what else None)
