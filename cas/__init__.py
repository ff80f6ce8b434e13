"""cas: the content-addressed storage engine behind ninep (no 9P knowledge).

A :class:`Store` is a directory with a DuckDB catalog and a BLAKE3 chunk
store; each dataset in it is served as a :class:`Volume` with POSIX semantics.
See docs/volume-api.md for the contract the 9P server relies on.
"""

from .chunks import ChunkStore
from .errors import CorruptChunkError, FsError, StoreFormatError, StoreLockedError
from .records import Attr, DiffEntry, DirEntry, SnapshotInfo, StatFs
from .snapview import SnapshotVolume
from .store import Store
from .tree import ReadOnlyTree, Tree
from .volume import XATTR_CREATE, XATTR_REPLACE, Volume

__all__ = [
    "Attr", "ChunkStore", "CorruptChunkError", "DirEntry", "FsError", "StatFs", "Store",
    "StoreFormatError", "StoreLockedError", "Volume", "XATTR_CREATE", "XATTR_REPLACE",
    "DiffEntry", "SnapshotInfo", "SnapshotVolume",
]
