"""The DuckDB catalog: schema, batched commits and the queries behind cache misses.

Every versioned table carries ``born``/``died`` generations. The live view is
``died IS NULL``; a snapshot taken at generation g sees
``born <= g AND (died IS NULL OR died > g)``. Writes happen in the current
generation ``gen`` (one more than the newest snapshot's): a live row born in
``gen`` is visible to no snapshot, so it is replaced in place (deleted and
re-inserted); an older live row is closed (``died = gen``) and a new version
inserted. Until snapshots exist every row is born in the current generation.

``floor`` is the newest existing snapshot's generation (0 without snapshots):
a row born after it is seen by no snapshot, so retiring it deletes it in place.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import duckdb
import pyarrow as pa

from . import acl, perms
from .errors import StoreFormatError

FORMAT_VERSION = 1

INODE_COLS = ("ino", "dataset", "mode", "uid", "gid", "nlink", "rdev", "size", "atime",
              "mtime", "ctime", "btime", "dver", "parent", "next_seq", "target")

SCHEMA = """
CREATE TABLE meta (key VARCHAR, value VARCHAR);
CREATE TABLE datasets (id INTEGER, name VARCHAR, root BIGINT, created_ns BIGINT);
CREATE TABLE snapshots (id INTEGER, dataset INTEGER, name VARCHAR, gen BIGINT,
                        created_ns BIGINT);
CREATE TABLE inodes (ino BIGINT, dataset INTEGER, mode INTEGER, uid BIGINT, gid BIGINT,
                     nlink BIGINT, rdev BIGINT, size BIGINT, atime BIGINT, mtime BIGINT,
                     ctime BIGINT, btime BIGINT, dver BIGINT, parent BIGINT,
                     next_seq BIGINT, target BLOB, born BIGINT, died BIGINT);
CREATE TABLE entries (parent BIGINT, name BLOB, child BIGINT, seq BIGINT, type INTEGER,
                      born BIGINT, died BIGINT);
CREATE TABLE extents (ino BIGINT, idx BIGINT, hash VARCHAR, length INTEGER,
                      born BIGINT, died BIGINT);
CREATE TABLE xattrs (ino BIGINT, name BLOB, value BLOB, born BIGINT, died BIGINT);
CREATE TABLE snapshot_guids (snapshot INTEGER, guid VARCHAR);
CREATE TABLE received_inodes (dataset INTEGER, remote BIGINT, local BIGINT);
"""

#: ART indexes for the point queries of cache misses. Zone maps do not serve
#: them: a rewritten inode's new row goes to the end of the table, so after a
#: while every row group spans old and new inode numbers and a lookup by
#: ``ino`` scans them all (measured at 1,000,000 files: 1.5 ms against 0.55).
#: Entries need none: their rows are never rewritten, so zone maps on
#: ``parent`` keep working, and an index made directory loads slower.
INDEXES = """
CREATE INDEX IF NOT EXISTS inodes_ino ON inodes (ino);
CREATE INDEX IF NOT EXISTS extents_ino ON extents (ino);
CREATE INDEX IF NOT EXISTS xattrs_ino ON xattrs (ino);
"""

_I64 = pa.int64()


def remapped_inode_select(row: str, ino: str, dataset: int, parent: str) -> str:
    """SELECT list of :data:`INODE_COLS` copying inode row ``row`` under new numbers.

    ``ino`` and ``parent`` are SQL expressions for the new inode number and
    the new parent (a parent of 0, the root's, stays 0); ``dataset`` the
    dataset id the copy belongs to.
    """
    new = {"ino": ino, "dataset": str(int(dataset)),
           "parent": f"CASE WHEN {row}.parent = 0 THEN 0 ELSE {parent} END"}
    return ",".join(new.get(c, f"{row}.{c}") for c in INODE_COLS)


def visible(alias: str, gen: int | None) -> str:
    """SQL predicate: row ``alias`` is in the live tree (``gen`` None) or in snapshot ``gen``."""
    if gen is None:
        return f"{alias}.died IS NULL"
    g = int(gen)
    return f"({alias}.born <= {g} AND ({alias}.died IS NULL OR {alias}.died > {g}))"


@dataclass
class Batch:
    """Metadata mutations captured from memory for one group commit."""

    inode_rows: list[tuple] = field(default_factory=list)   # rows in INODE_COLS order
    inode_retire: list[int] = field(default_factory=list)   # inos whose live row is replaced or dropped
    freed: list[int] = field(default_factory=list)          # inos deleted with all extents/xattrs
    entry_rows: list[tuple] = field(default_factory=list)   # (parent, name, child, seq, type)
    entry_retire: list[tuple] = field(default_factory=list) # (parent, name)
    extent_rows: list[tuple] = field(default_factory=list)  # (ino, idx, hash, length)
    extent_retire: list[tuple] = field(default_factory=list)  # (ino, idx)
    xattr_rows: list[tuple] = field(default_factory=list)   # (ino, name, value)
    xattr_retire: list[tuple] = field(default_factory=list) # (ino, name)
    next_ino: int = 0

    def empty(self) -> bool:
        return not (self.inode_rows or self.inode_retire or self.freed or self.entry_rows
                    or self.entry_retire or self.extent_rows or self.extent_retire
                    or self.xattr_rows or self.xattr_retire)

    def merge(self, other: "Batch") -> None:
        for name in ("inode_rows", "inode_retire", "freed", "entry_rows", "entry_retire",
                     "extent_rows", "extent_retire", "xattr_rows", "xattr_retire"):
            getattr(self, name).extend(getattr(other, name))
        self.next_ino = max(self.next_ino, other.next_ino)


def _cols(rows: list[tuple], n: int) -> list[list]:
    return [list(c) for c in zip(*rows)] if rows else [[] for _ in range(n)]


class Catalog:
    """Owns the DuckDB connection. One writer (the commit); loads use a cursor."""

    def __init__(self, path: str, create: bool, chunk_size: int, memory_limit: str = "256MB",
                 meta: dict[str, str] | None = None):
        """Open (``create``: or create) the catalog; ``meta`` adds rows to a new catalog's meta."""
        existed = _exists(path)
        self.path = path
        self.db = duckdb.connect(path)
        self.own_files()
        self.db.execute(f"SET memory_limit='{memory_limit}'")
        self.db.execute("SET wal_autocheckpoint='512MB'")
        self.db.execute("SET preserve_insertion_order=false")
        self._rlock = threading.Lock()
        self._wlock = threading.Lock()
        tables = {r[0] for r in self.db.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()}
        if "meta" not in tables:
            if existed and tables:
                raise StoreFormatError(f"{path}: not a ninep catalog (no meta table)")
            if not create:
                raise StoreFormatError(f"{path}: no catalog")
            self.db.execute("BEGIN")
            self.db.execute(SCHEMA)
            self.db.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("format_version", str(FORMAT_VERSION)), ("chunk_size", str(chunk_size)),
                ("next_ino", "2"), ("generation", "1"), ("next_snapshot", "1"),
                *(meta or {}).items()])
            self.db.execute("COMMIT")
        self.meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        version = int(self.meta.get("format_version", "0"))
        if version != FORMAT_VERSION:
            raise StoreFormatError(
                f"{path}: catalog format version {version}, this code reads {FORMAT_VERSION}")
        self.chunk_size = int(self.meta["chunk_size"])
        self.next_ino = int(self.meta["next_ino"])
        self.gen = int(self.meta["generation"])
        if "next_snapshot" not in self.meta:  # catalogs made before snapshots existed
            (nxt,) = self.db.execute("SELECT coalesce(max(id), 0) + 1 FROM snapshots").fetchone()
            self.db.execute("INSERT INTO meta VALUES ('next_snapshot', ?)", [str(nxt)])
        self._give_snapshots_guids()
        self.db.execute(INDEXES)  # catalogs made before the indexes get them here
        (self.floor,) = self.db.execute("SELECT coalesce(max(gen), 0) FROM snapshots").fetchone()
        #: False while no row of the catalog, live or not, is a POSIX ACL and
        #: none has been set since: permission checks, chmod and creates then
        #: skip ACL lookups. Whoever adds an ACL row sets it first; it never
        #: goes back to False while the catalog is open.
        (n,) = self.db.execute("SELECT count(*) FROM xattrs WHERE name IN (?, ?)",
                               list(acl.NAMES)).fetchone()
        self.has_acls = n > 0
        self.reader = self.db.cursor()
        #: Fault injection for tests: called with each batch inside the commit's
        #: transaction; an exception it raises fails that transaction.
        self.fault: Callable[[Batch], None] | None = None

    def _give_snapshots_guids(self) -> None:
        """Every snapshot has a GUID (docs/format.md): catalogs made before snapshot
        send/receive get the tables, and snapshots without one a random GUID."""
        self.db.execute("BEGIN")
        try:
            self.db.execute("CREATE TABLE IF NOT EXISTS snapshot_guids "
                            "(snapshot INTEGER, guid VARCHAR)")
            self.db.execute("CREATE TABLE IF NOT EXISTS received_inodes "
                            "(dataset INTEGER, remote BIGINT, local BIGINT)")
            self.db.execute("INSERT INTO snapshot_guids SELECT id, CAST(uuid() AS VARCHAR) "
                            "FROM snapshots WHERE id NOT IN (SELECT snapshot FROM snapshot_guids)")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    # -- datasets --------------------------------------------------------
    def datasets(self) -> list[tuple[int, str, int]]:
        with self._rlock:
            return self.reader.execute(
                "SELECT id, name, root FROM datasets ORDER BY id").fetchall()

    def add_dataset(self, name: str, root_row: tuple, now: int, next_ino: int) -> int:
        with self._wlock:
            db = self.db
            db.execute("BEGIN")
            try:
                (ds,) = db.execute("SELECT coalesce(max(id), 0) + 1 FROM datasets").fetchone()
                row = list(root_row)
                row[1] = ds
                db.execute("INSERT INTO datasets VALUES (?, ?, ?, ?)", [ds, name, row[0], now])
                db.execute(f"INSERT INTO inodes VALUES ({','.join('?' * 18)})",
                           row + [self.gen, None])
                db.execute("UPDATE meta SET value = ? WHERE key = 'next_ino'", [str(next_ino)])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return ds

    def drop_dataset(self, ds: int) -> list[str]:
        """Delete a dataset and all its rows; return the hashes its extents used."""
        with self._wlock:
            db = self.db
            db.execute("BEGIN")
            try:
                db.execute("CREATE TEMP TABLE dropped AS SELECT ino FROM inodes WHERE dataset = ?",
                           [ds])
                hashes = [r[0] for r in db.execute(
                    "DELETE FROM extents WHERE ino IN (SELECT ino FROM dropped) RETURNING hash"
                ).fetchall()]
                db.execute("DELETE FROM xattrs WHERE ino IN (SELECT ino FROM dropped)")
                db.execute("DELETE FROM entries WHERE parent IN (SELECT ino FROM dropped)")
                db.execute("DELETE FROM inodes WHERE dataset = ?", [ds])
                db.execute("DELETE FROM datasets WHERE id = ?", [ds])
                db.execute("DELETE FROM snapshots WHERE dataset = ?", [ds])
                db.execute("DELETE FROM snapshot_guids WHERE snapshot NOT IN "
                           "(SELECT id FROM snapshots)")
                db.execute("DELETE FROM received_inodes WHERE dataset = ?", [ds])
                (self.floor,) = db.execute(
                    "SELECT coalesce(max(gen), 0) FROM snapshots").fetchone()
                db.execute("DROP TABLE dropped")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return hashes

    # -- loads (cache misses) --------------------------------------------
    def load_inode(self, ino: int) -> tuple | None:
        with self._rlock:
            # fetchall, not fetchone: a result left unfinished keeps the reader's
            # transaction open, and DuckDB then refuses to checkpoint
            rows = self.reader.execute(
                f"SELECT {','.join(INODE_COLS)} FROM inodes WHERE ino = ? AND died IS NULL",
                [ino]).fetchall()
        return rows[0] if rows else None

    def load_dir(self, parent: int) -> tuple[list[tuple], list[tuple]]:
        """Return (entries ordered by seq, inode rows of the children) in two queries."""
        with self._rlock:
            ents = self.reader.execute(
                "SELECT name, child, seq, type FROM entries WHERE parent = ? AND died IS NULL "
                "ORDER BY seq", [parent]).fetchall()
            rows = self.reader.execute(
                f"SELECT {','.join('i.' + c for c in INODE_COLS)} FROM inodes i "
                "JOIN entries e ON e.child = i.ino "
                "WHERE e.parent = ? AND e.died IS NULL AND i.died IS NULL", [parent]).fetchall()
            return ents, rows

    def load_entry(self, parent: int, name: bytes) -> tuple | None:
        with self._rlock:
            rows = self.reader.execute(
                "SELECT child, seq, type FROM entries WHERE parent = ? AND name = ? AND died IS NULL",
                [parent, name]).fetchall()
        return rows[0] if rows else None

    def load_extents(self, ino: int) -> list[tuple]:
        with self._rlock:
            return self.reader.execute(
                "SELECT idx, hash, length FROM extents WHERE ino = ? AND died IS NULL",
                [ino]).fetchall()

    def load_xattrs(self, ino: int) -> list[tuple]:
        with self._rlock:
            return self.reader.execute(
                "SELECT name, value FROM xattrs WHERE ino = ? AND died IS NULL", [ino]).fetchall()

    def live_children(self, keys: list[tuple[int, bytes]]) -> dict[tuple[int, bytes], int]:
        """The committed child of each live entry (parent, name) in ``keys`` (one query)."""
        if not keys:
            return {}
        c = _cols(keys, 2)
        # Its own cursor: only commits that failed on their rows get here, and the
        # shared reader may hold a half-fetched result.
        with self._wlock:
            cur = self.db.cursor()
        try:
            cur.register("_ekeys", pa.table(
                {"parent": pa.array(c[0], _I64), "name": pa.array(c[1], pa.binary())}))
            rows = cur.execute(
                "SELECT e.parent, e.name, e.child FROM entries e JOIN _ekeys k "
                "ON e.parent = k.parent AND e.name = k.name WHERE e.died IS NULL").fetchall()
        finally:
            cur.close()
        return {(parent, bytes(name)): child for parent, name, child in rows}

    def count_inodes(self) -> int:
        with self._rlock:
            return self.reader.execute(
                "SELECT count(*) FROM inodes WHERE died IS NULL").fetchone()[0]

    # -- the group commit ------------------------------------------------
    def apply(self, b: Batch) -> list[str]:
        """Apply one batch in one transaction; return hashes of extents it deleted."""
        dropped: list[str] = []
        with self.transaction() as db:
            gen = self.gen
            if self.fault is not None:
                self.fault(b)
            if b.freed:
                t = pa.table({"ino": pa.array(b.freed, _I64)})
                dropped += self._retire("extents", ("ino",), t, "hash")
                self._retire("xattrs", ("ino",), t)
                self._retire("inodes", ("ino",), t)
            if b.inode_retire:
                self._retire("inodes", ("ino",), pa.table({"ino": pa.array(b.inode_retire, _I64)}))
            if b.entry_retire:
                c = _cols(b.entry_retire, 2)
                self._retire("entries", ("parent", "name"), pa.table(
                    {"parent": pa.array(c[0], _I64), "name": pa.array(c[1], pa.binary())}))
            if b.extent_retire:
                c = _cols(b.extent_retire, 2)
                dropped += self._retire("extents", ("ino", "idx"), pa.table(
                    {"ino": pa.array(c[0], _I64), "idx": pa.array(c[1], _I64)}), "hash")
            if b.xattr_retire:
                c = _cols(b.xattr_retire, 2)
                self._retire("xattrs", ("ino", "name"), pa.table(
                    {"ino": pa.array(c[0], _I64), "name": pa.array(c[1], pa.binary())}))
            if b.inode_rows:
                c = _cols(b.inode_rows, len(INODE_COLS))
                arrays = {name: pa.array(col, pa.binary() if name == "target" else
                                         (pa.int32() if name in ("dataset", "mode") else _I64))
                          for name, col in zip(INODE_COLS, c)}
                self._insert("inodes", pa.table(arrays), gen)
            if b.entry_rows:
                c = _cols(b.entry_rows, 5)
                self._insert("entries", pa.table({
                    "parent": pa.array(c[0], _I64), "name": pa.array(c[1], pa.binary()),
                    "child": pa.array(c[2], _I64), "seq": pa.array(c[3], _I64),
                    "type": pa.array(c[4], pa.int32())}), gen)
            if b.extent_rows:
                c = _cols(b.extent_rows, 4)
                self._insert("extents", pa.table({
                    "ino": pa.array(c[0], _I64), "idx": pa.array(c[1], _I64),
                    "hash": pa.array(c[2], pa.string()),
                    "length": pa.array(c[3], pa.int32())}), gen)
            if b.xattr_rows:
                c = _cols(b.xattr_rows, 3)
                self._insert("xattrs", pa.table({
                    "ino": pa.array(c[0], _I64), "name": pa.array(c[1], pa.binary()),
                    "value": pa.array(c[2], pa.binary())}), gen)
            if b.next_ino > self.next_ino:
                db.execute("UPDATE meta SET value = ? WHERE key = 'next_ino'",
                           [str(b.next_ino)])
        self.next_ino = max(self.next_ino, b.next_ino)  # only once committed
        return dropped

    def _retire(self, table: str, keys: tuple[str, ...], keytab: pa.Table,
                returning: str | None = None) -> list:
        """End the live rows matching ``keytab``: delete those no snapshot sees, close the rest."""
        db = self.db
        db.register("_keys", keytab)
        try:
            cond = " AND ".join(f"t.{k} = k.{k}" for k in keys)
            sql = (f"DELETE FROM {table} t USING _keys k WHERE {cond} "
                   f"AND t.died IS NULL AND t.born > {self.floor}")
            out: list = []
            if returning:
                out = [r[0] for r in db.execute(sql + f" RETURNING t.{returning}").fetchall()]
            else:
                db.execute(sql)
            if self.floor:  # some snapshot may see older rows: close them
                db.execute(f"UPDATE {table} t SET died = {self.gen} FROM _keys k WHERE {cond} "
                           f"AND t.died IS NULL AND t.born <= {self.floor}")
            return out
        finally:
            db.unregister("_keys")

    def _insert(self, table: str, rows: pa.Table, gen: int) -> None:
        db = self.db
        db.register("_rows", rows)
        try:
            cols = ",".join(rows.column_names)
            db.execute(f"INSERT INTO {table} ({cols}, born, died) "
                       f"SELECT {cols}, {gen}, NULL FROM _rows")
        finally:
            db.unregister("_rows")

    def unreferenced(self, hashes: list[str]) -> list[str]:
        """Of ``hashes``, those no extent row (live or in any snapshot) references."""
        if not hashes:
            return []
        with self._wlock:
            self.db.register("_cand", pa.table({"hash": pa.array(list(set(hashes)), pa.string())}))
            try:
                return [r[0] for r in self.db.execute(
                    "SELECT c.hash FROM _cand c ANTI JOIN extents e ON e.hash = c.hash").fetchall()]
            finally:
                self.db.unregister("_cand")

    def all_hashes(self) -> set[str]:
        with self._wlock:
            return {r[0] for r in self.db.execute("SELECT DISTINCT hash FROM extents").fetchall()}

    def remove_orphans(self) -> list[str]:
        """Retire live inodes with nlink 0 (open-unlinked files at a crash); return the
        hashes of extent rows deleted. Rows a snapshot sees are closed, not deleted."""
        with self._wlock:
            db = self.db
            inos = [r[0] for r in db.execute(
                "SELECT ino FROM inodes WHERE nlink = 0 AND died IS NULL").fetchall()]
            if not inos:
                return []
            db.execute("BEGIN")
            try:
                t = pa.table({"ino": pa.array(inos, _I64)})
                hashes = self._retire("extents", ("ino",), t, "hash")
                self._retire("xattrs", ("ino",), t)
                self._retire("inodes", ("ino",), t)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return hashes

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A private cursor on the catalog (its own transaction per query): long
        admin reads do not hold the commit's connection lock."""
        with self._wlock:
            cur = self.db.cursor()
        try:
            yield cur
        finally:
            cur.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The writer connection inside BEGIN/COMMIT (ROLLBACK on error), under the write lock."""
        with self._wlock:
            db = self.db
            db.execute("BEGIN")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                try:
                    db.execute("ROLLBACK")
                except duckdb.Error:
                    pass
                raise
            self.own_files()

    def read(self, sql: str, params=None) -> list[tuple]:
        """Run a read-only query on the reader cursor (cache-miss loads)."""
        with self._rlock:
            return self.reader.execute(sql, params or []).fetchall()

    def query(self, sql: str, params=None) -> list[tuple]:
        """Run a read-only query on the writer connection (check/admin use)."""
        with self._wlock:
            return self.db.execute(sql, params or []).fetchall()

    def set_meta(self, key: str, value: str) -> None:
        """Add or replace one row of the meta table (and ``self.meta``)."""
        with self._wlock:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM meta WHERE key = ?", [key])
            self.db.execute("INSERT INTO meta VALUES (?, ?)", [key, value])
            self.db.execute("COMMIT")
        self.meta[key] = value

    def own_files(self) -> None:
        """Make DuckDB's files owner-only: it creates them with the process umask,
        and re-creates the WAL after every checkpoint (two lstat calls when all is well)."""
        for suffix in ("", ".wal", ".tmp"):
            try:
                perms.tighten(self.path + suffix, exact=True)
            except OSError:
                pass  # not ours to change (another owner): the open-time audit reports it

    def checkpoint(self) -> None:
        with self._wlock:
            self.db.execute("CHECKPOINT")

    def close(self) -> None:
        with self._wlock:
            try:
                self.db.execute("CHECKPOINT")
            finally:
                self.reader.close()
                self.db.close()


def _exists(path: str) -> bool:
    import os
    return os.path.exists(path)
