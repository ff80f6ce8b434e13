"""``ninep pool``: the members of a shared chunk pool (cas/pool.py): list them, forget a dead one."""

from __future__ import annotations

import argparse
import tempfile
import time

from .common import CommandError, load_config_option, print_json
from .output import human

HELP = """\
Several stores may keep their chunks under one bucket prefix (a chunk pool).
Each registers itself there and publishes the set of chunks it references;
gc deletes only chunks no member's latest set names, and refuses while a
member's set is stale. `list` shows every member with its host, store path,
and the age and size of its latest set; `forget` removes a store whose host
is gone for good, so that gc can run again (its chunks then become garbage).
The bucket is reached with the AWS_* variables, else the [s3] table of --config.

examples:
  ninep pool list s3://bucket/chunks
  ninep pool forget s3://bucket/chunks 3f2a...   # the STORE_ID `list` shows
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pool", help="list the stores of a chunk pool, forget a dead one",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    ls = verbs.add_parser("list", help="every member, its host and its published set")
    ls.add_argument("url", metavar="s3://BUCKET/PREFIX")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--config", metavar="FILE", help="the server's configuration ([s3] table)")
    ls.set_defaults(func=run_list)
    fg = verbs.add_parser("forget", help="remove a dead store from the pool")
    fg.add_argument("url", metavar="s3://BUCKET/PREFIX")
    fg.add_argument("store_id", metavar="STORE_ID")
    fg.add_argument("--config", metavar="FILE", help="the server's configuration ([s3] table)")
    fg.set_defaults(func=run_forget)


def _pool(args, cache: str):
    from cas.errors import StoreFormatError
    from cas.pool import Pool
    from cas.s3chunks import S3Chunks
    from ..storeopen import resolve_s3

    config = load_config_option(args.config)
    try:
        chunks = S3Chunks(args.url, resolve_s3(config.s3.file_values()), cache, 0,
                          chunk_size=1 << 20)
    except (ValueError, StoreFormatError, OSError) as exc:
        raise CommandError(str(exc)) from None
    return chunks, Pool(chunks)


def run_list(args) -> int:
    from cas.pool import ROLE_STORE

    with tempfile.TemporaryDirectory() as cache:
        chunks, pool = _pool(args, cache)
        try:
            members = pool.members()
        finally:
            chunks.close()
    now = time.time()
    if args.json:
        print_json([{"id": m.id, "host": m.host, "path": m.path, "created": m.created,
                     "refreshed": m.refreshed, "age": m.age(now), "sequence": m.sequence,
                     "chunks": m.count, "set_bytes": m.size, "role": m.role} for m in members])
        return 0
    for m in members:
        role = "" if m.role == ROLE_STORE else f"  ({m.role})"
        print(f"{m.id}  {m.host}:{m.path}{role}  set {m.age(now):.0f}s old, {m.count} chunks "
              f"({human(m.size)})")
    return 0


def run_forget(args) -> int:
    with tempfile.TemporaryDirectory() as cache:
        chunks, pool = _pool(args, cache)
        try:
            if not pool.forget(args.store_id):
                raise CommandError(f"no store {args.store_id} in the pool at {chunks.location}")
        finally:
            chunks.close()
    print(f"forgot store {args.store_id}")
    return 0
