"""Space accounting, per dataset and per store, all from DuckDB queries.

Definitions (bytes are chunk content bytes; holes store nothing):

- ``logical_bytes``: sum of the sizes of the live regular files (``du -b``).
- ``referenced_bytes``: sum of the lengths of every extent row, live and
  snapshot versions alike; each row is one block pointer (like ZFS, a
  snapshot sharing a row does not count it twice).
- ``unique_bytes`` / ``chunks``: the distinct chunks those rows name, i.e.
  what the catalog keeps on disk.
- ``dedup_ratio`` = referenced_bytes / unique_bytes (2.0: two copies of the
  same data stored once).
- a snapshot's ``exclusive_bytes``: the chunk bytes only that snapshot's
  view references, i.e. what deleting it would free.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .views import read_cursor

_FMT, _DIR, _REG, _LNK = 0o170000, 0o040000, 0o100000, 0o120000


@dataclass
class SnapshotStats:
    name: str
    gen: int
    created_ns: int
    referenced_bytes: int = 0   # content bytes the snapshot's view shows
    exclusive_bytes: int = 0


@dataclass
class DatasetStats:
    name: str
    files: int = 0
    directories: int = 0
    symlinks: int = 0
    other: int = 0
    logical_bytes: int = 0
    live_data_bytes: int = 0    # extent bytes of the live tree
    referenced_bytes: int = 0
    unique_bytes: int = 0
    chunks: int = 0
    dedup_ratio: float = 0.0
    snapshots: list[SnapshotStats] = field(default_factory=list)

    @property
    def snapshot_count(self) -> int:
        return len(self.snapshots)


@dataclass
class StoreStats:
    chunk_size: int
    datasets: list[DatasetStats] = field(default_factory=list)
    files: int = 0
    directories: int = 0
    logical_bytes: int = 0
    referenced_bytes: int = 0
    unique_bytes: int = 0
    chunks: int = 0
    dedup_ratio: float = 0.0
    snapshot_count: int = 0


def _ratio(a: int, b: int) -> float:
    return round(a / b, 4) if b else 0.0


# every extent row with the dataset of its inode
_ROWS = """
    WITH ino_ds AS (SELECT DISTINCT ino, dataset FROM inodes),
    rows AS (SELECT e.hash, e.length, e.born, e.died, d.dataset
             FROM extents e JOIN ino_ds d ON d.ino = e.ino)
"""


def collect_stats(store, *, commit: bool = True) -> StoreStats:
    """Space and object counts of ``store`` (commits first so memory is included)."""
    if commit:
        store.commit()
    out = StoreStats(chunk_size=store.chunk_size)
    with read_cursor(store.catalog) as cur:
        datasets = cur.execute("SELECT id, name FROM datasets ORDER BY id").fetchall()
        by_id: dict[int, DatasetStats] = {ds: DatasetStats(name) for ds, name in datasets}
        for ds, fmt, n, size in cur.execute(
                f"SELECT dataset, mode & {_FMT}, count(*), sum(size) FROM inodes "
                f"WHERE died IS NULL GROUP BY ALL").fetchall():
            d = by_id.get(ds)
            if d is None:
                continue
            if fmt == _REG:
                d.files += n
                d.logical_bytes += int(size or 0)
            elif fmt == _DIR:
                d.directories += n
            elif fmt == _LNK:
                d.symlinks += n
            else:
                d.other += n
        for ds, live, ref, uniq, nchunks in cur.execute(_ROWS + """
                , per AS (SELECT dataset, hash, max(length) len FROM rows GROUP BY ALL)
                SELECT r.dataset,
                       sum(CASE WHEN r.died IS NULL THEN r.length ELSE 0 END),
                       sum(r.length),
                       (SELECT sum(len) FROM per p WHERE p.dataset = r.dataset),
                       (SELECT count(*) FROM per p WHERE p.dataset = r.dataset)
                FROM rows r GROUP BY r.dataset""").fetchall():
            d = by_id.get(ds)
            if d is None:
                continue
            d.live_data_bytes, d.referenced_bytes = int(live or 0), int(ref or 0)
            d.unique_bytes, d.chunks = int(uniq or 0), int(nchunks or 0)
            d.dedup_ratio = _ratio(d.referenced_bytes, d.unique_bytes)
        snaps = cur.execute("SELECT id, dataset, name, gen, created_ns FROM snapshots "
                            "ORDER BY gen, id").fetchall()
        snap_stats: dict[int, SnapshotStats] = {}
        for sid, ds, name, gen, created in snaps:
            s = snap_stats[sid] = SnapshotStats(name, gen, created)
            if ds in by_id:
                by_id[ds].snapshots.append(s)
        if snaps:
            vis = _ROWS + """
                , vis AS (
                    SELECT r.hash, r.length, s.id AS view FROM rows r JOIN snapshots s
                      ON s.dataset = r.dataset AND r.born <= s.gen
                     AND (r.died IS NULL OR r.died > s.gen)
                    UNION ALL
                    SELECT hash, length, -1 FROM rows WHERE died IS NULL)
            """
            for sid, ref in cur.execute(vis + "SELECT view, sum(length) FROM vis "
                                        "WHERE view >= 0 GROUP BY view").fetchall():
                if sid in snap_stats:
                    snap_stats[sid].referenced_bytes = int(ref or 0)
            for sid, excl in cur.execute(vis + """
                    , sole AS (SELECT hash, min(view) view, max(length) len FROM vis
                               GROUP BY hash HAVING count(DISTINCT view) = 1)
                    SELECT view, sum(len) FROM sole WHERE view >= 0 GROUP BY view""").fetchall():
                if sid in snap_stats:
                    snap_stats[sid].exclusive_bytes = int(excl or 0)
        ref, uniq, nchunks = cur.execute(
            "SELECT (SELECT coalesce(sum(length), 0) FROM extents), coalesce(sum(len), 0), count(*) "
            "FROM (SELECT hash, max(length) len FROM extents GROUP BY hash)").fetchone()
    out.datasets = list(by_id.values())
    out.files = sum(d.files for d in out.datasets)
    out.directories = sum(d.directories for d in out.datasets)
    out.logical_bytes = sum(d.logical_bytes for d in out.datasets)
    out.referenced_bytes, out.unique_bytes, out.chunks = int(ref), int(uniq), int(nchunks)
    out.dedup_ratio = _ratio(out.referenced_bytes, out.unique_bytes)
    out.snapshot_count = len(snaps)
    return out
