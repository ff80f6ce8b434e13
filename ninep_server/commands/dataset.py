"""``ninep dataset``: create, list and delete datasets of a store no server has open."""

from __future__ import annotations

import argparse
import datetime

from cas import FsError

from .common import CommandError, add_store_option, open_store, print_json

HELP = """\
A dataset is one independent file tree, exported under its name as the 9P
aname. These commands work on a store that no server has open.

examples:
  ninep dataset create photos
  ninep dataset list
  ninep dataset delete photos      # and everything in it, snapshots included
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("dataset", help="create, list and delete datasets", description=HELP,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = parser.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    p = cmds.add_parser("create", help="create an empty dataset")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=_create)
    p = cmds.add_parser("list", help="list datasets")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_list)
    p = cmds.add_parser("delete", help="delete a dataset and everything in it")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=_delete)
    for action in cmds.choices.values():
        add_store_option(action)


def _create(args) -> int:
    with open_store(args.store, create=True) as store:
        try:
            store.create_dataset(args.name)
        except FsError as exc:
            raise CommandError(f"cannot create dataset {args.name!r}: {exc.strerror or exc}") from None
    print(f"created dataset {args.name}")
    return 0


def _when(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _list(args) -> int:
    with open_store(args.store) as store:
        rows = store.catalog.query("SELECT name, created_ns FROM datasets ORDER BY id")
    if args.json:
        print_json([{"name": name, "created": _when(ns), "created_ns": ns} for name, ns in rows])
        return 0
    if not rows:
        print("no datasets")
        return 0
    width = max(len("DATASET"), *(len(name) for name, _ in rows))
    print(f"{'DATASET':<{width}}  CREATED")
    for name, ns in rows:
        print(f"{name:<{width}}  {_when(ns)}")
    return 0


def _delete(args) -> int:
    with open_store(args.store) as store:
        try:
            store.delete_dataset(args.name)
        except FsError as exc:
            raise CommandError(f"cannot delete dataset {args.name!r}: {exc.strerror or exc}") from None
    print(f"deleted dataset {args.name}")
    return 0
