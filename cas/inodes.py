"""InodeCache: one tree's bounded cache of Inode records, loaded on demand.

A miss loads one inode, one directory entry, or a whole directory (its
entries and their inodes) through a :class:`Loads` loader: the live
catalog, or a snapshot's rows (``cas.snapview.SnapshotLoads``). A
directory's children, a file's extents and an inode's xattrs are loaded on
first use. Eviction (CLOCK: oldest first, one second chance for a record
used since the last pass) drops clean, unopened records, each charged its
measured size; dirty, open, buffered or written-to inodes and the root
stay. A live tree queues eviction for its lock's next outermost
acquisition, so no operation loses a record it is changing. Nothing here
locks: the tree's owner holds its lock around every call.

Behind the records sits a second, compact tier: the catalog rows of clean
inodes, marshalled (about 250 bytes each in memory, against about 1.3 KB for a record
with its extents and its parent's entry), a clean directory's row with its
listing (about 30 bytes more per entry). An evicted clean record leaves its
row there, and a directory listing's children enter there, so a metadata
cache of a given size answers several times more inodes, and names, without
a catalog query (one point query costs ~0.5 ms); a hit rebuilds the record
in under a microsecond. A row is only ever a copy of what the catalog
holds: every change goes through a record, which takes the row out first.

A lookup in a directory whose listing is not loaded asks for that one entry
(a point query) the first few times (:func:`probes_before_load`), and loads
the whole listing after that: opening one file by path in each of many large
directories then costs a few point queries, not a load of every directory
(ski rental: a directory looked up often pays for its listing once).
"""

from __future__ import annotations

import errno
import marshal
import stat
from itertools import islice
from typing import TYPE_CHECKING, Callable, Protocol

from .errors import fs_error
from .records import Inode

if TYPE_CHECKING:
    from .commit import GroupCommit

_IFMT = stat.S_IFMT(0o177777)
_S_IFDIR = stat.S_IFDIR
_S_IFREG = stat.S_IFREG

#: lookups answered by a point query in a small directory before its listing is loaded
PROBES_BEFORE_LOAD = 2
#: a bigger directory gets one more point query per this many entries it may hold ...
PROBE_ENTRIES = 128
#: ... up to this many
MAX_PROBES = 32
#: bytes a record costs: ~1.3 KB of RSS measured for a file's record, its extents and
#: its parent's entry, plus slack ...
INODE_COST = 1536
#: ... and per entry of a directory's loaded listing (206 measured)
ENTRY_COST = 208
#: bytes a compact row costs besides its marshalled bytes: the key's int, the bytes
#: object's header, the dict's slot (116-137 measured in RSS for 200,000 to 1,000,000 rows)
ROW_OVERHEAD = 128


def probes_before_load(node: Inode) -> int:
    """Point queries worth making in directory ``node`` before loading its listing.

    Ski rental: rent (a point query: one catalog query, ~0.6 ms) until renting
    has cost what buying does (a load: two queries and a record per entry, ~4 ms
    of queries for 1,000 entries, and every record built evicts another).
    ``next_seq`` counts the entries ever made in the directory, a bound on what
    a load reads.
    """
    return min(MAX_PROBES, PROBES_BEFORE_LOAD + node.next_seq // PROBE_ENTRIES)


class Loads(Protocol):
    """The cache-miss queries, as the live catalog or a snapshot answers them."""

    def load_inode(self, ino: int) -> tuple | None:
        """The inode row of ``ino`` (columns of ``catalog.INODE_COLS``), or None."""

    def load_dir(self, parent: int) -> tuple[list[tuple], list[tuple]]:
        """A directory's entries (name, child, seq, type) and its children's inode rows."""

    def load_entry(self, parent: int, name: bytes) -> tuple | None:
        """Directory ``parent``'s entry ``name``: (child, seq, type), or None."""

    def load_extents(self, ino: int) -> list[tuple]:
        """A file's extents: (idx, hash, length)."""

    def load_xattrs(self, ino: int) -> list[tuple]:
        """An inode's xattrs: (name, value)."""


class InodeCache:
    """The Inode records of dataset ``ds`` in memory, bounded by ``commits.record_bytes``,
    and the rows of clean inodes, bounded by ``commits.row_bytes``."""

    def __init__(self, commits: GroupCommit, ds: int, root: int, loads: Loads,
                 defer: Callable[[Callable[[], None]], None] | None = None):
        self.commits = commits
        #: where eviction past the bound is queued (a tree that changes its records passes
        #: its lock's ``defer``: evicting inside an operation could drop a record it is
        #: changing); None evicts at once
        self.defer = defer
        self._evict_queued = False
        self.ds = ds
        self.root = root
        self.loads = loads
        self.inodes: dict[int, Inode] = {}
        self.records_size = 0               # the records' ``cost``, summed
        #: marshalled catalog rows of clean inodes without a record (oldest first): a
        #: row, or (row, listing) for a directory whose listing was loaded
        self.rows: dict[int, bytes] = {}
        self.rows_size = 0                  # their bytes, ROW_OVERHEAD each included
        #: freed inodes whose rows may still be in the catalog: a miss is ENOENT
        self.gone: set[int] = set()
        self.hits = 0                       # lookups served from memory (a record or a row)
        self.misses = 0                     # ... and loaded through ``loads``

    @staticmethod
    def from_row(row: tuple) -> Inode:
        """An Inode record of a catalog row (it has a row, so it is persisted)."""
        n = Inode(*row)
        n.persisted = True
        return n

    def get(self, ino: int) -> Inode:
        """The inode ``ino`` of this dataset, loading it on a miss (ENOENT)."""
        node = self.inodes.get(ino)
        if node is not None:
            self.hits += 1
            node.ref = True
            return node
        packed = self._pop_row(ino)
        listing = None
        if packed is not None:
            self.hits += 1
            row = marshal.loads(packed)
            if len(row) == 2:
                row, listing = row
        else:
            self.misses += 1
            if ino in self.gone:
                raise fs_error(errno.ENOENT, f"inode {ino}")
            row = self.loads.load_inode(ino)
            if row is None or row[1] != self.ds or row[5] <= 0:
                raise fs_error(errno.ENOENT, f"inode {ino}")
        node = self.from_row(row)
        node.children = listing
        self.add(node)
        return node

    def add(self, node: Inode) -> None:
        """Cache ``node`` (most recently used), evicting past the bound."""
        old = self.inodes.get(node.ino)
        if old is not None:
            self.records_size -= old.cost
        self.inodes[node.ino] = node
        node.cost = INODE_COST + (ENTRY_COST * len(node.children) if node.children else 0)
        self.records_size += node.cost
        self._pop_row(node.ino)
        self._over()

    def _over(self) -> None:
        """Evict, or queue an eviction, if the records are past their bound."""
        if self.records_size > self.commits.record_bytes and not self._evict_queued:
            if self.defer is None:
                self.evict()
            else:
                self._evict_queued = True
                self.defer(self._queued_evict)

    def _queued_evict(self) -> None:
        self._evict_queued = False
        if self.records_size > self.commits.record_bytes:
            self.evict()

    def discard(self, ino: int) -> Inode | None:
        """Forget ``ino``'s record and row (it is freed, or about to be reloaded); returns the record."""
        self._pop_row(ino)
        node = self.inodes.pop(ino, None)
        if node is not None:
            self.records_size -= node.cost
        return node

    def _pop_row(self, ino: int) -> bytes | None:
        packed = self.rows.pop(ino, None)
        if packed is not None:
            self.rows_size -= len(packed) + ROW_OVERHEAD
        return packed

    def _put_row(self, ino: int, packed: bytes) -> None:
        """Keep ``packed`` as ``ino``'s row (it has none), dropping the oldest rows past the bound."""
        self.rows[ino] = packed
        self.rows_size += len(packed) + ROW_OVERHEAD
        if self.rows_size > self.commits.row_bytes:
            self._trim_rows()

    def _keep_row(self, node: Inode) -> None:
        """Keep the row (and a directory's listing) of clean, evicted ``node``."""
        if not node.persisted or node.failed or node.nlink <= 0 or node.ds != self.ds:
            return
        row = node.row()
        self._put_row(node.ino, marshal.dumps(row if node.children is None else (row, node.children)))

    def _trim_rows(self) -> None:
        """Drop the oldest rows until 1/32 of the bound under it."""
        rows = self.rows
        goal = self.commits.row_bytes - self.commits.row_bytes // 32
        size = self.rows_size
        drop = []
        for ino, packed in rows.items():
            if size <= goal:
                break
            size -= len(packed) + ROW_OVERHEAD
            drop.append(ino)
        for ino in drop:
            del rows[ino]
        self.rows_size = size

    def evict(self) -> None:
        """Drop clean, unopened records, oldest first, until 1/32 of the bound under it.

        CLOCK, not strict LRU: a hit only sets ``ref`` (cheaper than reordering
        on every lookup), and eviction moves a referenced record to the young
        end once instead of dropping it, so a directory in use stays.
        """
        inodes = self.inodes
        durable = self.commits.durable
        limit = self.commits.record_bytes
        excess = self.records_size - limit + limit // 32  # evict in batches
        budget = max(64, 2 * (excess // INODE_COST + 1))   # records looked at, at most
        root = self.root
        for ino in list(islice(inodes, budget)):
            if excess <= 0:
                break
            node = inodes[ino]
            if node.epoch > durable or node.opens or node.bufs or ino == root or node.writers:
                inodes[ino] = inodes.pop(ino)  # pinned: move to the MRU end
                continue
            if node.ref:                       # used since the last pass: a second chance
                node.ref = False
                inodes[ino] = inodes.pop(ino)
                continue
            del inodes[ino]
            self.records_size -= node.cost
            self._keep_row(node)
            excess -= node.cost

    def evict_all(self, keep_rows: bool = False) -> int:
        """Drop every clean inode record, and every row unless ``keep_rows`` (then the
        dropped records' rows stay); returns how many records."""
        if not keep_rows:
            self.rows = {}
            self.rows_size = 0
        before = len(self.inodes)
        durable = self.commits.durable
        for ino in list(self.inodes):
            node = self.inodes[ino]
            if not (node.epoch > durable or node.opens or node.bufs or ino == self.root):
                del self.inodes[ino]
                self.records_size -= node.cost
                if keep_rows:
                    self._keep_row(node)
        return before - len(self.inodes)

    def drop_all(self) -> None:
        """Forget every inode, marking each record dead (``ds = -1``) for whoever still holds it."""
        for node in self.inodes.values():
            node.ds = -1
        self.inodes = {}
        self.records_size = 0
        self.rows = {}
        self.rows_size = 0
        self.gone = set()

    def children(self, node: Inode) -> dict:
        """Directory ``node``'s entries {name: (child, seq, type)}, loaded with the children's rows."""
        ch = node.children
        if ch is None:
            if not node.is_dir():
                raise fs_error(errno.ENOTDIR, f"inode {node.ino}")
            ents, rows = self.loads.load_dir(node.ino)
            inodes, kept, dumps = self.inodes, self.rows, marshal.dumps
            size = 0
            for row in rows:
                ino = row[0]
                if ino not in inodes and ino not in kept:
                    packed = kept[ino] = dumps(row)
                    size += len(packed) + ROW_OVERHEAD
            self.rows_size += size
            if self.rows_size > self.commits.row_bytes:
                self._trim_rows()
            ch = node.children = {name: (child, seq, typ) for name, child, seq, typ in ents}
            node.listing = None
            if self.inodes.get(node.ino) is node:     # its listing is charged to its record
                extra = ENTRY_COST * len(ch)
                node.cost += extra
                self.records_size += extra
                self._over()
        return ch

    def entry(self, node: Inode, name: bytes) -> tuple[int, int, int] | None:
        """Directory ``node``'s entry ``name`` (child, seq, type), or None.

        From the loaded listing, or while the listing is not loaded, for the
        first :func:`probes_before_load` lookups, from one point query (the
        catalog holds everything of a directory whose listing was never
        loaded: any change loads it first, and a changed directory stays
        cached until its commit is durable).
        """
        ch = node.children
        if ch is not None:
            return ch.get(name)
        if node.persisted and node.probes < probes_before_load(node) and node.is_dir():
            node.probes += 1
            return self.loads.load_entry(node.ino, name)
        return self.children(node).get(name)

    def dir(self, ino: int) -> Inode:
        """Directory ``ino`` (ENOTDIR if it is something else)."""
        node = self.get(ino)
        if (node.mode & _IFMT) != _S_IFDIR:
            raise fs_error(errno.ENOTDIR, f"inode {ino}")
        return node

    def file(self, ino: int) -> Inode:
        """Regular file ``ino`` with its extents loaded (EISDIR, or EINVAL for other types)."""
        node = self.get(ino)
        fmt = node.mode & _IFMT
        if fmt != _S_IFREG:
            raise fs_error(errno.EISDIR if fmt == _S_IFDIR else errno.EINVAL, f"inode {ino}")
        if node.extents is None:
            self.extents(node)
        return node

    def extents(self, node: Inode) -> dict:
        """File ``node``'s extents {idx: (hash, length, 0)}, loaded on first use."""
        if node.extents is None:
            node.extents = {idx: (h, ln, 0) for idx, h, ln in self.loads.load_extents(node.ino)}
        return node.extents

    def xattrs(self, node: Inode) -> dict:
        """``node``'s xattrs {name: value}, loaded on first use."""
        if node.xattrs is None:
            node.xattrs = dict(self.loads.load_xattrs(node.ino)) if node.persisted else {}
        return node.xattrs
