"""Catalog views for admin tools: visibility predicates, paths and chunk users.

Every versioned row carries ``born``/``died`` generations. The live tree sees
``died IS NULL``; a snapshot taken at generation g sees
``born <= g AND (died IS NULL OR died > g)``. The helpers here read the catalog
on a private DuckDB cursor (see :func:`read_cursor`) so long admin queries do
not hold the commit's connection lock.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa

from .catalog import Catalog, visible

LIVE = None  # the generation argument that means "the live tree"


@contextmanager
def read_cursor(catalog: Catalog) -> Iterator:
    """A private DuckDB cursor on the catalog (its own transaction per query)."""
    with catalog.cursor() as cur:
        yield cur


@dataclass(frozen=True)
class View:
    """The live tree of a dataset (``snapshot`` None) or one of its snapshots."""

    dataset_id: int
    dataset: str
    root: int
    snapshot: str | None = None
    gen: int | None = None

    def label(self) -> str:
        return self.dataset if self.snapshot is None else f"{self.dataset}@{self.snapshot}"


def all_views(cur) -> list[View]:
    """The live view of every dataset followed by every snapshot view."""
    datasets = cur.execute("SELECT id, name, root FROM datasets ORDER BY id").fetchall()
    views = [View(ds, name, root) for ds, name, root in datasets]
    by_id = {ds: (name, root) for ds, name, root in datasets}
    for sid, ds, name, gen in cur.execute(
            "SELECT id, dataset, name, gen FROM snapshots ORDER BY gen, id").fetchall():
        if ds in by_id:
            views.append(View(ds, by_id[ds][0], by_id[ds][1], name, gen))
    return views


def paths_of(cur, view: View, inos, limit: int = 4096) -> dict[int, list[bytes]]:
    """Every path (hard links give several) of each inode in ``inos`` within ``view``.

    Walks entries upward to the dataset root, one query per directory level.
    Inodes unreachable from the root (or in a cycle) get no path.
    """
    result: dict[int, list[bytes]] = {ino: [] for ino in inos}
    if view.root in result:
        result[view.root].append(b"/")
    # pending: (ino to resolve, origin ino, path suffix below it)
    pending = [(ino, ino, b"") for ino in result if ino != view.root]
    depth = 0
    while pending and depth < limit:
        depth += 1
        wanted = sorted({p[0] for p in pending})
        cur.register("_want", pa.table({"child": pa.array(wanted, pa.int64())}))
        try:
            rows = cur.execute(
                f"SELECT e.child, e.parent, e.name FROM entries e "
                f"JOIN _want w ON w.child = e.child WHERE {visible('e', view.gen)}").fetchall()
        finally:
            cur.unregister("_want")
        ups: dict[int, list[tuple[int, bytes]]] = {}
        for child, parent, name in rows:
            ups.setdefault(child, []).append((parent, bytes(name)))
        nxt = []
        for ino, origin, suffix in pending:
            for parent, name in ups.get(ino, ()):
                path = name + (b"/" + suffix if suffix else b"")
                if parent == view.root:
                    result[origin].append(b"/" + path)
                elif len(nxt) < 100_000:
                    nxt.append((parent, origin, path))
        pending = nxt
    for paths in result.values():
        paths.sort()
    return result


@dataclass
class ChunkUse:
    """One place a chunk is used: a file (by path) at a chunk index, in a view."""

    view: str
    path: str
    ino: int
    index: int


def chunk_users(cur, hashes: list[str]) -> dict[str, list[ChunkUse]]:
    """For each hash, the files (live and in snapshots) whose extents use it."""
    out: dict[str, list[ChunkUse]] = {h: [] for h in hashes}
    if not hashes:
        return out
    cur.register("_h", pa.table({"hash": pa.array(sorted(set(hashes)), pa.string())}))
    try:
        rows = cur.execute(
            "SELECT e.hash, e.ino, e.idx, e.born, e.died FROM extents e JOIN _h USING (hash)"
        ).fetchall()
        ino_ds = dict(cur.execute(
            "SELECT DISTINCT i.ino, i.dataset FROM inodes i "
            "JOIN (SELECT DISTINCT e.ino FROM extents e JOIN _h USING (hash)) x ON x.ino = i.ino"
        ).fetchall())
    finally:
        cur.unregister("_h")
    views = all_views(cur)
    wanted: dict[View, set[int]] = {}
    hits: list[tuple[str, View, int, int]] = []
    for h, ino, idx, born, died in rows:
        ds = ino_ds.get(ino)
        for v in views:
            if v.dataset_id != ds:
                continue
            if v.gen is None:
                ok = died is None
            else:
                ok = born <= v.gen and (died is None or died > v.gen)
            if ok:
                wanted.setdefault(v, set()).add(ino)
                hits.append((h, v, ino, idx))
        if ds is None or not any(v.dataset_id == ds for v in views):
            hits.append((h, View(-1, "?", 0), ino, idx))
    paths = {v: paths_of(cur, v, inos) for v, inos in wanted.items()}
    for h, v, ino, idx in hits:
        ps = paths.get(v, {}).get(ino) or [f"<inode {ino}, unreachable>".encode()]
        for p in ps:
            out[h].append(ChunkUse(v.label(), p.decode("utf-8", "backslashreplace"), ino, idx))
    return out
