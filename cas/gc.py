"""Garbage collection: mark and sweep of stored chunks against the whole catalog.

A chunk is *referenced* if any ``extents`` row names it, live or closed (a
closed row is what a snapshot sees), in any dataset. Everything else in the
chunk directory is garbage: chunks of deleted snapshots, and chunks written
by commits that never completed (a crash between storing and committing).

Protocol (safe against a server writing at the same time, DESIGN.md §6)::

  0. (optional) commit, so deletions made in memory reach the catalog.
  1. list   every stored chunk and its size          no lock
  2. mark   SELECT DISTINCT hash FROM extents        private cursor, no lock
  3. candidates = listed - marked
  4. sweep, in batches, each under the store's commit lock:
       a. re-check: of the batch, keep what *still* has no extents row
       b. ChunkBackend.delete_if_unpinned(h): the pin check and the start of
          the deletion happen under the backend's lock (a pin taken during
          the deletion waits for it, see cas/chunkbase.py)

Why it is safe:

- *In-flight set.* Every chunk a writer stores or finds by dedup is pinned
  before the existence check (``put(pin=True)``: pin, then look for the
  file, or the bucket's put-if-absent). The pin stays until the commit that
  records the reference has applied its catalog transaction; only then, still under the commit lock,
  is it released. So a hash is always either pinned or named by an extents
  row, from the moment a writer decides to use it.
- *Dedup hit on garbage.* If a writer pins ``h`` after gc re-checked it, the
  pin makes ``delete_if_unpinned`` refuse. If gc started deleting it first,
  the writer's pin waits until the deletion is done, and its existence check
  (which follows the pin) finds nothing and stores the chunk again.
- *Commits during mark.* A chunk referenced by a commit that applied after
  the mark query is not in ``marked``; step 4a runs under the commit lock,
  where no commit is half-applied, and sees the new row.
- *New files after listing* are never candidates.
- *Readers* that planned a read before an overwrite's commit retry when the
  old chunk vanishes (``Volume.read``).

In a shared chunk pool (cas/pool.py) step 1 also publishes this store's set
(so it is current) and lists every object's time, and step 3 also subtracts
every other member's latest published set (refusing, unless ``force``, when
one is stale) and keeps every object younger than the grace period: uploads
of other stores whose commits are in flight, and their dedup hits (which
re-upload objects older than ``cas.pool.TOUCH_AGE``). Times are compared by
the object store's clock: the age of an object is measured against the time
of the set just published.

A store on object storage that ships catalog copies (cas/catalogcopy.py) also
marks every chunk its copies in the bucket name (and publishes them in its set), holding ``Store.copy_lock``
so that no copy is shipped between that mark and the end of the sweep.

The commit lock is held only per sweep batch (one anti-join and up to
``batch`` unlinks), so commits and fsyncs keep flowing during a long gc.
"""

from __future__ import annotations

import errno
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import structlog

from .catalogcopy import copy_references
from .errors import FsError
from .views import read_cursor

log = structlog.get_logger(__name__)


class Progress(Protocol):
    """Progress callback: ``progress(phase, advance, total)``; phases: list, sweep."""

    def __call__(self, phase: str, advance: int, total: int) -> None: ...


@dataclass
class GcReport:
    """What one gc run found and did."""

    dry_run: bool
    chunks_scanned: int = 0
    bytes_scanned: int = 0
    chunks_referenced: int = 0
    candidates: int = 0
    chunks_freed: int = 0       # deleted (or, with dry_run, that would be)
    bytes_freed: int = 0
    skipped_in_flight: int = 0  # garbage at mark time, then pinned or referenced
    kept_by_pool: int = 0       # named only by another pool member's published set
    kept_young: int = 0         # unreferenced, but younger than the grace period
    seconds: float = 0.0
    sample: list[str] = field(default_factory=list)  # up to 20 freed hashes


def list_chunks(chunks, progress: Callable | None = None) -> dict[str, int]:
    """Every chunk stored in ``chunks`` (a ChunkBackend) with its size in bytes."""
    return chunks.sizes((lambda: progress("list", 1, 256)) if progress else None)


def referenced_hashes(catalog) -> set[str]:
    """Every hash any extents row (live or snapshot) names."""
    with read_cursor(catalog) as cur:
        return {r[0] for r in cur.execute("SELECT DISTINCT hash FROM extents").fetchall()}


def collect(store, *, dry_run: bool = False, commit: bool = True, batch: int = 2048,
            progress: Progress | None = None, force: bool = False,
            grace: float | None = None) -> GcReport:
    """Run one mark-and-sweep over ``store``; see the module docstring for the protocol.

    For a store in a chunk pool, ``grace`` is the grace period in seconds
    (default: the pool's, ``Store.open(pool_grace=...)``) and ``force`` proceeds past stale members
    (otherwise :class:`cas.pool.PoolStaleError`).
    """
    if grace is not None and not (math.isfinite(grace) and grace >= 0):
        # a NaN would make every object old enough to delete
        raise FsError(errno.EINVAL, f"grace must be a number of seconds >= 0, not {grace!r}")
    if store.replica:
        # its catalog is a copy of another store's: chunks it does not name are not garbage
        raise FsError(errno.EROFS, f"{store.path}: gc never runs on a read-only replica's working "
                      f"copy; run it on the store it replicates")
    t0 = time.monotonic()
    report = GcReport(dry_run=dry_run)
    if commit:
        store.commit()
    with store.copy_lock:  # no catalog copy appears unseen between the mark and the sweep
        _collect(store, report, dry_run, batch, progress, force, grace)
    report.seconds = time.monotonic() - t0
    log.info("gc finished", dry_run=dry_run, scanned=report.chunks_scanned,
             freed=report.chunks_freed, bytes_freed=report.bytes_freed,
             skipped_in_flight=report.skipped_in_flight, kept_by_pool=report.kept_by_pool,
             kept_young=report.kept_young, seconds=round(report.seconds, 3))
    return report


def store_references(store) -> set[str]:
    """Every chunk ``store`` needs: its catalog's, and those of its catalog copies in the bucket.

    A copy shipped before a file was deleted still names its chunks, and a
    restore of it needs them (cas/catalogcopy.py). This is also the set a pool
    member publishes (cas/pool.py).
    """
    return referenced_hashes(store.catalog) | copy_references(store)


def _collect(store, report: GcReport, dry_run: bool, batch: int, progress: Progress | None,
             force: bool, grace: float | None) -> None:
    chunks, catalog = store.chunks, store.catalog
    pool = store.pool
    marked = store_references(store)
    if pool is None:
        listed = list_chunks(chunks, progress)
        candidates = [h for h in listed if h not in marked]
    else:
        pool.publish(marked)
        now = pool.published_at  # before the listing: an object listed later is not older
        others = pool.others_referenced(force=force)
        cutoff = now - (pool.grace if grace is None else grace)
        times = chunks.listing()
        if progress:
            progress("list", 256, 256)
        listed = {h: size for h, (size, _) in times.items()}
        candidates = []
        for h, (_, mtime) in times.items():
            if h in marked:
                continue
            if h in others:
                report.kept_by_pool += 1
            elif mtime > cutoff:
                report.kept_young += 1
            else:
                candidates.append(h)
    report.chunks_scanned = len(listed)
    report.bytes_scanned = sum(listed.values())
    report.chunks_referenced = len(marked)
    report.candidates = len(candidates)
    total = len(candidates)
    for start in range(0, total, batch):
        part = candidates[start:start + batch]
        with store.commits.commit_lock:
            still = set(catalog.unreferenced(part))
            for h in part:
                if h not in still:
                    report.skipped_in_flight += 1
                    continue
                if dry_run:
                    ok = not chunks.pinned(h)
                else:
                    ok = chunks.delete_if_unpinned(h)
                if ok:
                    report.chunks_freed += 1
                    report.bytes_freed += listed[h]
                    if len(report.sample) < 20:
                        report.sample.append(h)
                elif chunks.has(h):
                    report.skipped_in_flight += 1
        if progress:
            progress("sweep", len(part), total)
