"""``ninep gc``: delete chunks that no dataset or snapshot references."""

from __future__ import annotations

import argparse
import math
from .backend import backend
from cas.pool import PoolStaleError

from .common import CommandError, add_store_option, print_json
from .output import as_obj, human, progress_callback

HELP = """\
Mark and sweep over every dataset and snapshot: chunk files that no catalog
row references (left by deleted snapshots or by commits interrupted by a
crash) are deleted. A running server does this in the background every
gc_interval seconds (see the [server] section of the config).

A store whose chunks are in a shared chunk pool (several stores on one
bucket prefix) publishes its chunk set first, keeps every chunk another
member's latest published set names and every object younger than the grace
period, and refuses while a member's set is stale (see `ninep pool list`).

examples:
  ninep gc --dry-run        # what would be freed
  ninep gc
  ninep gc --force          # in a pool: proceed past stale members (their last sets still count)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gc", help="delete unreferenced chunks", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="report what would be freed, delete nothing")
    p.add_argument("--force", action="store_true",
                   help="in a chunk pool: run even if a member's published set is stale")
    p.add_argument("--grace", type=float, metavar="SECONDS",
                   help="in a chunk pool: keep unreferenced objects younger than this "
                        "(default: the store's, [s3] pool_grace)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_store_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.grace is not None and not (math.isfinite(args.grace) and args.grace >= 0):
        raise CommandError("--grace must be a number of seconds >= 0")
    try:
        with backend(args) as be, progress_callback("gc", bytes_unit=False) as progress:
            result = be.gc(dry_run=args.dry_run, progress=progress, force=args.force,
                           grace=args.grace)
    except PoolStaleError as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        print_json(result)
        return 0
    report = as_obj(result)
    verb = "would free" if report.dry_run else "freed"
    print(f"{verb} {report.chunks_freed} chunks ({human(report.bytes_freed)}, "
          f"{report.bytes_freed} bytes) of {report.chunks_scanned} "
          f"({human(report.bytes_scanned)}); {report.chunks_referenced} referenced; "
          f"{report.skipped_in_flight} kept as in flight; {report.seconds:.2f}s")
    if report.kept_by_pool or report.kept_young:
        print(f"pool: {report.kept_by_pool} kept for other stores, {report.kept_young} younger "
              f"than the grace period")
    return 0
