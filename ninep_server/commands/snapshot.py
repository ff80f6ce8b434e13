"""``ninep snapshot``: create, list, delete, roll back to, clone and diff snapshots."""

from __future__ import annotations

import argparse
import os
import sys

from cas import FsError

from . import replicate
from .backend import backend
from .common import CommandError, add_store_option, describe, print_json, split_snapshot

HELP = """\
Snapshots are instant, read-only copies of a dataset. Inside every export
they are browsable at /.snapshots/NAME/. Names match
[A-Za-z0-9][A-Za-z0-9_.-]{0,63}. Commands go through the running server
when there is one for the store, and open the store directly otherwise.

examples:
  ninep snapshot create main@before-upgrade
  ninep snapshot list main
  ninep snapshot diff main@before-upgrade          # against the live tree
  ninep snapshot rollback main@before-upgrade      # live tree := snapshot
  ninep snapshot clone main@before-upgrade test    # new writable dataset "test"
  ninep snapshot delete main@before-upgrade
  ninep snapshot send main@monday | ninep snapshot receive --store /backup main
"""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "snapshot",
        help="create, list, delete, roll back, clone and diff snapshots",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmds = parser.add_subparsers(dest="snapshot_command", metavar="ACTION", required=True)

    p = cmds.add_parser("create", help="take a snapshot of a dataset's live tree")
    p.add_argument("spec", metavar="DATASET@NAME")
    p.set_defaults(func=_create)

    p = cmds.add_parser("list", help="list snapshots, oldest first")
    p.add_argument("dataset", nargs="?", help="only this dataset's snapshots")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_list)

    p = cmds.add_parser("delete", help="delete a snapshot (gc reclaims its chunks)")
    p.add_argument("spec", metavar="DATASET@NAME")
    p.set_defaults(func=_delete)

    p = cmds.add_parser("rollback", help="make the live tree equal to a snapshot (later snapshots are kept)")
    p.add_argument("spec", metavar="DATASET@NAME")
    p.set_defaults(func=_rollback)

    p = cmds.add_parser("clone", help="create a new writable dataset from a snapshot, sharing its chunks")
    p.add_argument("spec", metavar="DATASET@NAME")
    p.add_argument("new_dataset", metavar="NEWDATASET")
    p.set_defaults(func=_clone)

    p = cmds.add_parser(
        "diff",
        help="what changed between two snapshots, or a snapshot and the live tree",
        description="Lines, sorted by path: '+ path' added, '- path' removed, 'M path' content or "
        "metadata changed, 'R old -> new' renamed (followed by 'M new' if also changed).",
    )
    p.add_argument("a", metavar="DATASET@A")
    p.add_argument("b", nargs="?", metavar="DATASET@B", help="default: the live tree")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_diff)

    replicate.add_actions(cmds)

    for action in cmds.choices.values():
        add_store_option(action)


def _run(args, what: str, fn):
    """Run ``fn(backend)``; turn storage errors into one clear line."""
    with backend(args) as be:
        try:
            return fn(be)
        except FsError as exc:
            raise CommandError(f"{what}: {describe(exc)}") from None


def _create(args) -> int:
    dataset, name = split_snapshot(args.spec)
    info = _run(args, f"cannot create {args.spec}", lambda be: be.create_snapshot(dataset, name))
    print(f"created {info['dataset']}@{info['name']}")
    return 0


def _list(args) -> int:
    snaps = _run(args, "cannot list snapshots", lambda be: be.list_snapshots(args.dataset))
    if args.json:
        print_json(snaps)
        return 0
    if not snaps:
        print("no snapshots")
        return 0
    width = max(len(f"{s['dataset']}@{s['name']}") for s in snaps)
    print(f"{'SNAPSHOT':<{width}}  CREATED")
    for s in snaps:
        print(f"{s['dataset'] + '@' + s['name']:<{width}}  {s['created']}")
    return 0


def _delete(args) -> int:
    dataset, name = split_snapshot(args.spec)
    _run(args, f"cannot delete {args.spec}", lambda be: be.delete_snapshot(dataset, name))
    print(f"deleted {args.spec}")
    return 0


def _rollback(args) -> int:
    dataset, name = split_snapshot(args.spec)
    _run(args, f"cannot roll back to {args.spec}", lambda be: be.rollback(dataset, name))
    print(f"rolled {dataset} back to {args.spec}")
    return 0


def _clone(args) -> int:
    dataset, name = split_snapshot(args.spec)
    _run(args, f"cannot clone {args.spec}", lambda be: be.clone(dataset, name, args.new_dataset))
    print(f"cloned {args.spec} into {args.new_dataset}")
    return 0


def _diff(args) -> int:
    dataset, a = split_snapshot(args.a)
    b = None
    if args.b:
        b_dataset, b = split_snapshot(args.b)
        if b_dataset != dataset:
            raise CommandError("diff compares snapshots of one dataset")
    changes = _run(args, f"cannot diff {args.a}", lambda be: be.diff(dataset, a, b))
    if args.json:
        print_json(changes)
        return 0
    out = sys.stdout.buffer  # paths are file names: print their exact bytes
    for c in changes:
        path = os.fsencode(c["path"])
        if c["kind"] == "R":
            out.write(b"R " + os.fsencode(c["old_path"]) + b" -> " + path + b"\n")
        else:
            out.write(c["kind"].encode() + b" " + path + b"\n")
    out.flush()
    return 0
