"""fsck: the catalog's internal consistency, checked against the chunk store.

Checks, for the live tree of every dataset and for every snapshot:

- dataset roots exist and are directories; every entry names a live inode
  and sits in a live directory; no duplicate entries or inode rows;
- nlink counts match the entries (files: one per entry; directories:
  2 + subdirectories); every inode is linked; no directory cycles;
- every extent belongs to a regular file, lies within its size, and its chunk
  exists with the recorded length; xattrs belong to live inodes;
- snapshot rows are coherent (dataset exists, unique names, generations in
  range, ``born < died``, what a snapshot sees is a tree whose entries name
  inodes visible to it);
- orphan chunks: chunk files no catalog row references (garbage, not damage).

``repair=True`` fixes what needs no guessing: nlink counts (written through
the normal commit path, so snapshots keep their view), orphan chunks (one
gc run) and store files other local users could read (made owner-only; they
are warnings, not damage). Everything else is listed as not fixable. The catalog checks run
under the store's commit lock, so a live server's commits wait meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from . import gc as gcmod
from .pool import PoolStaleError
from . import perms
from .catalog import visible
from .views import all_views, chunk_users, read_cursor

log = structlog.get_logger(__name__)

S_IFDIR = 0o040000
S_IFREG = 0o100000
_FMT = 0o170000


@dataclass
class Finding:
    """One problem. ``fixable`` problems are fixed by ``repair`` (then ``fixed``)."""

    kind: str
    message: str
    fixable: bool = False
    fixed: bool = False


@dataclass
class FsckReport:
    """The result of :func:`fsck`."""

    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    orphan_chunks: int = 0
    orphan_bytes: int = 0
    orphans_freed: int = 0
    loose_modes: int = 0     # store paths other local users could read (see cas/perms.py)
    modes_fixed: int = 0
    datasets: int = 0
    snapshots: int = 0
    inodes: int = 0
    chunks: int = 0
    repaired: bool = False

    @property
    def damage(self) -> list[Finding]:
        """Problems still present (not fixed). Orphan chunks are not damage."""
        return [f for f in self.findings if not f.fixed]

    @property
    def clean(self) -> bool:
        return not self.damage

    def add(self, kind: str, message: str, fixable: bool = False) -> None:
        self.findings.append(Finding(kind, message, fixable))


def fsck(store, *, repair: bool = False) -> FsckReport:
    """Check ``store`` (committing first); with ``repair`` fix nlink counts and orphans."""
    report = FsckReport(repaired=repair)
    commits = store.commits
    with commits.commit_lock:
        commits.commit_locked()
        nlink_fixes = _check_catalog(store, report)
        _check_snapshots(store, report)
        listed = gcmod.list_chunks(store.chunks)
        _check_chunks(store, report, listed)
        if repair and nlink_fixes:
            _fix_nlinks(store, nlink_fixes)
            commits.commit_locked()
            for f in report.findings:
                if f.kind == "nlink":
                    f.fixed = True
    if repair and report.orphan_chunks:
        try:
            report.orphans_freed = gcmod.collect(store, commit=False).chunks_freed
        except PoolStaleError as exc:
            log.warning("fsck --repair left orphan chunks in place", reason=str(exc))
    _check_modes(store, report, repair)
    log.info("fsck finished", damage=len(report.damage), orphan_chunks=report.orphan_chunks,
             repaired=repair)
    return report


def _name(b) -> str:
    return bytes(b).decode("utf-8", "backslashreplace")


def _check_catalog(store, report: FsckReport) -> list[tuple[int, int, int]]:
    """Live-tree checks; returns nlink fixes [(ino, dataset id, expected)]."""
    q = store.catalog.query
    live = "died IS NULL"
    datasets = q("SELECT id, name, root FROM datasets ORDER BY id")
    report.datasets = len(datasets)
    ds_name = {ds: name for ds, name, _ in datasets}
    roots = {root: ds for ds, _, root in datasets}
    for ds, name, root in datasets:
        r = q(f"SELECT mode FROM inodes WHERE ino = ? AND {live}", [root])
        if not r:
            report.add("root", f"dataset {name}: root inode {root} missing")
        elif r[0][0] & _FMT != S_IFDIR:
            report.add("root", f"dataset {name}: root inode {root} is not a directory")
    for parent, name, child in q(
            f"SELECT parent, name, child FROM entries e WHERE e.{live} AND NOT EXISTS "
            f"(SELECT 1 FROM inodes i WHERE i.ino = e.child AND i.{live}) ORDER BY parent, name"):
        report.add("dangling-entry", f"entry {_name(name)!r} in directory {parent} "
                   f"names missing inode {child}")
    for parent, name in q(
            f"SELECT parent, name FROM entries e WHERE e.{live} AND NOT EXISTS "
            f"(SELECT 1 FROM inodes i WHERE i.ino = e.parent AND i.{live} "
            f"AND (i.mode & {_FMT}) = {S_IFDIR}) ORDER BY parent, name"):
        report.add("bad-parent", f"entry {_name(name)!r}: parent {parent} is not a live directory")
    for parent, name, n in q(f"SELECT parent, name, count(*) FROM entries WHERE {live} "
                             f"GROUP BY parent, name HAVING count(*) > 1"):
        report.add("duplicate-entry", f"entry {_name(name)!r} in directory {parent} appears {n} times")
    for ino, n in q(f"SELECT ino, count(*) FROM inodes WHERE {live} GROUP BY ino HAVING count(*) > 1"):
        report.add("duplicate-inode", f"inode {ino} has {n} live rows")
    fixes: list[tuple[int, int, int]] = []
    rows = q(f"""
        SELECT i.ino, i.dataset, i.mode, i.nlink, coalesce(r.refs, 0), coalesce(s.subdirs, 0)
        FROM inodes i
        LEFT JOIN (SELECT child, count(*) refs FROM entries WHERE {live} GROUP BY child) r
               ON r.child = i.ino
        LEFT JOIN (SELECT parent, count(*) subdirs FROM entries WHERE {live}
                   AND type = {S_IFDIR} GROUP BY parent) s ON s.parent = i.ino
        WHERE i.{live}""")
    report.inodes = len(rows)
    for ino, ds, mode, nlink, refs, subdirs in rows:
        is_dir = mode & _FMT == S_IFDIR
        if ds not in ds_name:
            report.add("inode-dataset", f"inode {ino} belongs to missing dataset {ds}")
            continue
        if ino in roots:
            if refs:
                report.add("root-linked", f"root inode {ino} of {ds_name[ds]} is linked from a directory")
            want = 2 + subdirs
        elif refs == 0:
            if nlink > 0:
                report.add("unlinked-inode", f"inode {ino} in {ds_name[ds]} (nlink {nlink}) is "
                           "not linked from any directory")
            continue
        elif is_dir:
            if refs != 1:
                report.add("dir-links", f"directory {ino} in {ds_name[ds]} is linked {refs} times")
            want = 2 + subdirs
        else:
            want = refs
        if nlink != want:
            report.add("nlink", f"inode {ino} in {ds_name[ds]}: nlink {nlink}, expected {want}",
                       fixable=True)
            fixes.append((ino, ds, want))
    _check_cycles(q, report, roots)
    cs = store.chunk_size
    for ino, idx, h in q(f"SELECT ino, idx, hash FROM extents e WHERE e.{live} AND NOT EXISTS "
                         f"(SELECT 1 FROM inodes i WHERE i.ino = e.ino AND i.{live})"):
        report.add("extent-orphan", f"extent {ino}[{idx}] -> chunk {h}: inode {ino} missing")
    for ino, idx, mode in q(f"SELECT e.ino, e.idx, i.mode FROM extents e JOIN inodes i "
                            f"ON i.ino = e.ino AND i.{live} WHERE e.{live} "
                            f"AND (i.mode & {_FMT}) <> {S_IFREG}"):
        report.add("extent-type", f"extent {ino}[{idx}] on a non-regular inode (mode {mode:o})")
    for ino, idx, length, size in q(
            f"SELECT e.ino, e.idx, e.length, i.size FROM extents e JOIN inodes i "
            f"ON i.ino = e.ino AND i.{live} WHERE e.{live} "
            f"AND (e.idx * {cs} + e.length > i.size OR e.length > {cs} OR e.length <= 0)"):
        report.add("extent-size", f"extent {ino}[{idx}] length {length} does not fit file size {size}")
    for ino, idx, n in q(f"SELECT ino, idx, count(*) FROM extents WHERE {live} "
                         f"GROUP BY ino, idx HAVING count(*) > 1"):
        report.add("extent-dup", f"extent {ino}[{idx}] has {n} live rows")
    for ino, name in q(f"SELECT ino, name FROM xattrs x WHERE x.{live} AND NOT EXISTS "
                       f"(SELECT 1 FROM inodes i WHERE i.ino = x.ino AND i.{live})"):
        report.add("xattr-orphan", f"xattr {_name(name)!r} of missing inode {ino}")
    (max_ino,) = q("SELECT coalesce(max(ino), 0) FROM inodes")[0]
    (next_ino,) = q("SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'next_ino'")[0]
    if next_ino <= max_ino:
        report.add("next-ino", f"next_ino {next_ino} <= largest inode number {max_ino}")
    return fixes


def _check_cycles(q, report: FsckReport, roots: dict[int, int]) -> None:
    """Directories unreachable from a root through a loop of parent links."""
    edges = q(f"SELECT parent, child FROM entries WHERE died IS NULL AND type = {S_IFDIR}")
    parent_of: dict[int, int] = {}
    kids: dict[int, list[int]] = {}
    for parent, child in edges:
        parent_of.setdefault(child, parent)
        kids.setdefault(parent, []).append(child)
    reached = set(roots)
    todo = list(roots)
    while todo:
        for c in kids.get(todo.pop(), ()):
            if c not in reached:
                reached.add(c)
                todo.append(c)
    reported: set[int] = set()
    for start in parent_of:
        if start in reached or start in reported:
            continue
        seen: list[int] = []
        cur = start
        while cur in parent_of and cur not in seen and cur not in reached and cur not in reported:
            seen.append(cur)
            cur = parent_of[cur]
        if cur in seen:
            loop = seen[seen.index(cur):]
            reported.update(loop)
            report.add("cycle", "directory cycle: " + " -> ".join(str(i) for i in loop + [cur]))
        reported.update(seen)


def _check_snapshots(store, report: FsckReport) -> None:
    q = store.catalog.query
    gen = int(q("SELECT value FROM meta WHERE key = 'generation'")[0][0])
    snaps = q("SELECT s.id, s.dataset, s.name, s.gen, d.name FROM snapshots s "
              "LEFT JOIN datasets d ON d.id = s.dataset ORDER BY s.gen, s.id")
    report.snapshots = len(snaps)
    for sid, ds, name, g, dname in snaps:
        if dname is None:
            report.add("snapshot", f"snapshot {name!r} (id {sid}) belongs to missing dataset {ds}")
        if g is None or g < 1 or g >= gen:
            report.add("snapshot", f"snapshot {dname}@{name}: generation {g} outside [1, {gen})")
    for ds, name, n in q("SELECT dataset, name, count(*) FROM snapshots "
                         "GROUP BY dataset, name HAVING count(*) > 1"):
        report.add("snapshot", f"snapshot name {name!r} used {n} times in dataset {ds}")
    for table in ("inodes", "entries", "extents", "xattrs"):
        (bad,) = q(f"SELECT count(*) FROM {table} WHERE born IS NULL OR born < 1 OR born > {gen} "
                   f"OR (died IS NOT NULL AND (died <= born OR died > {gen}))")[0]
        if bad:
            report.add("snapshot-rows", f"{table}: {bad} rows with impossible born/died generations")
    with read_cursor(store.catalog) as cur:
        for v in all_views(cur):
            if v.gen is None:
                continue
            label = v.label()
            vi, ve = visible("i", v.gen), visible("e", v.gen)
            r = cur.execute(f"SELECT count(*) FROM inodes i WHERE i.ino = ? AND {vi}",
                            [v.root]).fetchone()[0]
            if r != 1:
                report.add("snapshot-view", f"{label}: root inode {v.root} has {r} visible rows")
            for parent, name, child in cur.execute(
                    f"SELECT e.parent, e.name, e.child FROM entries e "
                    f"JOIN inodes p ON p.ino = e.parent AND {visible('p', v.gen)} "
                    f"AND p.dataset = {v.dataset_id} WHERE {ve} AND NOT EXISTS "
                    f"(SELECT 1 FROM inodes i WHERE i.ino = e.child AND {vi})").fetchall():
                report.add("snapshot-view", f"{label}: entry {_name(name)!r} in directory "
                           f"{parent} names inode {child}, which the snapshot does not see")
            for ino, idx in cur.execute(
                    f"SELECT e.ino, e.idx FROM extents e WHERE {ve} AND e.ino IN "
                    f"(SELECT ino FROM inodes WHERE dataset = {v.dataset_id}) AND NOT EXISTS "
                    f"(SELECT 1 FROM inodes i WHERE i.ino = e.ino AND {vi})").fetchall():
                report.add("snapshot-view", f"{label}: extent {ino}[{idx}] of an inode the "
                           "snapshot does not see")
        # closed rows no snapshot can see: harmless leaks (they keep chunks alive)
        for table in ("inodes", "extents"):
            key = "dataset" if table == "inodes" else "(SELECT max(dataset) FROM inodes i WHERE i.ino = t.ino)"
            (n,) = cur.execute(
                f"SELECT count(*) FROM {table} t WHERE t.died IS NOT NULL AND NOT EXISTS "
                f"(SELECT 1 FROM snapshots s WHERE s.dataset = {key} "
                f"AND t.born <= s.gen AND t.died > s.gen)").fetchone()
            if n:
                report.warnings.append(f"{table}: {n} closed rows that no snapshot sees")


def _check_chunks(store, report: FsckReport, listed: dict[str, int]) -> None:
    q = store.catalog.query
    refs = q("SELECT hash, min(length), max(length) FROM extents GROUP BY hash")
    report.chunks = len(listed)
    bad: dict[str, str] = {}
    for h, lo, hi in refs:
        size = listed.get(h)
        if size is None:
            bad[h] = "missing"
        elif lo != hi:
            bad[h] = f"recorded with different lengths {lo} and {hi}"
        elif size != lo:
            bad[h] = f"has {size} bytes, catalog says {lo}"
    if bad:
        with read_cursor(store.catalog) as cur:
            users = chunk_users(cur, list(bad))
        for h, why in sorted(bad.items()):
            where = "; ".join(f"{u.view}:{u.path} [chunk {u.index}]" for u in users[h][:10])
            more = f" (+{len(users[h]) - 10} more)" if len(users[h]) > 10 else ""
            kind = "missing-chunk" if why == "missing" else "chunk-size"
            report.add(kind, f"chunk {h} {why}; used by {where or 'no live file'}{more}")
    referenced = {r[0] for r in refs}
    pool = store.pool
    if pool is not None:  # in a chunk pool, other members' chunks are not orphans
        referenced |= pool.others_referenced(force=True)
    for h, size in listed.items():
        if h not in referenced and not store.chunks.pinned(h):
            report.orphan_chunks += 1
            report.orphan_bytes += size


def _check_modes(store, report: FsckReport, repair: bool) -> None:
    """Store files must be owner-only: a warning each (not damage), fixed by ``repair``."""
    loose = perms.audit(str(store.path), deep=True)
    report.loose_modes = len(loose)
    if repair:
        report.modes_fixed = perms.repair(loose)
    for item in loose[:20]:
        state = "made owner-only" if repair else "run fsck --repair to make it owner-only"
        report.warnings.append(f"{item.path}: mode {item.mode & 0o7777:04o} lets other local "
                               f"users in; {state}")
    if len(loose) > 20:
        report.warnings.append(f"... and {len(loose) - 20} more paths that are not owner-only")
    if loose:
        log.warning("store paths not owner-only", count=len(loose), fixed=report.modes_fixed)


def _fix_nlinks(store, fixes: list[tuple[int, int, int]]) -> None:
    """Set nlink through the Volume so the change is versioned like any other."""
    names = {ds: name for ds, name, _ in store.catalog.datasets()}
    for ino, ds, want in fixes:
        if not store.volume(names[ds]).repair_nlink(ino, want):
            continue
        log.warning("fsck repaired nlink", ino=ino, dataset=names[ds], nlink=want)
