"""Send a snapshot as a stream (cas/sendstream.py): full, or incremental from an earlier one.

A full stream holds every row snapshot *b* sees and every chunk those rows
name; an incremental stream from snapshot *a* holds the rows *b* sees and *a*
does not (``add``), the keys of rows *a* sees and *b* does not (``del``), and
the chunks the added extents name that *a* does not already use. Chunks the
receiver lists in a *have* file (:func:`write_have`) are left out too.

Rows come from DuckDB in Arrow batches and chunks are read one at a time, so
memory stays bounded whatever the snapshot's size; everything is read in one
catalog read transaction on a private cursor, so a running server keeps
committing meanwhile. Files whose link count is 0 in the snapshot (open and
unlinked when it was taken) are not sent, as a clone does not copy them.
"""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterable, Iterator

import pyarrow as pa

from .catalog import INODE_COLS, visible
from .errors import FsError
from .sendstream import Encoder, Header

HAVE_MAGIC = "ninep-have 1"
_ROW_BATCH = 8192
_XATTR_BATCH = 512  # values reach 64 KiB: keep a record far below MAX_ROWS

Progress = Callable[[int, int | None], None]


@dataclass
class SendReport:
    """What a send wrote."""

    kind: str
    dataset: str
    snapshot: str
    guid: str
    base: str | None = None
    rows: dict = field(default_factory=dict)   # "table add|del" -> rows
    chunks: int = 0
    chunk_bytes: int = 0
    chunks_skipped: int = 0  # named by the stream's rows but listed in the have file
    stream_bytes: int = 0
    seconds: float = 0.0


@dataclass
class Have:
    """What a receiver says it has: its snapshot GUIDs of one dataset and chunk hashes."""

    snapshots: dict = field(default_factory=dict)  # guid -> name
    chunks: list = field(default_factory=list)


def snapshot_row(cur, dataset: str, name: str) -> tuple[int, int, int, str, int]:
    """(dataset id, root inode, generation, GUID, created_ns) of ``dataset@name`` (ENOENT)."""
    rows = cur.execute("SELECT d.id, d.root, s.gen, g.guid, s.created_ns FROM snapshots s "
                       "JOIN snapshot_guids g ON g.snapshot = s.id JOIN datasets d "
                       "ON d.id = s.dataset WHERE d.name = ? AND s.name = ?",
                       [dataset, name]).fetchall()
    if not rows:
        raise FsError(errno.ENOENT, f"ENOENT: no snapshot {dataset}@{name}")
    return rows[0]


def _owned(alias: str, col: str, vis_set: str) -> str:
    return f"{alias}.{col} IN (SELECT ino FROM {vis_set})"


#: table -> (added columns in the stream's order, key columns, owning-inode column)
_TABLES = {
    "inodes": ([c for c in INODE_COLS if c != "dataset"], ["ino"], "ino"),
    "entries": (["parent", "name", "child", "seq", "type"], ["parent", "name"], "parent"),
    "extents": (["ino", "idx", "hash", "length"], ["ino", "idx"], "ino"),
    "xattrs": (["ino", "name", "value"], ["ino", "name"], "ino"),
}


def _in_view(table: str, g: int, vis_set: str) -> str:
    """Row ``t`` of ``table`` is in the sent view of generation ``g`` (whose linked
    inodes are in temp table ``vis_set``)."""
    owner = _TABLES[table][2]
    return f"({visible('t', g)} AND {_owned('t', owner, vis_set)})"


def row_queries(ds: int, gb: int, ga: int | None) -> list[tuple[str, str, str]]:
    """(table, op, SQL) of every rows section, over temp tables ``_vb``/``_va``."""
    out = []
    for table, (cols, keys, _) in _TABLES.items():
        b = _in_view(table, gb, "_vb")
        sel = ",".join("t." + c for c in cols)
        # DuckDB's parallel scans return rows in any order: sort, so the same
        # snapshot always gives the same stream
        order = " ORDER BY " + ",".join("t." + k for k in keys)
        if ga is None:
            out.append((table, "add", f"SELECT {sel} FROM {table} t WHERE {b}{order}"))
            continue
        a = _in_view(table, ga, "_va")
        out.append((table, "del", f"SELECT {','.join('t.' + k for k in keys)} FROM {table} t "
                                  f"WHERE {a} AND NOT {b}{order}"))
        out.append((table, "add", f"SELECT {sel} FROM {table} t WHERE {b} AND NOT {a}{order}"))
    return out


def _chunk_query(gb: int, ga: int | None, have: bool) -> str:
    """Distinct (hash, length) the stream carries."""
    sql = (f"SELECT t.hash, max(t.length) AS length, min(t.ino) AS first_ino FROM extents t "
           f"WHERE {_in_view('extents', gb, '_vb')}")
    if ga is not None:
        sql += f" AND NOT {_in_view('extents', ga, '_va')}"
    sql += " GROUP BY t.hash"
    if ga is not None:
        sql = (f"SELECT c.* FROM ({sql}) c WHERE c.hash NOT IN (SELECT t.hash FROM extents t "
               f"WHERE {_in_view('extents', ga, '_va')})")
    if have:
        sql = f"SELECT c.* FROM ({sql}) c ANTI JOIN _have h ON h.hash = c.hash"
    # a fixed order (file by file, so reads stay near each other) for a deterministic stream
    return f"SELECT c.hash, c.length FROM ({sql}) c ORDER BY c.first_ino, c.hash"


def read_have(lines: Iterable[str]) -> Have:
    """Parse a have file (see :func:`write_have`); EINVAL if it is not one."""
    it = iter(lines)
    first = next(it, "").strip()
    if first != HAVE_MAGIC:
        raise FsError(errno.EINVAL, f"not a ninep have list (first line {first[:40]!r})")
    have = Have()
    for n, line in enumerate(it, start=2):
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "chunk" and len(parts) == 2 and len(parts[1]) == 64:
            have.chunks.append(parts[1].lower())
        elif parts[0] == "snapshot" and len(parts) == 3:
            have.snapshots[parts[1]] = parts[2]
        elif parts[0] == "dataset" and len(parts) == 2:
            pass
        else:
            raise FsError(errno.EINVAL, f"have list line {n}: cannot parse {line[:80]!r}")
    return have


def write_have(store, dataset: str, out, chunks: bool = True) -> dict:
    """Write what this store has for ``dataset`` as text lines to ``out`` (a binary file).

    Lines: ``ninep-have 1``, ``dataset NAME``, one ``snapshot GUID NAME`` per
    snapshot of ``dataset`` (none if it does not exist), and with ``chunks``
    one ``chunk HASH`` per chunk the catalog references (any dataset: a
    stream need not carry what another dataset here already holds).
    """
    n_snap = n_chunk = 0
    with store.catalog.cursor() as cur:
        out.write(f"{HAVE_MAGIC}\ndataset {dataset}\n".encode())
        for guid, name in cur.execute(
                "SELECT g.guid, s.name FROM snapshots s JOIN datasets d ON d.id = s.dataset "
                "JOIN snapshot_guids g ON g.snapshot = s.id "
                "WHERE d.name = ? ORDER BY s.id", [dataset]).fetchall():
            out.write(f"snapshot {guid} {name}\n".encode())
            n_snap += 1
        if chunks:
            reader = cur.sql("SELECT DISTINCT hash FROM extents").to_arrow_reader(65536)
            for batch in reader:
                hashes = batch.column(0).to_pylist()
                out.write("".join(f"chunk {h}\n" for h in hashes).encode())
                n_chunk += len(hashes)
    return {"dataset": dataset, "snapshots": n_snap, "chunks": n_chunk}


def send_snapshot(store, dataset: str, snapshot: str, out: BinaryIO, *, since: str | None = None,
                  have: Have | None = None, progress: Progress | None = None) -> SendReport:
    """Write ``dataset@snapshot`` as a send stream to ``out`` (incremental from
    ``dataset@since`` when given). ENOENT for a missing snapshot; EINVAL if
    ``since`` is not older, or ``have`` shows the receiver lacks it."""
    t0 = time.monotonic()
    enc = Encoder()

    def emit(parts: list) -> None:
        for p in parts:
            out.write(p)

    with store.catalog.cursor() as cur:
        cur.execute("BEGIN TRANSACTION")
        try:
            ds, root, gb, guid, created = snapshot_row(cur, dataset, snapshot)
            ga = base_guid = None
            if since is not None:
                _, _, ga, base_guid, _ = snapshot_row(cur, dataset, since)
                if ga >= gb:
                    raise FsError(errno.EINVAL, f"EINVAL: {dataset}@{since} is not older than "
                                  f"{dataset}@{snapshot}")
                if have is not None and base_guid not in have.snapshots:
                    raise FsError(errno.EINVAL, f"EINVAL: the receiver does not have "
                                  f"{dataset}@{since} (GUID {base_guid}); send a full stream")
            report = SendReport("incremental" if ga is not None else "full", dataset, snapshot,
                                guid, since)
            for name, g in (("_vb", gb), ("_va", ga)):
                if g is not None:
                    cur.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT ino FROM inodes t "
                                f"WHERE t.dataset = {int(ds)} AND t.nlink > 0 AND {visible('t', g)}")
            if have is not None:
                cur.register("_have", pa.table({"hash": pa.array(have.chunks, pa.string())}))
            emit(enc.start(Header(report.kind, dataset, snapshot, guid, created,
                                  store.chunk_size, root, base_guid, since)))
            for table, op, sql in row_queries(ds, gb, ga):
                n = 0
                size = _XATTR_BATCH if table == "xattrs" and op == "add" else _ROW_BATCH
                for batch in cur.sql(sql).to_arrow_reader(size):
                    if batch.num_rows:
                        emit(enc.rows(table, op, batch))
                        n += batch.num_rows
                report.rows[f"{table} {op}"] = n
            csql = _chunk_query(gb, ga, have is not None)
            (count, total) = cur.execute(
                f"SELECT count(*), coalesce(sum(length), 0) FROM ({csql})").fetchall()[0]
            if have is not None:
                (named,) = cur.execute(
                    f"SELECT count(*) FROM ({_chunk_query(gb, ga, False)})").fetchall()[0]
                report.chunks_skipped = named - count
            if progress:
                progress(0, int(total))
            for h, data in _read_chunks(store, cur.sql(csql).to_arrow_reader(256)):
                emit(enc.chunk(h, data))
                report.chunks += 1
                report.chunk_bytes += len(data)
                if progress:
                    progress(report.chunk_bytes, int(total))
            emit(enc.end())
        finally:
            try:
                cur.execute("COMMIT")
            except Exception:
                pass
    report.stream_bytes = enc.bytes
    report.seconds = time.monotonic() - t0
    return report


def _read_chunks(store, reader) -> Iterator[tuple[str, bytes]]:
    """(hash, verified bytes) of each chunk the batches name, with read-ahead per batch."""
    chunks = store.chunks
    for batch in reader:
        hashes = batch.column(0).to_pylist()
        chunks.prefetch(hashes)
        for h in hashes:
            try:
                yield h, chunks.get(h)
            except FileNotFoundError:
                raise FsError(errno.EIO, f"EIO: chunk {h} is missing from this store "
                              "(run ninep fsck)") from None
