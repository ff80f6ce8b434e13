#!/usr/bin/env python3
"""Benchmark snapshot creation: its cost must not grow with the tree.

Builds two stores, one with a small tree and one with a large tree (default
1,000 and 200,000 files, each file a few bytes so every file has an inode,
an entry and an extent row), then takes snapshots alternating between the
two stores (interleaved, so machine noise hits both alike):

- ``clean``: snapshot of an unchanged tree (commit finds nothing dirty);
- ``dirty``: one file rewritten just before the snapshot (the barrier commits it).

Prints the median creation time per store and kind, the large/small ratio
(must stay below 2: creation is constant in tree size, DESIGN.md section 5),
and the catalog rows each snapshot of an unchanged tree adds per table.

    python bench/bench_snapshots.py [--small 1000] [--large 200000] [--runs 21] [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import structlog  # noqa: E402

from cas import Store  # noqa: E402

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

TABLES = ("meta", "datasets", "snapshots", "inodes", "entries", "extents", "xattrs")
PER_DIR = 1000


def build(path: str, files: int) -> tuple[Store, list[int]]:
    """A store with ``files`` small files in directories of 1,000; returns (store, some inos)."""
    store = Store.open(path, create=True, cache_bytes=512 << 20)
    store.create_dataset("main")
    vol = store.volume("main")
    inos = []
    d = None
    for i in range(files):
        if i % PER_DIR == 0:
            d = vol.mkdir(vol.root, b"d%d" % (i // PER_DIR), 0o755, 0, 0).ino
            store.commit()
        a = vol.create(d, b"f%d" % i, 0o644, 0, 0)
        vol.write(a.ino, 0, b"x%d" % (i % 64))
        if i % 997 == 0:
            inos.append(a.ino)
    store.commit()
    store.catalog.checkpoint()
    return store, inos


def row_counts(store: Store) -> dict[str, int]:
    return {t: store.catalog.query(f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--large", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=21, help="snapshots per store and kind (>= 20)")
    ap.add_argument("--dir", default=None, help="where to build the stores (default: a temp dir)")
    ap.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = ap.parse_args()

    root = tempfile.mkdtemp(prefix="bench-snap-", dir=args.dir)
    try:
        stores = {}
        for label, n in (("small", args.small), ("large", args.large)):
            t0 = time.perf_counter()
            stores[label] = build(os.path.join(root, label), n)
            print(f"built {label}: {n} files in {time.perf_counter() - t0:.1f} s", flush=True)

        # rows added by a snapshot of an unchanged tree
        added = {}
        for label, (store, _) in stores.items():
            before = row_counts(store)
            store.create_snapshot("main", "rows-1")
            mid = row_counts(store)
            store.create_snapshot("main", "rows-2")
            after = row_counts(store)
            added[label] = [{t: mid[t] - before[t] for t in TABLES if mid[t] != before[t]},
                            {t: after[t] - mid[t] for t in TABLES if after[t] != mid[t]}]

        times: dict[tuple[str, str], list[float]] = {}
        for i in range(args.runs):
            for kind in ("clean", "dirty"):
                for label, (store, inos) in stores.items():  # alternate small, large
                    if kind == "dirty":
                        store.volume("main").write(inos[i % len(inos)], 0, b"y%d" % i)
                    else:
                        store.commit()
                    t0 = time.perf_counter()
                    store.create_snapshot("main", f"{kind}-{i}")
                    times.setdefault((label, kind), []).append(time.perf_counter() - t0)

        result = {"files": {"small": args.small, "large": args.large}, "runs": args.runs,
                  "median_ms": {}, "ratio_large_to_small": {}, "rows_added_per_snapshot": added}
        print(f"\nsnapshot creation, median of {args.runs} interleaved runs:")
        for kind in ("clean", "dirty"):
            med = {label: statistics.median(times[(label, kind)]) * 1e3 for label in ("small", "large")}
            ratio = med["large"] / med["small"]
            result["median_ms"][kind] = med
            result["ratio_large_to_small"][kind] = ratio
            print(f"  {kind:5}  {args.small:>7} files: {med['small']:7.2f} ms   "
                  f"{args.large:>7} files: {med['large']:7.2f} ms   ratio {ratio:.2f}"
                  f"  {'OK' if ratio < 2 else 'TOO SLOW'}")
        print("\ncatalog rows added by a snapshot of an unchanged tree (first, second):")
        for label, (first, second) in added.items():
            print(f"  {label:5}  {first}  {second}")
        if args.json:
            print(json.dumps(result, indent=2))
        for store, _ in stores.values():
            store.close()
        ok = all(r < 2 for r in result["ratio_large_to_small"].values())
        return 0 if ok else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
