"""Receive a send stream (cas/sendstream.py) into a dataset, atomically.

1. **Check** the header against the store: same chunk size; a full stream
   makes a new dataset; an incremental one needs the dataset's latest
   snapshot to be the stream's base (matched by GUID, not by name).
2. **Stage.** Row batches go to Arrow IPC files in a private directory of
   the store (``STORE/.receive-*``); chunks are verified against their names
   and stored (pinned, so gc leaves them alone) in batches as they arrive.
   Memory holds one record and one batch of chunks, whatever the stream size.
3. **Verify** the trailer's checksum, then make the new chunks durable.
4. **Apply**, under the commit lock and the store lock, in one catalog
   transaction: map the sender's inode numbers to this store's (the map is
   kept per dataset in ``received_inodes``, so the next incremental finds
   the same numbers), retire the rows the stream removes, insert the rows it
   adds, check that every chunk named exists with its length and every key
   has one live row, and record the snapshot with the sender's GUID.

A stream that fails anywhere leaves the catalog unchanged, and the chunks it
stored that nothing references are deleted at once (a crash leaves them as
unreferenced chunk files, which gc removes; a crash leaves the staging
directory too, which the next receive removes).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Callable

import pyarrow as pa

from . import acl, snaprows
from .catalog import INODE_COLS, remapped_inode_select
from .errors import FsError
from .names import check_label
from .sendstream import SCHEMAS, Chunk, Decoder, End, Header, Rows, StreamError

STAGE_PREFIX = ".receive-"
_READ = 1 << 20
_CHUNK_BATCH = 16 << 20

Progress = Callable[[int, int | None], None]

_KEYS = {"inodes": ["ino"], "entries": ["parent", "name"], "extents": ["ino", "idx"],
         "xattrs": ["ino", "name"]}
_OWNER = {"inodes": "ino", "entries": "parent", "extents": "ino", "xattrs": "ino"}


@dataclass
class ReceiveReport:
    """What a receive applied."""

    kind: str
    dataset: str
    snapshot: str
    guid: str
    base: str | None = None
    rows: dict = field(default_factory=dict)
    chunks: int = 0
    chunk_bytes: int = 0
    inodes_new: int = 0
    rolled_back: bool = False
    stream_bytes: int = 0
    seconds: float = 0.0


class _Stage:
    """A private staging directory holding the stream's rows as Arrow IPC files.

    A lock file inside is flocked while in use; :func:`remove_stale_stages`
    deletes the directories no receive holds.
    """

    def __init__(self, store_path: str):
        self.dir = tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=store_path)
        self._lockfd = os.open(os.path.join(self.dir, "lock"),
                               os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lockfd, fcntl.LOCK_EX)
        self._writers: dict[tuple[str, str], pa.ipc.RecordBatchFileWriter] = {}
        self._maps: list = []
        self.counts: dict[str, int] = {}

    def _path(self, key: tuple[str, str]) -> str:
        return os.path.join(self.dir, f"{key[0]}-{key[1]}.arrow")

    def add(self, rows: Rows) -> None:
        key = (rows.table, rows.op)
        w = self._writers.get(key)
        if w is None:
            path = self._path(key)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            os.fchmod(fd, 0o600)  # owner-only whatever the umask, like every file of the store
            os.close(fd)
            w = self._writers[key] = pa.ipc.new_file(pa.OSFile(path, "w"), SCHEMAS[key])
        w.write_batch(rows.batch)
        name = f"{rows.table} {rows.op}"
        self.counts[name] = self.counts.get(name, 0) + rows.batch.num_rows

    def tables(self) -> dict[str, pa.Table]:
        """Every (table, op) as a memory-mapped table (empty when the stream had none)."""
        for w in self._writers.values():
            w.close()
        out = {}
        for key, schema in SCHEMAS.items():
            name = f"_r_{key[0]}_{key[1]}"
            if key in self._writers:
                m = pa.memory_map(self._path(key))
                self._maps.append(m)
                out[name] = pa.ipc.open_file(m).read_all()
            else:
                out[name] = schema.empty_table()
        self._writers.clear()
        return out

    def close(self) -> None:
        for w in self._writers.values():
            try:
                w.close()
            except Exception:
                pass
        for m in self._maps:
            m.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        os.close(self._lockfd)


def remove_stale_stages(store_path: str) -> int:
    """Delete staging directories left by receives that crashed; returns how many."""
    n = 0
    for name in os.listdir(store_path):
        if not name.startswith(STAGE_PREFIX):
            continue
        path = os.path.join(store_path, name)
        try:
            fd = os.open(os.path.join(path, "lock"), os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = None
        except OSError:
            continue
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a receive in progress
            shutil.rmtree(path, ignore_errors=True)
            n += 1
        finally:
            if fd is not None:
                os.close(fd)
    return n


def _snapshots_of(cat, ds: int) -> list[tuple]:
    return cat.query("SELECT s.id, s.name, s.gen, g.guid FROM snapshots s JOIN snapshot_guids g "
                     "ON g.snapshot = s.id WHERE s.dataset = ? ORDER BY s.gen", [ds])


def check_header(store, dataset: str, h: Header) -> None:
    """Refuse a stream this store cannot apply to ``dataset``, before reading the rest."""
    check_label(dataset, "dataset")
    check_label(h.snapshot)
    if h.chunk_size != store.chunk_size:
        raise FsError(errno.EINVAL, f"EINVAL: the stream's chunk size is {h.chunk_size}, this "
                      f"store's {store.chunk_size}: streams go between stores of one chunk size")
    exists = dataset in store.datasets()
    if h.kind == "full":
        if exists:
            raise FsError(errno.EEXIST, f"EEXIST: dataset {dataset!r} exists; a full stream "
                          "creates a new dataset (receive into a new name)")
        return
    if not exists:
        raise FsError(errno.ENOENT, f"ENOENT: no dataset {dataset!r}: an incremental stream "
                      f"applies on top of its base snapshot {h.dataset}@{h.base_snapshot}")
    snaps = _snapshots_of(store.catalog, store.dataset_row(dataset)[0])
    by_guid = {s[3]: s for s in snaps}
    if h.guid in by_guid:
        raise FsError(errno.EEXIST, f"EEXIST: {dataset}@{by_guid[h.guid][1]} is this stream's "
                      "snapshot already")
    if h.base_guid not in by_guid:
        raise FsError(errno.ENOENT, f"ENOENT: {dataset} does not have the stream's base "
                      f"snapshot {h.dataset}@{h.base_snapshot} (GUID {h.base_guid}); send a "
                      "full stream, or an incremental from a snapshot it has")
    if snaps[-1][3] != h.base_guid:
        raise FsError(errno.EEXIST, f"EEXIST: {dataset}@{snaps[-1][1]} is newer than the "
                      f"stream's base {dataset}@{by_guid[h.base_guid][1]}; delete it first")
    if any(s[1] == h.snapshot for s in snaps):
        raise FsError(errno.EEXIST, f"EEXIST: snapshot {dataset}@{h.snapshot} exists")


def changed_since(cat, ds: int, g: int) -> bool:
    """Whether dataset ``ds``'s live rows differ from what generation ``g`` sees."""
    own = f"(SELECT ino FROM inodes WHERE dataset = {int(ds)})"
    for table, owner in _OWNER.items():
        where = (f"t.dataset = {int(ds)}" if table == "inodes" else f"t.{owner} IN {own}")
        if cat.query(f"SELECT 1 FROM {table} t WHERE {where} AND ((t.died IS NULL AND "
                     f"t.born > {int(g)}) OR (t.born <= {int(g)} AND t.died > {int(g)})) LIMIT 1"):
            return True
    return False


def receive_snapshot(store, dataset: str, src: BinaryIO, *, force: bool = False,
                     progress: Progress | None = None, total: int | None = None) -> ReceiveReport:
    """Read a send stream from ``src`` and apply it as ``dataset@SNAPSHOT``.

    ``force`` rolls the dataset's live tree back to its latest snapshot first
    if it changed since (otherwise that is refused, EBUSY). Raises
    :class:`~cas.sendstream.StreamError` (EBADMSG) for a truncated or corrupt
    stream and FsError for one this store cannot apply; either way the
    catalog is unchanged.
    """
    t0 = time.monotonic()
    remove_stale_stages(store.path)
    stage = _Stage(store.path)
    chunks = store.chunks
    pinned: list[str] = []
    received: dict[str, int] = {}
    pending: list = []
    names: list[str] = []
    ok = False

    def flush() -> None:
        if not pending:
            return
        got = chunks.put_many(pending, pin=True)
        pinned.extend(got)
        for want, have, data in zip(names, got, pending):
            if want != have:
                raise StreamError(f"chunk {want} does not match its content (which hashes to "
                                  f"{have}): the stream is corrupt")
            received[have] = len(data)
        pending.clear()
        names.clear()

    try:
        dec = Decoder()
        header: Header | None = None
        size = 0
        while True:
            data = src.read(_READ)
            if not data:
                break
            dec.feed(data)
            for ev in dec.events():
                if isinstance(ev, Header):
                    header = ev
                    check_header(store, dataset, header)
                elif isinstance(ev, Rows):
                    stage.add(ev)
                elif isinstance(ev, Chunk):
                    pending.append(ev.data)
                    names.append(ev.hash)
                    size += len(ev.data)
                    if size >= _CHUNK_BATCH:
                        flush()
                        size = 0
                elif isinstance(ev, End):
                    pass
            if progress:
                progress(dec.bytes, total)
        dec.close()
        flush()
        assert header is not None  # the decoder refuses a stream without one
        chunks.make_durable()
        report = ReceiveReport(header.kind, dataset, header.snapshot, header.guid,
                               header.base_snapshot, dict(stage.counts))
        report.chunks = len(received)
        report.chunk_bytes = sum(received.values())
        _apply(store, dataset, header, stage, received, force, report)
        report.stream_bytes = dec.bytes
        ok = True
    finally:
        stage.close()
        for h in pinned:
            chunks.unpin(h)
        if not ok and pinned:
            # what the failed stream added and nothing uses; under the commit lock, so a
            # commit cannot reference one of them between the check and the unlink
            with store.commits.commit_lock:
                store.commits.gc_hashes(pinned)
    report.seconds = time.monotonic() - t0
    return report


def _apply(store, dataset: str, h: Header, stage: _Stage, received: dict[str, int],
           force: bool, report: ReceiveReport) -> None:
    c = store.commits
    cat = store.catalog
    freed: list[str] = []
    with c.commit_lock:
        c.commit_locked()
        with c.lock.priority():  # no operation may slip in between the check and the apply
            check_header(store, dataset, h)
            if h.kind == "incremental":
                ds = store.dataset_row(dataset)[0]
                latest = _snapshots_of(cat, ds)[-1]
                if changed_since(cat, ds, latest[2]):
                    if not force:
                        raise FsError(errno.EBUSY, f"EBUSY: {dataset} changed since its latest "
                                      f"snapshot {dataset}@{latest[1]}; receive with --force to "
                                      "roll it back first")
                    freed += snaprows.rollback(cat, ds, latest[2])
                    report.rolled_back = True
                    vol = store.live_volume(dataset)
                    if vol is not None:
                        vol.invalidate()
            tables = stage.tables()
            sid, gen, more = _transaction(store, dataset, h, tables, received, report)
            freed += more
            snaprows.finish_snapshot(cat, gen)
            vol = store.live_volume(dataset)
            if vol is not None:
                vol.invalidate()
        store.snapshot_received(sid)
        c.gc_hashes(freed)


def _transaction(store, dataset: str, h: Header, tables: dict[str, pa.Table],
                 received: dict[str, int], report: ReceiveReport) -> tuple[int, int, list[str]]:
    c = store.commits
    cat = store.catalog
    gen, floor = cat.gen, cat.floor
    freed: list[str] = []
    with cat.transaction() as db:
        for name, table in tables.items():
            db.register(name, table)
        try:
            if h.kind == "full":
                (ds,) = db.execute("SELECT coalesce(max(id), 0) + 1 FROM datasets").fetchall()[0]
                db.execute("DELETE FROM received_inodes WHERE dataset = ?", [ds])
            else:
                ds = store.dataset_row(dataset)[0]
            new = (f"SELECT DISTINCT r.ino FROM _r_inodes_add r WHERE r.ino NOT IN "
                   f"(SELECT remote FROM received_inodes WHERE dataset = {int(ds)})")
            (n,) = db.execute(f"SELECT count(*) FROM ({new})").fetchall()[0]
            base = c.alloc_inos(n) if n else 0
            report.inodes_new = n
            db.execute(f"INSERT INTO received_inodes SELECT {int(ds)}, ino, "
                       f"{int(base)} + row_number() OVER (ORDER BY ino) - 1 FROM ({new})")
            db.execute(f"CREATE OR REPLACE TEMP TABLE _m AS SELECT remote, local FROM "
                       f"received_inodes WHERE dataset = {int(ds)}")
            _validate(db, store, h, received)
            if db.execute("SELECT count(*) FROM _r_xattrs_add WHERE name IN (?, ?)",
                          list(acl.NAMES)).fetchone()[0]:
                cat.has_acls = True  # before the rows are visible (see Catalog.has_acls)
            for table, keys in _KEYS.items():
                freed += _retire(db, table, keys, gen, floor)
            _insert(db, ds, gen)
            _unique(db, ds)
            if h.kind == "full":
                (root,) = db.execute("SELECT local FROM _m WHERE remote = ?",
                                     [h.root]).fetchall()[0]
                db.execute("INSERT INTO datasets VALUES (?, ?, ?, ?)",
                           [ds, dataset, root, time.time_ns()])
            if n:
                nxt = max(cat.next_ino, base + n)
                db.execute("UPDATE meta SET value = ? WHERE key = 'next_ino'", [str(nxt)])
            sid, sgen = snaprows.insert_snapshot(cat, db, ds, h.snapshot, h.created_ns, h.guid)
            db.execute("DROP TABLE _m")
        finally:
            for name in tables:
                db.unregister(name)
    if n:
        cat.next_ino = max(cat.next_ino, base + n)
    return sid, sgen, freed


def _first(rows: list):
    return rows[0] if rows else None


def _bad(msg: str) -> StreamError:
    return StreamError(f"the stream does not apply: {msg}")


def _validate(db, store, h: Header, received: dict[str, int]) -> None:
    """Refuse rows that name unknown inodes, bad extents or chunks this store lacks."""
    refs = " UNION ALL ".join([
        "SELECT parent AS i FROM _r_inodes_add WHERE parent <> 0",
        "SELECT parent FROM _r_entries_add", "SELECT child FROM _r_entries_add",
        "SELECT ino FROM _r_extents_add", "SELECT ino FROM _r_xattrs_add",
        "SELECT ino FROM _r_inodes_del", "SELECT parent FROM _r_entries_del",
        "SELECT ino FROM _r_extents_del", "SELECT ino FROM _r_xattrs_del"])
    row = _first(db.execute(f"SELECT i FROM ({refs}) x WHERE i NOT IN "
                            "(SELECT remote FROM _m) LIMIT 1").fetchall())
    if row:
        raise _bad(f"its rows name inode {row[0]}, which neither it nor an earlier stream holds")
    if h.kind == "full":
        row = _first(db.execute("SELECT mode FROM _r_inodes_add WHERE ino = ?",
                                [h.root]).fetchall())
        if not row or (row[0] & 0o170000) != 0o040000:
            raise _bad("its root directory is missing")
    cs = store.chunk_size
    row = _first(db.execute(f"SELECT ino, idx FROM _r_extents_add WHERE NOT "
                            f"regexp_full_match(hash, '[0-9a-f]{{64}}') OR length <= 0 "
                            f"OR length > {cs} OR idx < 0 LIMIT 1").fetchall())
    if row:
        raise _bad(f"extent {row[0]}[{row[1]}] is malformed")
    chunks = store.chunks
    for batch in db.sql("SELECT hash, min(length), max(length) FROM _r_extents_add "
                            "GROUP BY hash").to_arrow_reader(65536):
        for hsh, lo, hi in zip(*(col.to_pylist() for col in batch.columns)):
            size = received.get(hsh)
            if size is None:
                try:
                    size = chunks.size_of(hsh)
                except FileNotFoundError:
                    raise _bad(f"chunk {hsh} is neither in the stream nor in this store "
                               "(was the have list from another store?)") from None
            if lo != size or hi != size:
                raise _bad(f"chunk {hsh} has {size} bytes, the extents say {lo}")


def _retire(db, table: str, keys: list[str], gen: int, floor: int) -> list[str]:
    """End the live rows whose keys the stream removes (as Catalog.apply retires)."""
    sel = []
    joins = []
    for k in keys:
        if k in ("ino", "parent"):
            sel.append(f"m_{k}.local AS {k}")
            joins.append(f"JOIN _m m_{k} ON m_{k}.remote = r.{k}")
        else:
            sel.append(f"r.{k}")
    db.execute(f"CREATE OR REPLACE TEMP TABLE _k AS SELECT {','.join(sel)} "
               f"FROM _r_{table}_del r {' '.join(joins)}")
    try:
        cond = " AND ".join(f"t.{k} = k.{k}" for k in keys)
        sql = (f"DELETE FROM {table} t USING _k k WHERE {cond} AND t.died IS NULL "
               f"AND t.born > {int(floor)}")
        out = []
        if table == "extents":
            out = [r[0] for r in db.execute(sql + " RETURNING t.hash").fetchall()]
        else:
            db.execute(sql)
        db.execute(f"UPDATE {table} t SET died = {int(gen)} FROM _k k WHERE {cond} "
                   f"AND t.died IS NULL")
        return out
    finally:
        db.execute("DROP TABLE _k")


def _insert(db, ds: int, gen: int) -> None:
    """Insert the stream's added rows with this store's inode numbers, born in ``gen``."""
    sel = remapped_inode_select("r", "m.local", ds, "p.local")
    g = int(gen)
    db.execute(f"INSERT INTO inodes ({','.join(INODE_COLS)}, born, died) "
               f"SELECT {sel}, {g}, NULL FROM _r_inodes_add r "
               f"JOIN _m m ON m.remote = r.ino LEFT JOIN _m p ON p.remote = r.parent")
    db.execute(f"INSERT INTO entries (parent, name, child, seq, type, born, died) "
               f"SELECT p.local, r.name, c.local, r.seq, r.type, {g}, NULL FROM _r_entries_add r "
               f"JOIN _m p ON p.remote = r.parent JOIN _m c ON c.remote = r.child")
    db.execute(f"INSERT INTO extents (ino, idx, hash, length, born, died) "
               f"SELECT m.local, r.idx, r.hash, r.length, {g}, NULL FROM _r_extents_add r "
               f"JOIN _m m ON m.remote = r.ino")
    db.execute(f"INSERT INTO xattrs (ino, name, value, born, died) "
               f"SELECT m.local, r.name, r.value, {g}, NULL FROM _r_xattrs_add r "
               f"JOIN _m m ON m.remote = r.ino")


def _unique(db, ds: int) -> None:
    """Every key of the dataset has at most one live row (else the stream did not fit)."""
    for table, keys in _KEYS.items():
        owner = _OWNER[table]
        where = (f"dataset = {int(ds)}" if table == "inodes"
                 else f"{owner} IN (SELECT local FROM _m)")
        k = ",".join(keys)
        row = _first(db.execute(f"SELECT {k} FROM {table} WHERE died IS NULL AND {where} "
                         f"GROUP BY {k} HAVING count(*) > 1 LIMIT 1").fetchall())
        if row:
            raise _bad(f"{table} {row!r} would have two live rows (the dataset differs from "
                       "the stream's base)")
