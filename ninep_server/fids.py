"""Per-connection fid table and what a fid refers to."""

from __future__ import annotations

import errno
from dataclasses import dataclass

from cas import FsError, Tree

from .access import Credentials
from .protocol import NOFID
from .config import ExportConfig

# What a fid is for.
NODE = "node"  # a file, directory or other inode of a view
XATTR_READ = "xattr-read"  # Txattrwalk: a value (or name list) read through Tread
XATTR_WRITE = "xattr-write"  # Txattrcreate: a value written through Twrite, set at Tclunk


LIVE = "live"  # a dataset's live tree
SNAPDIR = "snapdir"  # the synthetic /.snapshots directory of a dataset
SNAPSHOT = "snapshot"  # one snapshot's read-only tree


@dataclass(eq=False, slots=True)
class View:
    """A browsable tree: a live dataset, its /.snapshots directory, or a snapshot."""

    name: str  # dataset name, or "dataset@snapshot"
    volume: Tree  # cas.Volume, cas.SnapshotVolume or the SnapshotDirectory
    export: ExportConfig
    read_only: bool
    qid_base: int = 0  # added to inode numbers so qid.path differs between views
    kind: str = LIVE
    dataset: str = ""
    # Where ``..`` from this view's root leads: /.snapshots for a snapshot,
    # the live root for /.snapshots; None for a live tree (its root clamps).
    outer: View | None = None


@dataclass(slots=True)
class Fid:
    """Server-side state of one fid."""

    view: View
    ino: int
    cred: Credentials
    kind: str = NODE
    # The directory of the same view this fid was walked or created in, and
    # its name there (what Tremove and Trename act on); None at a view's root
    # or after ``..``. Only one level is kept, so a fid costs the same at any
    # depth: ``..`` asks the volume for a directory's current parent.
    parent: int | None = None
    name: bytes = b""
    opened: bool = False
    open_flags: int = 0
    is_dir: bool = False
    # xattr fids
    xattr_name: bytes = b""
    xattr_value: bytes | bytearray = b""
    xattr_size: int = 0
    xattr_flags: int = 0


class FidTable:
    """The fids of one connection, with a configurable limit."""

    def __init__(self, limit: int):
        self.limit = limit
        self._fids: dict[int, Fid] = {}

    def get(self, fid: int) -> Fid:
        try:
            return self._fids[fid]
        except KeyError:
            raise FsError(errno.EBADF, f"unknown fid {fid}") from None

    def add(self, fid: int, state: Fid, *, replace: bool = False) -> None:
        if fid == NOFID:
            raise FsError(errno.EBADF, "NOFID (0xFFFFFFFF) means no fid: it cannot name a new one")
        if fid in self._fids and not replace:
            raise FsError(errno.EBADF, f"fid {fid} is already in use")
        if fid not in self._fids and len(self._fids) >= self.limit:
            raise FsError(errno.EMFILE, f"too many fids (limit {self.limit})")
        self._fids[fid] = state

    def pop(self, fid: int) -> Fid:
        try:
            return self._fids.pop(fid)
        except KeyError:
            raise FsError(errno.EBADF, f"unknown fid {fid}") from None

    def values(self) -> list[Fid]:
        return list(self._fids.values())

    def __contains__(self, fid: int) -> bool:
        return fid in self._fids

    def __len__(self) -> int:
        return len(self._fids)

    def drain(self) -> list[Fid]:
        """Remove and return every fid (session end or Tversion reset)."""
        fids = list(self._fids.values())
        self._fids.clear()
        return fids
