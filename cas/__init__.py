"""cas: the content-addressed storage engine behind ninep (no 9P knowledge).

A :class:`Store` is a directory with a DuckDB catalog and a BLAKE3 chunk
store; each dataset in it is served as a :class:`Volume` with POSIX
semantics, and each snapshot as a read-only :class:`SnapshotVolume`. Both
implement :class:`Tree`, the interface the 9P server calls. See
docs/volume-api.md for the contract and docs/format.md for the store format.
"""

from .chunkbackend import ChunkBackend, ChunkStats
from .chunks import ChunkStore
from .errors import CorruptChunkError, FsError, StoreFormatError, StoreLockedError
from .names import V9FS_MAGIC
from .s3config import S3Settings
from .records import Attr, DiffEntry, DirEntry, SnapshotInfo, StatFs
from .snapview import SnapshotVolume
from .store import Store
from .tree import ReadOnlyTree, Tree
from .volume import XATTR_CREATE, XATTR_REPLACE, Volume

__all__ = [
    "Attr", "ChunkBackend", "ChunkStats", "ChunkStore", "S3Settings", "CorruptChunkError", "DirEntry", "FsError", "StatFs", "Store",
    "StoreFormatError", "StoreLockedError", "Volume", "XATTR_CREATE", "XATTR_REPLACE",
    "DiffEntry", "SnapshotInfo", "SnapshotVolume", "ReadOnlyTree", "Tree", "V9FS_MAGIC",
]
