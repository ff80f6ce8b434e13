"""The ``ninep`` command line: parses arguments and hands off to ``commands/``."""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .commands import (catalog, dataset, fsck, gc, init, pool, restore, scrub, serve, snapshot,
                       stats, status, transfer, volume)
from .commands.common import CommandError
from .logs import LEVELS, configure_logging

DESCRIPTION = """\
ninep serves directories to QEMU guests and containers over 9P2000.L (the
Linux v9fs dialect), keeping file contents as deduplicated, verified
BLAKE3-named chunks and all metadata in a DuckDB catalog, with instant
snapshots under /.snapshots.

Quick start:
  ninep serve                          # store ./ninep-data, tcp:127.0.0.1:5640
  ninep init DIR --chunks s3://BUCKET/PREFIX   # a store whose chunks live in S3
  # in a Linux guest (QEMU user networking shows the host as 10.0.2.2):
  mount -t 9p -o trans=tcp,port=5640,version=9p2000.L,msize=512000,access=user 10.0.2.2 /mnt

Run "ninep COMMAND --help" for each command's options and examples.
"""

COMMANDS = (init, serve, status, snapshot, dataset, volume, transfer, stats, gc, fsck, scrub, pool, catalog, restore)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ninep", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"ninep {__version__}")
    parser.add_argument(
        "--log-level", choices=LEVELS, default="info", help="least severe log level to print (default: info)"
    )
    parser.add_argument(
        "--log-format",
        choices=("auto", "console", "json"),
        default="auto",
        help="console on a terminal and JSON lines otherwise (default: auto)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    json = {"auto": None, "console": False, "json": True}[args.log_format]
    configure_logging(args.log_level, json=json)
    try:
        return args.func(args)
    except CommandError as exc:
        print(f"ninep: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (e.g. `ninep ... | head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
