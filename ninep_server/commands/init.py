"""``ninep init``: create a store explicitly, choosing where its chunks live."""

from __future__ import annotations

import argparse
import errno
import os
import shlex

from ..config import parse_size
from ..storeopen import is_store
from .common import CommandError, load_config_option, open_store
from .output import human
from .serve import chunks_location

HELP = """\
Creates a store directory (owner-only) with its catalog and the dataset
"main", then prints where its chunks live and how to serve it. A store keeps
the chunk backend and chunk size it was created with: `ninep serve` refuses
a different --chunks later. (`ninep serve --store DIR` also creates a missing
store, with the same options.)

Chunks, the files' contents named by their BLAKE3 hash, go either to the
store's own chunks/ directory (the default) or, with --chunks, to an
S3-compatible bucket, with a bounded local cache in DIR/chunk-cache/
([s3] cache_size in --config). Credentials and endpoint come from the
standard variables, which take precedence over the [s3] table of --config:

  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   credentials
  AWS_ENDPOINT_URL   e.g. http://127.0.0.1:8333 for a local SeaweedFS or MinIO
  AWS_REGION         e.g. us-east-1
  AWS_ALLOW_HTTP     true for a plain-http endpoint

They are checked at once (the bucket must be reachable) and never printed.

examples:
  ninep init ./ninep-data
  AWS_ENDPOINT_URL=http://127.0.0.1:8333 AWS_ALLOW_HTTP=true \\
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... AWS_REGION=us-east-1 \\
    ninep init ./ninep-data --chunks s3://my-bucket/ninep
"""


def _chunk_size(text: str) -> int:
    try:
        size = parse_size(text, "--chunk-size")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 < size <= 16 << 20:
        raise argparse.ArgumentTypeError(f"--chunk-size must be between 1 byte and 16M, not {text}")
    return size


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create a store, choosing where its chunks live (local or S3)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", metavar="STORE", help="directory to create (it must be missing or empty)")
    p.add_argument("--chunks", type=chunks_location, metavar="s3://BUCKET/PREFIX",
                   help="keep the chunks in this S3 bucket under PREFIX (default: [server] chunks in --config, "
                   "else the store's own chunks/ directory)")
    p.add_argument("--chunk-size", type=_chunk_size, metavar="SIZE",
                   help="bytes per chunk, at most 16M (default: 128K for local chunks; the measured S3 "
                   "default otherwise, see README 'Chunks on object storage')")
    p.add_argument("--config", metavar="FILE",
                   help="the server's configuration file: its [s3] table and [server] chunks")
    p.set_defaults(func=run)


def run(args) -> int:
    config = load_config_option(args.config)
    if is_store(args.store):
        raise CommandError(f"{args.store}: {os.strerror(errno.EEXIST)}: it is already a ninep store; "
                           f"serve it with: ninep serve --store {shlex.quote(args.store)}")
    with open_store(args.store, create=True, config=config, chunks=args.chunks,
                    chunk_size=args.chunk_size) as store:
        if "main" not in store.datasets():
            store.create_dataset("main")
        location = store.chunks.location
        stats = store.chunks.stats()
        chunk_size = store.chunk_size
    where = location
    if location.startswith("s3://"):
        where += f", cached locally in {os.path.join(args.store, 'chunk-cache')} (at most {human(stats.cache_limit)})"
    print(f"created store {args.store} with dataset main")
    print(f"  chunks: {where}")
    print(f"  chunk size: {human(chunk_size)}")
    serve = f"ninep serve --store {shlex.quote(args.store)}"
    if args.config:
        serve += f" --config {shlex.quote(args.config)}"
    print(f"serve it with: {serve}")
    if location.startswith("s3://"):
        print("  (with the same AWS_* variables or [s3] settings: every command that opens the store needs them)")
    return 0
