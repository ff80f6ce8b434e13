"""``ninep serve``: serve a store over 9P2000.L."""

from __future__ import annotations

import argparse

from ..address import parse_address
from ..config import ConfigError, load_config, parse_chunks, parse_reserve, parse_size
from .common import DEFAULT_STORE, CommandError

DEFAULT_LISTEN = "tcp:127.0.0.1:5640"

EPILOG = """\
addresses:
  tcp:HOST:PORT   e.g. tcp:127.0.0.1:5640, tcp:[::1]:5640; port 0 picks a free
                  port and the server prints the one it bound
  unix:PATH       a unix socket, created with mode 0600

Once every listener is bound the server prints one line per listener on
standard output ("listening tcp:127.0.0.1:5640"); logs go to standard error.
SIGINT or SIGTERM stops it gracefully: it stops accepting, finishes the
requests in flight, commits and closes the store.

Chunks on object storage: `--chunks s3://BUCKET/PREFIX` (or [server] chunks
in --config) makes a new store keep its file contents in that bucket, with a
bounded local cache in STORE/chunk-cache/ ([s3] cache_size). Credentials and
endpoint come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL,
AWS_REGION and AWS_ALLOW_HTTP, else the [s3] table of --config; they are never
logged. An existing store keeps the backend it was created with: a different
--chunks is refused. `ninep init` creates a store explicitly. If the bucket
becomes unreachable, fsync and commits fail with EIO after retries (nothing
acknowledged is lost) and the server recovers when the bucket returns.

Read-only replica: `--replica s3://BUCKET/PREFIX` serves, on another host, the
snapshots (and the live tree as of the copy) of a store whose chunks are
there, read-only, from the newest catalog copy it shipped (add --store-id when
several stores ship copies under PREFIX). --store is then the replica's
working directory (default: $XDG_CACHE_HOME or ~/.cache, then
ninep/replicas/<hash of the source>).
It looks for a newer copy every --replica-poll seconds (default 60) and moves
to it without disconnecting clients. It registers in the chunk pool as a
replica and publishes the chunks its copy names, so the primary's gc keeps
them; retire it with `ninep pool forget`. Writes fail with EROFS.

Security: 9P over TCP trusts the uid the client claims. Prefer a unix socket,
or use read_only / squash in a --config file for TCP exports (see README).
"""


def _address(text: str):
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _reserve(text: str):
    try:
        return parse_reserve(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size(text: str) -> int:
    try:
        return parse_size(text, "--chunk-memory")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def chunks_location(text: str) -> str:
    """argparse type of --chunks: ``s3://BUCKET/PREFIX``."""
    try:
        return parse_chunks(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve a store over 9P2000.L",
        description="Serve the datasets of a store over 9P2000.L on TCP and unix sockets.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--store", default=None, metavar="DIR", help=f"store directory, created if missing (default: {DEFAULT_STORE}); "
        "with --replica, the replica's working directory"
    )
    serve.add_argument(
        "--listen",
        action="append",
        type=_address,
        metavar="ADDR",
        help=f"address to listen on; repeat for several (default: [server] listen in --config, "
        f"else {DEFAULT_LISTEN})",
    )
    serve.add_argument("--config", metavar="FILE", help="TOML file declaring exports and limits (see README)")
    serve.add_argument(
        "--free-space-reserve",
        type=_reserve,
        metavar="SIZE",
        help="free space kept for the catalog: writes fail with ENOSPC below it; a size (256M, 1G) "
        "or a percentage of the filesystem (5%%); overrides [server] free_space_reserve (default: 64M)",
    )
    serve.add_argument(
        "--chunks",
        type=chunks_location,
        metavar="s3://BUCKET/PREFIX",
        help="keep a new store's chunks in this S3 bucket (overrides [server] chunks; default: the store's "
        "own chunks/ directory); an existing store must have been created with the same location",
    )
    serve.add_argument(
        "--replica",
        metavar="s3://BUCKET/PREFIX[/catalogs/STORE-ID]",
        help="serve another store's snapshots read-only from its catalog copies in this bucket "
        "(see below)",
    )
    serve.add_argument("--store-id", metavar="ID",
                       help="with --replica: the store to replicate, when several ship copies under PREFIX")
    serve.add_argument("--replica-poll", type=_seconds, metavar="SECONDS",
                       help="with --replica: seconds between looks for a newer catalog copy (default: 60)")
    serve.add_argument(
        "--chunk-memory",
        type=_size,
        metavar="SIZE",
        help="bytes of verified chunks kept in memory, so re-reads are copies (256M, 1G; 0: none); "
        "overrides [server] chunk_memory (default: 256M, 48M for chunks on object storage)",
    )
    serve.add_argument(
        "--metadata-memory",
        type=_size,
        metavar="SIZE",
        help="bytes of inode metadata kept in memory for each dataset in use (256M, 1G): records "
        "of recently used inodes and compact rows of many more, so a stat or open needs no "
        "catalog query; overrides [server] metadata_memory (default: 256M)",
    )
    serve.set_defaults(func=_serve)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _serve(args: argparse.Namespace) -> int:
    from ..listen import run_server

    listen = args.listen or _configured_listen(args.config) or [parse_address(DEFAULT_LISTEN)]
    if args.replica:
        from ..replica import DEFAULT_POLL, run_replica

        if args.chunks or args.free_space_reserve:
            raise CommandError("--chunks and --free-space-reserve are for a store; a replica "
                               "reads the chunk location from the catalog copy")
        return run_replica(args.replica, listen, workdir=args.store, store_id=args.store_id,
                           poll=args.replica_poll or DEFAULT_POLL, config_path=args.config,
                           chunk_memory=args.chunk_memory, metadata_memory=args.metadata_memory)
    if args.store_id or args.replica_poll:
        raise CommandError("--store-id and --replica-poll go with --replica")
    return run_server(store_path=args.store or DEFAULT_STORE, listen=listen, config_path=args.config,
                      reserve=args.free_space_reserve, chunks=args.chunks,
                      chunk_memory=args.chunk_memory, metadata_memory=args.metadata_memory)


def _configured_listen(path: str | None) -> list:
    """``[server] listen`` of the configuration file (run_server reports a bad file)."""
    if not path:
        return []
    try:
        return list(load_config(path).listen)
    except ConfigError:
        return []
