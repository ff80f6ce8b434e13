"""``ninep restore``: rebuild a store directory from its newest catalog copy in the bucket."""

from __future__ import annotations

import argparse
import shlex

from .common import CommandError, describe, load_config_option

HELP = """\
Rebuilds the store directory DIR (missing or empty) from the newest complete
catalog copy that a store on object storage shipped to its bucket (after
every snapshot and every [server] catalog_copy_interval; `ninep catalog ship`
ships one on demand). Every file of the copy is checked against the copy's
manifest (size and BLAKE3) before anything is written; a damaged copy is
refused, and --copy restores an older one. The restored store records the
same chunk location, so `ninep serve --store DIR` serves it with the same
AWS_* variables or [s3] settings.

What is lost: whatever was committed after the copy restored. Chunks written
after it stay in the bucket unreferenced until gc removes them.

SOURCE is s3://BUCKET/PREFIX/catalogs/STORE-ID, or s3://BUCKET/PREFIX (the
store's chunk location) when only one store ships copies under it, or with
--store-id.

examples:
  ninep restore s3://my-bucket/ninep ./ninep-data
  ninep restore s3://my-bucket/ninep/catalogs/0d7c...e1 ./ninep-data --copy 20261130T045000.123456Z-7
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("restore", help="rebuild a store directory from its catalog copies in the bucket",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE", help="s3://BUCKET/PREFIX[/catalogs/STORE-ID]")
    p.add_argument("store", metavar="DIR", help="the store directory to create (missing or empty)")
    p.add_argument("--store-id", metavar="ID", help="the store whose copies to use, under s3://BUCKET/PREFIX")
    p.add_argument("--copy", metavar="NAME", help="restore this copy (default: the newest complete one)")
    p.add_argument("--config", metavar="FILE", help="a configuration file whose [s3] table gives the "
                   "endpoint and credentials (the AWS_* variables take precedence)")
    p.set_defaults(func=run)


def run(args) -> int:
    from cas.catalogcopy import resolve_url, restore

    from ..storeopen import resolve_s3

    config = load_config_option(args.config)
    values = config.s3.file_values()
    settings = resolve_s3(values) if values else None
    try:
        url = resolve_url(args.source, args.store_id, settings)
        info = restore(url, args.store, settings, copy=args.copy)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot restore from {args.source}: {describe(exc)}") from None
    print(f"restored store {args.store} from {info.url}")
    print(f"  generation {info.generation}, {info.files} files, {info.bytes} bytes, verified")
    print(f"serve it with: ninep serve --store {shlex.quote(args.store)}")
    return 0
