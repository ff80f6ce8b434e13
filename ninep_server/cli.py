"""The ``ninep`` command line."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .address import parse_address
from .logs import LEVELS, configure_logging

DEFAULT_STORE = "./ninep-data"
DEFAULT_LISTEN = "tcp:127.0.0.1:5640"

DESCRIPTION = """\
ninep serves directories to QEMU guests and containers over 9P2000.L (the
Linux v9fs dialect), keeping file contents as deduplicated, verified
BLAKE3-named chunks and all metadata in a DuckDB catalog.

Quick start:
  ninep serve                          # store ./ninep-data, tcp:127.0.0.1:5640
  # in a Linux guest (QEMU user networking shows the host as 10.0.2.2):
  mount -t 9p -o trans=tcp,port=5640,version=9p2000.L,msize=512000,access=user 10.0.2.2 /mnt
"""

SERVE_EPILOG = """\
addresses:
  tcp:HOST:PORT   e.g. tcp:127.0.0.1:5640, tcp:[::1]:5640; port 0 picks a free
                  port and the server prints the one it bound
  unix:PATH       a unix socket, created with mode 0600

Once every listener is bound the server prints one line per listener on
standard output ("listening tcp:127.0.0.1:5640"); logs go to standard error.
SIGINT or SIGTERM stops it gracefully: it stops accepting, finishes the
requests in flight, commits and closes the store.
"""


def _address(text: str):
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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

    serve = sub.add_parser(
        "serve",
        help="serve a store over 9P2000.L",
        description="Serve the datasets of a store over 9P2000.L on TCP and unix sockets.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--store", default=DEFAULT_STORE, metavar="DIR", help=f"store directory, created if missing (default: {DEFAULT_STORE})"
    )
    serve.add_argument(
        "--listen",
        action="append",
        type=_address,
        metavar="ADDR",
        help=f"address to listen on; repeat for several (default: {DEFAULT_LISTEN})",
    )
    serve.add_argument("--config", metavar="FILE", help="TOML file declaring exports and limits (see README)")
    serve.set_defaults(func=_cmd_serve)
    return parser


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server import run_server

    listen = args.listen or [parse_address(DEFAULT_LISTEN)]
    return run_server(store_path=args.store, listen=listen, config_path=args.config)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    json = {"auto": None, "console": False, "json": True}[args.log_format]
    configure_logging(args.log_level, json=json)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
