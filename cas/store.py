"""Store: a directory holding the catalog, the chunks and a lock file.

Layout::

    STORE/FORMAT            "ninep-store <version>" (1: local chunks, 2: chunks elsewhere)
    STORE/lock              fcntl.flock'ed while open
    STORE/catalog.duckdb    the DuckDB catalog (+ .wal)
    STORE/chunks/ab/<64 hex>        local chunks, or
    STORE/chunk-cache/ab/<64 hex>   the local cache of chunks in an S3 bucket

Everything in it is owner-only (see cas/perms.py): the chunks hold every
file's contents whatever its 9P mode.

The store runs no threads of its own. The server calls :meth:`Store.commit`
every ``commit_interval`` seconds; ``Volume.fsync`` runs or joins a commit.
The group commit itself lives in cas/commit.py; the Store opens and closes
the catalog and the chunk backend (cas/chunkopen.py), and hands out volumes. The format is
described in docs/format.md.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
import zlib
from typing import Callable

import structlog

from . import perms
from . import chunkopen
from .catalog import INODE_COLS, Catalog
from .chunkbackend import ChunkBackend
from .commit import GroupCommit
from .errors import FsError, StoreFormatError, StoreLockedError
from .records import DiffEntry, SnapshotInfo
from .inodes import INODE_COST
from .names import check_label
from .snapshots import Snapshots
from .snapview import SnapshotVolume
from .properties import Properties
from .pool import GRACE, REFRESH_INTERVAL, TOUCH_AGE, Pool, new_store_id
from .s3config import S3Settings
from .volume import Volume

log = structlog.get_logger(__name__)

FORMAT_NAME = "ninep-store"
#: the FORMAT file's version: 1 for a store with local chunks (unchanged since
#: before object storage), 2 when its chunks live elsewhere (the catalog's meta
#: says where), so that code older than object storage refuses such a store
STORE_FORMAT = 1
STORE_FORMAT_REMOTE = 2
#: a file that marks a read-only replica's working copy (cas/replicacopy.py): it holds
#: another store's catalog and id, so only ``Store.open(replica=True)`` opens it
REPLICA_MARKER = "REPLICA"
#: catalog meta key of a pool member's store id (cas/pool.py)
STORE_ID_KEY = "store_id"
#: the share of the metadata cache for inode records; the rest holds compact rows
RECORD_SHARE = 4


class Store:
    """An open store directory. Use :meth:`Store.open`; a context manager."""

    def __init__(self, path: str, catalog: Catalog, chunks: ChunkBackend, lockfd: int, *,
                 cache_bytes: int, reserve_bytes: int, commit_interval: float,
                 dirty_bytes: int | None):
        self.path = path
        self._catalog = catalog
        self._chunks = chunks
        self._lockfd = lockfd
        self.chunk_size = catalog.chunk_size
        self.cache_bytes = cache_bytes
        self.reserve_bytes = reserve_bytes
        self.commit_interval = commit_interval
        record_bytes = max(64 * INODE_COST, cache_bytes // RECORD_SHARE)
        #: the group commit (cas/commit.py): store lock, commit lock, epochs, limits
        self.commits = GroupCommit(
            path, catalog, chunks, reserve_bytes=reserve_bytes, record_bytes=record_bytes,
            row_bytes=max(64 << 10, cache_bytes - record_bytes),
            dirty_limit=dirty_bytes if dirty_bytes is not None else max(
                4 * self.chunk_size, min(cache_bytes // 4, 64 << 20)),
            # beyond this many dirty inodes, mutating callers wait for a commit
            dirty_inodes_max=max(1000, record_bytes // INODE_COST // 4),
            fsid=zlib.crc32(os.path.realpath(path).encode()))
        # in a shared pool another member, or a catalog copy shipped earlier
        # (cas/catalogcopy.py), may still name a chunk a commit drops: gc deletes those
        self.commits.eager_delete = not chunks.shared
        self._volumes: dict[str, Volume] = {}
        self._snapshots = Snapshots(self)
        self._closed = False
        self._properties: Properties | None = None
        #: called with the SnapshotInfo after each snapshot is created, in the creating thread,
        #: before the creator returns: a hook must only note the event (e.g. wake the catalog
        #: shipper), never do slow work; its exceptions are logged, never raised
        self.snapshot_hooks: list[Callable[[SnapshotInfo], None]] = []
        #: held while a catalog copy is shipped (cas/catalogcopy.py) and while gc marks and
        #: sweeps: gc keeps the chunks of every copy that exists while it deletes
        self.copy_lock = threading.Lock()
        #: copy name -> the chunks its extents name (cas/catalogcopy.copy_references)
        self.copy_references_cache: dict[str, frozenset[str]] = {}
        #: the chunk pool this store is a member of (cas/pool.py), None for local chunks
        #: and for a replica's working copy
        self.pool: Pool | None = None
        #: a read-only replica's working copy (``Store.open(replica=True)``): never a pool
        #: member under the catalog's store id, never shipped, never collected
        self.replica = False

    def _join_pool(self, refresh: float | None, grace: float | None) -> None:
        """Give the store an id if it has none, register it in its pool and publish its set."""
        from .gc import store_references
        sid = self._catalog.meta.get(STORE_ID_KEY)
        if sid is None:
            sid = new_store_id()
            self._catalog.set_meta(STORE_ID_KEY, sid)
        self.pool = Pool(self._chunks, sid, self.path, lambda: store_references(self),
                         refresh_interval=REFRESH_INTERVAL if refresh is None else refresh,
                         grace=GRACE if grace is None else grace)
        # a dedup hit must refresh an object's time before another member's gc could
        # judge it garbage: an object younger than the grace period minus the staleness
        # bound is kept; the same settings are assumed on every member
        self._chunks.touch_age = min(TOUCH_AGE, max(0.0, (self.pool.grace
                                                          - self.pool.stale_after()) / 2))
        self.pool.register()
        self.pool.publish()

    @property
    def max_file_size(self) -> int:
        """The largest file size a volume accepts (EFBIG beyond)."""
        return self.commits.max_file_size

    @property
    def last_commit_error(self) -> BaseException | None:
        """The error of the last commit if it failed, else None."""
        return self.commits.last_commit_error

    # ------------------------------------------------------------ lifecycle
    @classmethod
    def open(cls, path: str, create: bool = False, chunk_size: int | None = None,
             cache_bytes: int = 256 << 20, reserve_bytes: int = 64 << 20,
             commit_interval: float = 0.2, dirty_bytes: int | None = None,
             duckdb_memory: str = "96MB", *, chunks: str | None = None,
             s3: S3Settings | None = None, chunk_cache_bytes: int | None = None,
             chunk_memory_bytes: int | None = None,
             pool_refresh: float | None = None, pool_grace: float | None = None,
             replica: bool = False) -> "Store":
        """Open (or with ``create=True`` create) the store at ``path``.

        ``cache_bytes`` bounds the metadata cache, ``reserve_bytes`` is the free
        space below which writes fail with ENOSPC, ``dirty_bytes`` bounds
        buffered file data before it is stored early (default: a quarter of the
        cache, at most 64 MiB). Raises StoreFormatError for a directory that is
        not a store of this format and StoreLockedError if another process has it open.

        ``chunks`` says where a new store's chunks go: None or "local" for the
        chunk directory, ``"s3://BUCKET/PREFIX"`` for object storage (``s3``:
        endpoint and credentials, default from the environment;
        ``chunk_cache_bytes``: the bound of the local chunk cache). An existing
        store uses what its catalog records; a different ``chunks`` raises
        StoreFormatError naming both. ``chunk_memory_bytes`` bounds the
        memory LRU of verified chunks (None: 256 MiB for local chunks, 48 MiB
        for object storage; 0 keeps none). ``chunk_size`` None is the backend's
        default (cas/chunkopen.py). An unreachable bucket or refused credentials
        fail with FsError(EIO) saying what to check.

        A store on object storage is a member of the chunk pool at its prefix
        (cas/pool.py): it gets a store id (catalog meta ``store_id``) and
        registers and publishes its chunk set at open; ``pool_refresh`` is the
        interval the server republishes at (default 10 min), ``pool_grace``
        gc's grace period for unreferenced objects (default 1 h).

        ``replica=True`` opens the working copy of a read-only replica (a catalog
        copy restored by cas/replicacopy.py): its catalog's store id is the
        primary's, so it neither registers nor publishes (the replica does, under
        its own id), and gc and catalog shipping refuse it (EROFS).
        """
        want = chunkopen.normalize(chunks)
        if not replica and os.path.exists(os.path.join(path, REPLICA_MARKER)):
            raise StoreFormatError(
                f"{path}: a read-only replica's working copy of another store's catalog; it is "
                f"served by `ninep serve --replica`, never as a store (to get a writable store "
                f"from the bucket, use `ninep restore`)")
        fmt_path = os.path.join(path, "FORMAT")
        if not os.path.exists(fmt_path):
            if not create:
                raise StoreFormatError(f"{path}: not a ninep store (no FORMAT file)")
            os.makedirs(path, exist_ok=True)
            if any(n not in ("lock",) for n in os.listdir(path)):
                raise StoreFormatError(f"{path}: directory is not empty and not a ninep store")
            if chunk_size is None:
                chunk_size = chunkopen.default_chunk_size(want)
            if chunk_size <= 0 or chunk_size > 16 << 20:
                raise ValueError("chunk_size must be in (0, 16 MiB]")
            os.chmod(path, perms.DIR_MODE)  # a new store is owner-only, whatever the umask
        lockfd = os.open(os.path.join(path, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         perms.FILE_MODE)
        try:
            try:
                fcntl.flock(lockfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreLockedError(path) from None
            fresh = not os.path.exists(fmt_path)
            if fresh:
                location = want or chunkopen.LOCAL
                version = STORE_FORMAT_REMOTE if chunkopen.is_remote(location) else STORE_FORMAT
                # claim the bucket before creating anything: an unreachable one leaves no store
                backend = chunkopen.open_chunks(path, location, chunk_size=chunk_size, create=True,
                                                s3=s3, cache_bytes=chunk_cache_bytes,
                                                memory_bytes=chunk_memory_bytes)
            else:
                version = _read_format(path, fmt_path)
                backend = None
            try:
                catalog = Catalog(os.path.join(path, "catalog.duckdb"), create=fresh,
                                  chunk_size=chunk_size or 0, memory_limit=duckdb_memory,
                                  meta={chunkopen.META_KEY: location}
                                  if fresh and chunkopen.is_remote(location) else None)
            except BaseException:
                if backend is not None:
                    backend.close()
                raise
            try:
                location = chunkopen.recorded(catalog.meta)
                chunkopen.check_matches(path, location, want)
                if chunkopen.is_remote(location) != (version == STORE_FORMAT_REMOTE):
                    raise StoreFormatError(f"{path}: FORMAT version {version} does not match "
                                           f"its chunk location {location}")
                if backend is None:
                    backend = chunkopen.open_chunks(
                        path, location, chunk_size=catalog.chunk_size, create=False, s3=s3,
                        cache_bytes=chunk_cache_bytes, memory_bytes=chunk_memory_bytes)
                if fresh:
                    os.fchmod(lockfd, perms.FILE_MODE)
                    fd = os.open(fmt_path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                                 | os.O_CLOEXEC, perms.FILE_MODE)
                    with open(fd, "w") as f:
                        os.fchmod(fd, perms.FILE_MODE)
                        f.write(f"{FORMAT_NAME} {version}\n")
                        f.flush()
                        os.fsync(f.fileno())
                    os.rename(fmt_path + ".tmp", fmt_path)
                else:
                    backend.remove_temporaries()
            except BaseException:
                if backend is not None:
                    backend.close()
                catalog.close()
                raise
        except BaseException:
            os.close(lockfd)
            raise
        store = cls(path, catalog, backend, lockfd, cache_bytes=cache_bytes,
                    reserve_bytes=reserve_bytes, commit_interval=commit_interval,
                    dirty_bytes=dirty_bytes)
        store.replica = replica
        store.commits.gc_hashes(catalog.remove_orphans())
        if backend.shared and not replica:
            try:
                store._join_pool(pool_refresh, pool_grace)
            except BaseException:
                store.pool = None  # nothing to publish at this close
                store.close()
                raise
        catalog.own_files()
        loose = perms.audit(str(path))
        if loose:
            log.warning("store files are readable by other local users: run `ninep fsck --repair` "
                        "to make them owner-only", store=str(path),
                        paths=[f"{item.path} ({item.mode & 0o7777:04o})" for item in loose[:20]],
                        more=max(0, len(loose) - 20))
        log.debug("store opened", path=path, chunk_size=store.chunk_size, fresh=fresh,
                  chunks=backend.location)
        return store

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Commit everything, publish the pool set, checkpoint the catalog, release the lock."""
        if self._closed:
            return
        try:
            self.commit()
            if self.pool is not None:
                try:
                    self.pool.publish()
                except OSError as exc:
                    log.warning("could not publish the chunk set at close", error=str(exc))
        finally:
            self._closed = True
            self.commits.closed = True
            try:
                self._chunks.close()
                self._catalog.close()
            finally:
                os.close(self._lockfd)
                self._volumes.clear()
                self.commits.volumes.clear()

    # ------------------------------------------------------------- datasets
    def datasets(self) -> list[str]:
        """Names of all datasets."""
        return [name for _, name, _ in self._catalog.datasets()]

    def create_dataset(self, name: str) -> None:
        """Create an empty dataset (EEXIST if it exists)."""
        check_label(name, "dataset")
        c = self.commits
        with c.commit_lock:
            if name in self.datasets():
                raise FsError(errno.EEXIST, f"dataset {name!r} exists")
            with c.lock:
                ino = c.alloc_inos()
                nxt = c.next_ino
            now = time.time_ns()
            row = (ino, 0, 0o40755, 0, 0, 2, 0, 0, now, now, now, now, 1, ino, 1, None)
            assert len(row) == len(INODE_COLS)
            self._catalog.add_dataset(name, row, now, nxt)

    def delete_dataset(self, name: str) -> None:
        """Delete a dataset and everything in it (ENOENT if absent)."""
        c = self.commits
        with c.commit_lock:
            ds = self.dataset_row(name)
            c.commit_locked()
            with c.lock:
                self._volumes.pop(name, None)
                c.volumes.pop(name, None)
            gone = [s.id for s in self._snapshots.list(name)]
            c.gc_hashes(self._catalog.drop_dataset(ds[0]))
            self._snapshots.forget_dataset(gone)
            self.properties.drop(ds[0])  # ids can be reused: leave nothing behind

    def dataset_row(self, name: str) -> tuple[int, str, int]:
        """(id, name, root inode) of dataset ``name`` (ENOENT if absent)."""
        for row in self._catalog.datasets():
            if row[1] == name:
                return row
        raise FsError(errno.ENOENT, f"no dataset {name!r}")

    def volume(self, name: str) -> Volume:
        """The Volume of dataset ``name`` (the same object on every call)."""
        with self.commits.lock:
            vol = self._volumes.get(name)
            if vol is None:
                ds, _, root = self.dataset_row(name)
                vol = self._volumes[name] = Volume(self.commits, ds, name, root)
                vol.quota = self.properties.get(ds)["quota"]
                self.commits.volumes[name] = vol
            return vol

    def live_volume(self, name: str) -> Volume | None:
        """The Volume of dataset ``name`` if one was handed out, else None (store lock held)."""
        return self._volumes.get(name)

    @property
    def properties(self) -> Properties:
        """Per-dataset properties (read_only, quota, schedule); see cas/properties.py."""
        if self._properties is None:
            self._properties = Properties(self._catalog)
        return self._properties

    def dataset_properties(self, name: str) -> dict:
        return self.properties.get(self.dataset_row(name)[0])

    def set_dataset_properties(self, name: str, values: dict) -> dict:
        """Store properties and apply the quota to the live volume at once."""
        ds = self.dataset_row(name)[0]
        props = self.properties.set(ds, values)
        with self.commits.lock:
            vol = self._volumes.get(name)
            if vol is not None:
                vol.quota = props["quota"]
        return props

    # ------------------------------------------------------------ snapshots
    # The logic lives in cas/snapshots.py; see docs/volume-api.md "Snapshots".
    def create_snapshot(self, dataset: str, name: str) -> SnapshotInfo:
        """Snapshot ``dataset``'s live tree as ``name``: a barrier, O(dirty data)
        (EINVAL bad name, EEXIST taken, ENOENT no dataset)."""
        info = self._snapshots.create(dataset, name)
        for hook in list(self.snapshot_hooks):
            try:
                hook(info)
            except Exception:
                log.exception("snapshot hook failed", snapshot=f"{dataset}@{name}")
        return info

    def snapshots(self, dataset: str | None = None) -> list[SnapshotInfo]:
        """Snapshots of ``dataset`` (or of all datasets), in creation order."""
        return self._snapshots.list(dataset)

    def snapshot_volume(self, dataset: str, name: str) -> SnapshotVolume:
        """A read-only view (SnapshotVolume, a ``Tree``) of ``dataset@name``; mutations raise EROFS."""
        return self._snapshots.volume(dataset, name)

    def delete_snapshot(self, dataset: str, name: str) -> None:
        """Delete ``dataset@name`` and the rows only it saw (ENOENT if missing)."""
        self._snapshots.delete(dataset, name)

    def rollback(self, dataset: str, name: str) -> None:
        """Make ``dataset``'s live tree equal to ``dataset@name``; later snapshots are kept."""
        self._snapshots.rollback(dataset, name)

    def clone(self, dataset: str, name: str, new_dataset: str) -> None:
        """Create writable dataset ``new_dataset`` from ``dataset@name``, sharing chunks."""
        self._snapshots.clone(dataset, name, new_dataset)

    def diff(self, dataset: str, a: str, b: str | None = None) -> list[DiffEntry]:
        """What changed from ``dataset@a`` to ``dataset@b`` (None: the live tree)."""
        return self._snapshots.diff(dataset, a, b)

    def snapshot_received(self, sid: int) -> None:
        """Make snapshot ``sid``, which cas/receive.py added to the catalog, browsable."""
        self._snapshots.alive.add(sid)

    # --------------------------------------------------------------- commit
    def commit(self) -> None:
        """Group-commit every volume now; blocks until durable.

        Raises FsError on failure (the changes stay queued and are retried).
        """
        self.commits.commit()

    def gc(self, *, force: bool = False, grace: float | None = None) -> int:
        """Mark and sweep: delete every chunk file no catalog row references.

        Safe with concurrent writers; see cas/gc.py (``force``, ``grace``: for
        a pool). Returns chunks freed.
        """
        from .gc import collect
        return collect(self, force=force, grace=grace).chunks_freed

    # ------------------------------------------------------------ checking
    def check(self) -> list[str]:
        """Verify catalog consistency and that every referenced chunk exists.

        Commits first. Returns a list of problems, empty when consistent.
        """
        self.commit()
        q = self._catalog.query
        problems: list[str] = []
        live = "died IS NULL"
        for ds, name, root in self._catalog.datasets():
            r = q(f"SELECT mode, dataset FROM inodes WHERE ino = ? AND {live}", [root])
            if not r:
                problems.append(f"dataset {name}: root inode {root} missing")
            elif (r[0][0] & 0o170000) != 0o040000:
                problems.append(f"dataset {name}: root inode {root} is not a directory")
        for parent, name, child in q(
                f"SELECT parent, name, child FROM entries e WHERE e.{live} AND NOT EXISTS "
                f"(SELECT 1 FROM inodes i WHERE i.ino = e.child AND i.{live})"):
            problems.append(f"entry {parent}/{bytes(name)!r} -> missing inode {child}")
        for parent, name in q(
                f"SELECT parent, name FROM entries e WHERE e.{live} AND NOT EXISTS "
                f"(SELECT 1 FROM inodes i WHERE i.ino = e.parent AND i.{live} "
                f"AND (i.mode & 61440) = 16384)"):
            problems.append(f"entry {parent}/{bytes(name)!r}: parent is not a live directory")
        for parent, name, n in q(
                f"SELECT parent, name, count(*) FROM entries WHERE {live} "
                f"GROUP BY parent, name HAVING count(*) > 1"):
            problems.append(f"entry {parent}/{bytes(name)!r} appears {n} times")
        for ino, n in q(f"SELECT ino, count(*) FROM inodes WHERE {live} GROUP BY ino "
                        f"HAVING count(*) > 1"):
            problems.append(f"inode {ino} has {n} live rows")
        roots = {r[2] for r in self._catalog.datasets()}
        for ino, mode, nlink, refs, subdirs in q(f"""
                SELECT i.ino, i.mode, i.nlink, coalesce(r.refs, 0), coalesce(s.subdirs, 0)
                FROM inodes i
                LEFT JOIN (SELECT child, count(*) refs FROM entries WHERE {live}
                           GROUP BY child) r ON r.child = i.ino
                LEFT JOIN (SELECT parent, count(*) subdirs FROM entries WHERE {live}
                           AND type = 16384 GROUP BY parent) s ON s.parent = i.ino
                WHERE i.{live}"""):
            is_dir = (mode & 0o170000) == 0o040000
            if ino in roots:
                if refs:
                    problems.append(f"root inode {ino} is linked from a directory")
                if nlink != 2 + subdirs:
                    problems.append(f"root inode {ino}: nlink {nlink}, expected {2 + subdirs}")
                continue
            if refs == 0:
                problems.append(f"inode {ino} is not linked from any directory")
            elif is_dir:
                if refs != 1:
                    problems.append(f"directory {ino} is linked {refs} times")
                if nlink != 2 + subdirs:
                    problems.append(f"directory {ino}: nlink {nlink}, expected {2 + subdirs}")
            elif nlink != refs:
                problems.append(f"inode {ino}: nlink {nlink} but {refs} entries")
        cs = self.chunk_size
        for ino, idx, h in q(
                f"SELECT ino, idx, hash FROM extents e WHERE e.{live} AND NOT EXISTS "
                f"(SELECT 1 FROM inodes i WHERE i.ino = e.ino AND i.{live})"):
            problems.append(f"extent {ino}[{idx}] -> {h}: inode missing")
        for ino, idx, length, size in q(
                f"SELECT e.ino, e.idx, e.length, i.size FROM extents e JOIN inodes i "
                f"ON i.ino = e.ino AND i.{live} WHERE e.{live} "
                f"AND (e.idx * {cs} + e.length > i.size OR e.length > {cs} OR e.length <= 0)"):
            problems.append(f"extent {ino}[{idx}] length {length} beyond size {size}")
        for ino, idx, n in q(f"SELECT ino, idx, count(*) FROM extents WHERE {live} "
                             f"GROUP BY ino, idx HAVING count(*) > 1"):
            problems.append(f"extent {ino}[{idx}] has {n} live rows")
        present = self._chunks.sizes()
        for h, length, ino, idx in q(
                "SELECT hash, max(length), min(ino), min(idx) FROM extents GROUP BY hash"):
            if h not in present:
                problems.append(f"chunk {h} missing (used by inode {ino} chunk {idx})")
            elif present[h] != length:
                problems.append(f"chunk {h} has size {present[h]}, catalog says {length}")
        (max_ino,) = q("SELECT coalesce(max(ino), 0) FROM inodes")[0]
        (next_ino,) = q("SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'next_ino'")[0]
        if next_ino <= max_ino:
            problems.append(f"next_ino {next_ino} <= largest inode number {max_ino}")
        return problems

    def scrub(self) -> list[str]:
        """Re-hash every chunk file; returns the hashes that fail verification."""
        return [h for h in self._chunks if not self._chunks.verify(h)]

    @property
    def chunks(self) -> ChunkBackend:
        """The store's chunk backend (local ChunkStore or S3Chunks; for tools and tests)."""
        return self._chunks

    @property
    def catalog(self) -> Catalog:
        """The store's Catalog (for tools and tests)."""
        return self._catalog


def _read_format(path: str, fmt_path: str) -> int:
    """The version in an existing store's FORMAT file (StoreFormatError if unknown)."""
    with open(fmt_path) as f:
        text = f.read().split()
    if len(text) != 2 or text[0] != FORMAT_NAME:
        raise StoreFormatError(f"{path}: FORMAT file is not a ninep store's")
    if text[1] not in (str(STORE_FORMAT), str(STORE_FORMAT_REMOTE)):
        raise StoreFormatError(
            f"{path}: store format version {text[1]}, this code supports "
            f"{STORE_FORMAT} and {STORE_FORMAT_REMOTE}")
    return int(text[1])
