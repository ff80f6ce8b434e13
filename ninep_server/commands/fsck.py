"""``ninep fsck``: check the catalog's consistency against the chunk store."""

from __future__ import annotations

import argparse
from .backend import backend
from .common import add_store_option, print_json
from .output import as_obj, human

HELP = """\
Checks every dataset's live tree and every snapshot: entries name live
inodes, nlink counts match, no directory cycles, every extent's chunk exists
with the recorded length, snapshot rows are coherent; and counts orphan
chunks (garbage that gc removes). Exits 1 if damage remains.

--repair fixes what needs no guessing (nlink counts, orphan chunks via gc,
store files other local users could read: made owner-only) and lists what
it cannot fix.

examples:
  ninep fsck
  ninep fsck --repair
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fsck", help="check catalog and chunk store consistency", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repair", action="store_true", help="fix nlink counts, delete orphan chunks, make store files owner-only")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_store_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    with backend(args) as be:
        result = be.fsck(repair=args.repair)
    if args.json:
        print_json(result)
        return 0 if result["clean"] else 1
    report = as_obj(result)
    print(f"checked {report.datasets} datasets, {report.snapshots} snapshots, "
          f"{report.inodes} live inodes, {report.chunks} chunk files")
    for f in report.findings:
        state = "FIXED" if f.fixed else ("fixable with --repair" if f.fixable else "NOT FIXABLE")
        print(f"{f.kind}: {f.message} [{state}]")
    for w in report.warnings:
        print(f"warning: {w}")
    if report.orphan_chunks:
        what = f"{report.orphans_freed} deleted" if report.repaired else "gc or fsck --repair deletes them"
        print(f"orphan chunks: {report.orphan_chunks} ({human(report.orphan_bytes)}) referenced by "
              f"nothing; {what}")
    damage = [f for f in report.findings if not f.fixed]
    if damage:
        print(f"DAMAGED: {len(damage)} problem(s) remain")
        return 1
    print("clean")
    return 0
