"""``ninep dataset``: create, list and delete datasets of a store no server has open."""

from __future__ import annotations

import argparse

from cas import FsError

from .backend import backend
from .common import CommandError, add_store_option, describe, print_json

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


def _run(args, what: str, fn, *, create: bool = False):
    with backend(args, create=create) as be:
        try:
            return fn(be)
        except FsError as exc:
            raise CommandError(f"{what}: {describe(exc)}") from None


def _create(args) -> int:
    _run(args, f"cannot create dataset {args.name!r}", lambda be: be.create_dataset(args.name), create=True)
    print(f"created dataset {args.name}")
    return 0


def _list(args) -> int:
    rows = _run(args, "cannot list datasets", lambda be: be.list_datasets())
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no datasets")
        return 0
    width = max(len("DATASET"), *(len(r["name"]) for r in rows))
    print(f"{'DATASET':<{width}}  CREATED               SNAPSHOTS")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['created']}  {r['snapshots']}")
    return 0


def _delete(args) -> int:
    _run(args, f"cannot delete dataset {args.name!r}", lambda be: be.delete_dataset(args.name))
    print(f"deleted dataset {args.name}")
    return 0
