"""``ninep stats``: space and object counts per dataset and for the store."""

from __future__ import annotations

import argparse
from .backend import backend
from .common import add_store_option, print_json
from .output import as_obj, human

HELP = """\
Per dataset and for the whole store: logical bytes (file sizes), referenced
and unique chunk bytes, dedup ratio (referenced / unique), chunk count, file
and directory counts, snapshots and the space each holds exclusively (what
deleting it frees). These figures come from the catalog.

Then where the chunks live (the store's chunks/ directory or s3://BUCKET/PREFIX)
and, for a store on object storage, the size and bound of its local chunk
cache. The running server's uploads, downloads, dedup skips, cache hit ratio
and failed requests are in `ninep status` and on /metrics.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="space usage, dedup ratio, counts", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_store_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    with backend(args) as be:
        result = be.stats()
    if args.json:
        print_json(result)
        return 0
    st = as_obj(result)
    print(f"store: {st.files} files, {st.directories} directories, {st.snapshot_count} snapshots")
    print(f"  logical {human(st.logical_bytes)}, referenced {human(st.referenced_bytes)}, "
          f"unique {human(st.unique_bytes)} in {st.chunks} chunks, dedup ratio {st.dedup_ratio:.2f}")
    for d in st.datasets:
        print(f"dataset {d.name}: {d.files} files, {d.directories} directories, "
              f"{d.symlinks} symlinks, {d.other} other, {len(d.snapshots)} snapshots")
        print(f"  logical {human(d.logical_bytes)}, live data {human(d.live_data_bytes)}, "
              f"referenced {human(d.referenced_bytes)}, unique {human(d.unique_bytes)} in "
              f"{d.chunks} chunks, dedup ratio {d.dedup_ratio:.2f}")
        for s in d.snapshots:
            print(f"  snapshot {d.name}@{s.name}: refers to {human(s.referenced_bytes)}, "
                  f"holds {human(s.exclusive_bytes)} exclusively")
    cb = st.chunk_backend
    print(f"chunks: {cb.location}")
    if cb.location.startswith("s3://"):
        print(f"  local cache {human(cb.cache_bytes)} of {human(cb.cache_limit)}")
    return 0
