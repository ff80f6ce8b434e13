"""``ninep scrub``: re-hash every chunk and name the files using damaged ones."""

from __future__ import annotations

import argparse
from .backend import backend
from .common import add_store_option, print_json
from .output import as_obj, human, progress_callback

HELP = """\
Reads every chunk file and checks that its content still hashes to its name
(in parallel threads). Lists each damaged or missing chunk with every file
and snapshot that uses it. Reads of a damaged chunk fail with EIO; nothing
is changed. Exits 1 if any chunk is damaged.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scrub", help="verify every chunk's hash", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None, metavar="N", help="hashing threads")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_store_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    with backend(args) as be, progress_callback("scrub") as progress:
        result = be.scrub(threads=args.threads, progress=progress)
    if args.json:
        print_json(result)
        return 0 if result["clean"] else 1
    report = as_obj(result)
    print(f"scrubbed {report.chunks} chunks, {human(report.bytes)} in {report.seconds:.2f}s "
          f"({human(report.bytes_per_second)}/s)")
    for d in report.damaged:
        print(f"DAMAGED chunk {d.hash}: {d.problem}")
        if not d.users:
            print("  used by nothing (gc will remove it)")
        for u in d.users:
            print(f"  used by {u.view}:{u.path} (inode {u.ino}, chunk {u.index})")
    if report.damaged:
        print(f"{len(report.damaged)} damaged chunk(s)")
        return 1
    print("no damage")
    return 0
