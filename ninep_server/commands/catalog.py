"""``ninep catalog``: catalog copies in the bucket (ship one now, list them)."""

from __future__ import annotations

import argparse
import os

from .common import DEFAULT_STORE, CommandError, describe, load_config_option, open_store

HELP = """\
A store whose chunks are on object storage ships a consistent copy of its
catalog to s3://BUCKET/PREFIX/catalogs/STORE-ID/ after every snapshot and
every [server] catalog_copy_interval seconds, keeping the newest
[server] catalog_copy_keep copies. `ninep restore` rebuilds the store from
the newest one.

  ship    ship a copy now, on a stopped store (a running server ships after
          every snapshot: `ninep snapshot create` ships one through it)
  list    the complete copies of the store
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("catalog", help="catalog copies in the bucket, for disaster recovery",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    ship = verbs.add_parser("ship", help="ship a catalog copy to the bucket now")
    add_store_option(ship)
    ship.add_argument("--keep", type=int, metavar="N",
                      help="copies to keep (default: [server] catalog_copy_keep, 24)")
    ship.set_defaults(func=_ship)
    lst = verbs.add_parser("list", help="list the store's complete catalog copies")
    add_store_option(lst)
    lst.set_defaults(func=_list)


def add_store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", default=DEFAULT_STORE, metavar="DIR",
                        help=f"store directory, not served (default: {DEFAULT_STORE})")
    parser.add_argument("--config", metavar="FILE", help="a configuration file: its [s3] table (the AWS_* "
                        "variables take precedence) and [server] catalog_copy_keep")


def _settings(config):
    from ..storeopen import resolve_s3

    values = config.s3.file_values()
    return resolve_s3(values) if values else None


def _refuse_if_served(store: str) -> None:
    from .backend import answering_socket

    if answering_socket(os.path.join(store, "admin.sock")):
        raise CommandError(f"a server is running on {store}: it ships a catalog copy after every snapshot and "
                           f"every [server] catalog_copy_interval; `ninep snapshot create DATASET@NAME "
                           f"--store {store}` ships one now")


def _ship(args) -> int:
    from cas.catalogcopy import ship

    _refuse_if_served(args.store)
    config = load_config_option(args.config)
    keep = args.keep if args.keep is not None else config.catalog_copy_keep
    if keep < 1:
        raise CommandError("--keep must be at least 1")
    with open_store(args.store, config=config) as store:
        try:
            info = ship(store, _settings(config), keep=keep)
        except OSError as exc:
            raise CommandError(f"cannot ship a catalog copy of {args.store}: {describe(exc)}") from None
    print(f"shipped {info.url} (generation {info.generation}, {info.files} files, {info.bytes} bytes)")
    return 0


def _list(args) -> int:
    from cas.catalogcopy import copies, store_id

    _refuse_if_served(args.store)
    config = load_config_option(args.config)
    with open_store(args.store, config=config) as store:
        location = store.chunks.location
        if not location.startswith("s3://"):
            raise CommandError(f"{args.store}: its chunks are local; it has no catalog copies")
        url = f"{location}/catalogs/{store_id(store)}"
        try:
            names = copies(url, _settings(config))
        except OSError as exc:
            raise CommandError(f"cannot list {url}: {describe(exc)}") from None
    print(url)
    for name in names:
        print(f"  {name}")
    return 0
