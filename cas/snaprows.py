"""The catalog SQL behind snapshots: take, prune, roll back to and clone one.

Every versioned table carries ``born``/``died`` generations (see catalog.py).
A snapshot is one ``snapshots`` row recording a generation g; it sees the rows
with ``born <= g AND (died IS NULL OR died > g)``. Taking one copies nothing:
it records ``catalog.gen`` and bumps it, so later changes close the rows it
sees instead of overwriting them.

The functions here run inside :meth:`Catalog.transaction` (they take its
connection) and never issue per-file statements: each is a fixed number of
set-based statements. The caller (cas/snapshots.py) holds the store's commit
lock, so no group commit runs concurrently.
"""

from __future__ import annotations

import uuid

import duckdb

from .catalog import INODE_COLS, Catalog, remapped_inode_select, visible

#: versioned table -> (its columns without born/died, the column naming the owning inode)
TABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "inodes": (INODE_COLS, "ino"),
    "entries": (("parent", "name", "child", "seq", "type"), "parent"),
    "extents": (("ino", "idx", "hash", "length"), "ino"),
    "xattrs": (("ino", "name", "value"), "ino"),
}


def add_snapshot(cat: Catalog, ds: int, name: str, now: int) -> tuple[int, int]:
    """Record a snapshot of dataset ``ds`` at the current generation and start the next one.

    Three statements whatever the tree size; returns (snapshot id, generation).
    The snapshot gets a new random GUID (its identity across stores).
    """
    with cat.transaction() as db:
        sid, gen = insert_snapshot(cat, db, ds, name, now, str(uuid.uuid4()))
    finish_snapshot(cat, gen)
    return sid, gen


def insert_snapshot(cat: Catalog, db: duckdb.DuckDBPyConnection, ds: int, name: str, now: int,
                    guid: str) -> tuple[int, int]:
    """Inside a transaction: the statements of :func:`add_snapshot` with a given GUID.

    Call :func:`finish_snapshot` once the transaction has committed.
    """
    gen = cat.gen
    (sid,) = db.execute(
        "SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'next_snapshot'").fetchone()
    db.execute("INSERT INTO snapshots VALUES (?, ?, ?, ?, ?)", [sid, ds, name, gen, now])
    db.execute("INSERT INTO snapshot_guids VALUES (?, ?)", [sid, guid])
    db.execute("UPDATE meta SET value = CASE key WHEN 'generation' THEN ? ELSE ? END "
               "WHERE key IN ('generation', 'next_snapshot')", [str(gen + 1), str(sid + 1)])
    return sid, gen


def finish_snapshot(cat: Catalog, gen: int) -> None:
    """Start generation ``gen + 1`` in memory after a snapshot at ``gen`` committed."""
    cat.gen = gen + 1
    cat.floor = gen


def delete_snapshot(cat: Catalog, sid: int) -> list[str]:
    """Delete snapshot ``sid`` and every closed row no remaining snapshot of its dataset sees.

    Returns the hashes of the extent rows deleted (candidates for chunk reclamation).
    Closed rows left unseen earlier (a row closed because another dataset had a
    snapshot) are pruned too, so the catalog holds exactly what live and snapshots need.
    """
    with cat.transaction() as db:
        db.execute("DELETE FROM snapshots WHERE id = ?", [sid])
        db.execute("DELETE FROM snapshot_guids WHERE snapshot = ?", [sid])
        hashes = _prune(db)
        (cat.floor,) = db.execute("SELECT coalesce(max(gen), 0) FROM snapshots").fetchone()
    return hashes


def _prune(db: duckdb.DuckDBPyConnection) -> list[str]:
    """Delete closed rows whose [born, died) holds no snapshot generation of their dataset."""
    unseen = ("NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.dataset = {ds} "
              "AND s.gen >= t.born AND s.gen < t.died)")
    db.execute("CREATE TEMP TABLE _snap_own AS SELECT DISTINCT ino, dataset FROM inodes")
    try:
        hashes: list[str] = []
        for table, (_, key) in TABLES.items():
            if table == "inodes":
                sql = f"DELETE FROM inodes t WHERE t.died IS NOT NULL AND {unseen.format(ds='t.dataset')}"
            else:
                sql = (f"DELETE FROM {table} t USING _snap_own o WHERE o.ino = t.{key} "
                       f"AND t.died IS NOT NULL AND {unseen.format(ds='o.dataset')}")
            if table == "extents":
                hashes = [r[0] for r in db.execute(sql + " RETURNING t.hash").fetchall()]
            else:
                db.execute(sql)
        return hashes
    finally:
        db.execute("DROP TABLE _snap_own")


def rollback(cat: Catalog, ds: int, g: int) -> list[str]:
    """Make dataset ``ds``'s live rows equal to what generation ``g`` sees.

    Live rows born after ``g`` are retired (deleted when no snapshot sees them,
    closed otherwise); rows ``g`` sees that were closed since are inserted again
    as live rows of the current generation. Later snapshots keep their rows.
    Returns the hashes of deleted extent rows.
    """
    gen, floor = cat.gen, cat.floor
    hashes: list[str] = []
    with cat.transaction() as db:
        db.execute("CREATE TEMP TABLE _snap_own AS SELECT DISTINCT ino FROM inodes WHERE dataset = ?",
                   [ds])
        try:
            for table, (cols, key) in TABLES.items():
                own = (f"t.dataset = {int(ds)}" if table == "inodes"
                       else f"t.{key} IN (SELECT ino FROM _snap_own)")
                sql = (f"DELETE FROM {table} t WHERE {own} AND t.died IS NULL "
                       f"AND t.born > {int(g)} AND t.born > {int(floor)}")
                if table == "extents":
                    hashes = [r[0] for r in db.execute(sql + " RETURNING t.hash").fetchall()]
                else:
                    db.execute(sql)
                db.execute(f"UPDATE {table} t SET died = {gen} WHERE {own} AND t.died IS NULL "
                           f"AND t.born > {int(g)}")
                c = ",".join(cols)
                db.execute(f"INSERT INTO {table} ({c}, born, died) "
                           f"SELECT {','.join('t.' + x for x in cols)}, {gen}, NULL FROM {table} t "
                           f"WHERE {own} AND t.died IS NOT NULL AND {visible('t', g)}")
        finally:
            db.execute("DROP TABLE _snap_own")
    return hashes


def count_inodes(cat: Catalog, ds: int, g: int) -> int:
    """How many linked inodes dataset ``ds`` has at generation ``g`` (what a clone copies)."""
    return cat.query(f"SELECT count(*) FROM inodes t WHERE t.dataset = ? AND t.nlink > 0 "
                     f"AND {visible('t', g)}", [ds])[0][0]


def clone(cat: Catalog, ds: int, root: int, g: int, name: str, base: int, now: int) -> int:
    """Create dataset ``name`` holding a copy of ``ds``'s rows at generation ``g``.

    Inode numbers are remapped densely to ``base``, ``base + 1``, ... (the caller
    reserved as many as :func:`count_inodes` returned); chunks are shared, not
    copied. Returns the new dataset id.
    """
    gen = cat.gen
    vis = visible("t", g)
    with cat.transaction() as db:
        db.execute(f"CREATE TEMP TABLE _snap_map AS SELECT t.ino AS old, "
                   f"{int(base)} + row_number() OVER (ORDER BY t.ino) - 1 AS new FROM inodes t "
                   f"WHERE t.dataset = {int(ds)} AND t.nlink > 0 AND {vis}")
        try:
            (newds,) = db.execute("SELECT coalesce(max(id), 0) + 1 FROM datasets").fetchone()
            (n, top) = db.execute("SELECT count(*), coalesce(max(new), 0) FROM _snap_map").fetchone()
            db.execute("INSERT INTO datasets SELECT ?, ?, new, ? FROM _snap_map WHERE old = ?",
                       [newds, name, now, root])
            sel = remapped_inode_select("t", "m.new", newds, "coalesce(p.new, t.parent)")
            db.execute(f"INSERT INTO inodes ({','.join(INODE_COLS)}, born, died) "
                       f"SELECT {sel}, {gen}, NULL FROM inodes t "
                       f"JOIN _snap_map m ON m.old = t.ino LEFT JOIN _snap_map p ON p.old = t.parent "
                       f"WHERE {vis}")
            db.execute(f"INSERT INTO entries (parent, name, child, seq, type, born, died) "
                       f"SELECT p.new, t.name, c.new, t.seq, t.type, {gen}, NULL FROM entries t "
                       f"JOIN _snap_map p ON p.old = t.parent JOIN _snap_map c ON c.old = t.child "
                       f"WHERE {vis}")
            db.execute(f"INSERT INTO extents (ino, idx, hash, length, born, died) "
                       f"SELECT m.new, t.idx, t.hash, t.length, {gen}, NULL FROM extents t "
                       f"JOIN _snap_map m ON m.old = t.ino WHERE {vis}")
            db.execute(f"INSERT INTO xattrs (ino, name, value, born, died) "
                       f"SELECT m.new, t.name, t.value, {gen}, NULL FROM xattrs t "
                       f"JOIN _snap_map m ON m.old = t.ino WHERE {vis}")
            nxt = max(cat.next_ino, top + 1, base)
            db.execute("UPDATE meta SET value = ? WHERE key = 'next_ino'", [str(nxt)])
        finally:
            db.execute("DROP TABLE _snap_map")
    cat.next_ino = max(cat.next_ino, nxt)
    return newds
