"""Snapshot diff: one SQL query over the versioned catalog, no tree walk in Python.

Paths of both versions come from a recursive CTE over ``entries`` from the
dataset root (one row per path, so each hard link is its own row). Rows are
then classified:

- A path whose entry (parent inode, name, child inode) exists in both
  versions is *kept*; its path may still differ when an ancestor was renamed,
  which only the ancestor's ``R`` line reports. ``M path`` if the inode changed.
- Of the remaining paths, one with the same inode at the same path on both
  sides is ``M`` if the inode changed.
- Remaining paths of an inode present in both versions are paired, in path
  order, old with new: ``R old -> new``, then ``M new`` if the inode changed.
- What is left is ``-`` (only in the old version) or ``+`` (only in the new),
  except that a path present on both sides but naming different inodes is
  ``M`` (an editor's save-by-rename), unless it is the target of an ``R``.

An inode *changed* when mode, owner, link count, device, size, mtime, data
version or symlink target differ, or its xattrs differ. ctime and atime are
ignored (a rename or a read alone is not a change). A directory whose entries
changed has a new mtime, so it is reported ``M`` too (as ``zfs diff`` does).
Output is sorted by path bytes (``b'/'`` is the root), ``R`` before ``M``.
"""

from __future__ import annotations

from .catalog import Catalog
from .records import DiffEntry
from .catalog import visible
from .views import read_cursor

_COMPARED = ("mode", "uid", "gid", "nlink", "rdev", "size", "mtime", "dver", "target")


def diff_sql(ds: int, root: int, ga: int, gb: int | None) -> str:
    """The query listing (kind, path, old_path) from generation ``ga`` to ``gb`` (None: live)."""
    va, vb = visible("t", ga), visible("t", gb)
    changed = " OR ".join(f"a.{c} IS DISTINCT FROM b.{c}" for c in _COMPARED)
    paths = ("p{v}(ino, path, parent, name) AS ("
             f"SELECT {int(root)}::BIGINT, ''::BLOB, -1::BIGINT, ''::BLOB "
             "UNION ALL SELECT e.child, p.path || '/'::BLOB || e.name, e.parent, e.name "
             "FROM p{v} p JOIN e{v} e ON e.parent = p.ino)")
    return f"""
WITH RECURSIVE
ea AS (SELECT parent, name, child FROM entries t WHERE {va}),
eb AS (SELECT parent, name, child FROM entries t WHERE {vb}),
{paths.format(v='a')},
{paths.format(v='b')},
ia AS (SELECT * FROM inodes t WHERE t.dataset = {int(ds)} AND {va}),
ib AS (SELECT * FROM inodes t WHERE t.dataset = {int(ds)} AND {vb}),
xa AS (SELECT t.ino, t.name, t.value FROM xattrs t WHERE {va}
       AND t.ino IN (SELECT ino FROM pa)),
xb AS (SELECT t.ino, t.name, t.value FROM xattrs t WHERE {vb}
       AND t.ino IN (SELECT ino FROM pb)),
chg AS (SELECT b.ino FROM ia a JOIN ib b ON a.ino = b.ino WHERE {changed}
        UNION SELECT ino FROM (SELECT * FROM xa EXCEPT SELECT * FROM xb)
        UNION SELECT ino FROM (SELECT * FROM xb EXCEPT SELECT * FROM xa)),
kb AS (SELECT b.* FROM pb b WHERE EXISTS (SELECT 1 FROM pa a WHERE a.parent = b.parent
       AND a.name = b.name AND a.ino = b.ino)),
na AS (SELECT a.* FROM pa a WHERE NOT EXISTS (SELECT 1 FROM pb b WHERE a.parent = b.parent
       AND a.name = b.name AND a.ino = b.ino)),
nb AS (SELECT * FROM pb EXCEPT SELECT * FROM kb),
same AS (SELECT a.ino, a.path FROM na a JOIN nb b ON a.path = b.path AND a.ino = b.ino),
ra AS (SELECT a.ino, a.path, row_number() OVER (PARTITION BY a.ino ORDER BY a.path) rn FROM na a
       WHERE a.ino IN (SELECT ino FROM pb)
       AND NOT EXISTS (SELECT 1 FROM same s WHERE s.ino = a.ino AND s.path = a.path)),
rb AS (SELECT b.ino, b.path, row_number() OVER (PARTITION BY b.ino ORDER BY b.path) rn FROM nb b
       WHERE b.ino IN (SELECT ino FROM pa)
       AND NOT EXISTS (SELECT 1 FROM same s WHERE s.ino = b.ino AND s.path = b.path)),
ren AS (SELECT a.ino, a.path AS old, b.path AS new FROM ra a JOIN rb b
        ON a.ino = b.ino AND a.rn = b.rn),
ga AS (SELECT a.path FROM na a WHERE NOT EXISTS (SELECT 1 FROM same s WHERE s.ino = a.ino
       AND s.path = a.path) AND a.path NOT IN (SELECT old FROM ren)),
gb AS (SELECT b.path FROM nb b WHERE NOT EXISTS (SELECT 1 FROM same s WHERE s.ino = b.ino
       AND s.path = b.path) AND b.path NOT IN (SELECT new FROM ren)),
out AS (
  SELECT 'R' AS kind, new AS path, old AS old_path, 0 AS ord FROM ren
  UNION ALL SELECT 'M', new, NULL, 1 FROM ren WHERE ino IN (SELECT ino FROM chg)
  UNION ALL SELECT 'M', path, NULL, 1 FROM kb WHERE ino IN (SELECT ino FROM chg)
  UNION ALL SELECT 'M', path, NULL, 1 FROM same WHERE ino IN (SELECT ino FROM chg)
  UNION ALL SELECT 'M', path, NULL, 1 FROM ga WHERE path IN (SELECT path FROM pb)
            AND path NOT IN (SELECT new FROM ren)
  UNION ALL SELECT 'M', path, NULL, 1 FROM gb WHERE path IN (SELECT path FROM pa)
  UNION ALL SELECT '-', path, NULL, 1 FROM ga WHERE path NOT IN (SELECT path FROM pb)
  UNION ALL SELECT '+', path, NULL, 1 FROM gb WHERE path NOT IN (SELECT path FROM pa)
)
SELECT DISTINCT kind, path, old_path, ord FROM out ORDER BY path, ord, old_path
"""


def diff(cat: Catalog, ds: int, root: int, ga: int, gb: int | None) -> list[DiffEntry]:
    """Changes in dataset ``ds`` from generation ``ga`` to ``gb`` (None: the live tree)."""
    with read_cursor(cat) as cur:  # a private cursor: live cache misses need not wait for us
        rows = cur.execute(diff_sql(ds, root, ga, gb)).fetchall()
    return [DiffEntry(kind, bytes(path) or b"/", bytes(old) or b"/" if old is not None else None)
            for kind, path, old, _ in rows]
