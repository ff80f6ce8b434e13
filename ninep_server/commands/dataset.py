"""``ninep dataset``: create, list, delete datasets and set their properties."""

from __future__ import annotations

import argparse

from cas import FsError

from .backend import backend
from .common import CommandError, add_store_option, describe, print_json

HELP = """\
A dataset is one independent file tree, exported under its name as the 9P
aname (a new one is served at once by a running server). The commands go
through the running server when there is one, and open the store otherwise.

properties (ninep dataset set NAME key=value ...):
  read_only=true|false     refuse every change through 9P (EROFS)
  quota=SIZE               cap the live tree's logical bytes (EDQUOT past it;
                           statfs shows it); 10G, 500M, 4096, or 0 for none
  schedule=SPEC            snapshot schedules, NAME:EVERY:KEEP separated by
                           commas, e.g. hourly:1h:24,daily:1d:7 (empty: none)

examples:
  ninep dataset create photos
  ninep dataset set photos quota=50G schedule=hourly:1h:24
  ninep dataset list
  ninep dataset delete photos      # and everything in it, snapshots included
"""

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_property(assignment: str) -> tuple[str, object]:
    """``quota=10G`` -> ("quota", 10737418240); raises CommandError with the forms."""
    key, eq, value = assignment.partition("=")
    if not eq:
        raise CommandError(f"expected key=value, got {assignment!r}")
    if key == "read_only":
        if value.lower() not in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            raise CommandError("read_only takes true or false")
        return key, value.lower() in ("true", "yes", "on", "1")
    if key == "quota":
        number, unit = value.rstrip("KMGTkmgtiB").strip(), value[len(value.rstrip("KMGTkmgtiB")):].upper()
        unit = unit.replace("IB", "").replace("B", "")
        if not number.isdigit() or unit not in _UNITS:
            raise CommandError("quota takes a size such as 10G, 500M, 4096 or 0")
        return key, int(number) * _UNITS[unit]
    if key == "schedule":
        entries = []
        for part in filter(None, value.split(",")):
            bits = part.split(":")
            if len(bits) != 3 or not bits[2].isdigit():
                raise CommandError("schedule takes NAME:EVERY:KEEP entries, e.g. hourly:1h:24,daily:1d:7")
            entries.append({"name": bits[0], "every": bits[1], "keep": int(bits[2])})
        return key, entries
    raise CommandError(f"unknown property {key!r}: use read_only, quota or schedule")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("dataset", help="create, list, delete datasets and set their properties", description=HELP,
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
    p = cmds.add_parser("set", help="set properties: read_only, quota, schedule")
    p.add_argument("name", metavar="NAME")
    p.add_argument("assignments", nargs="+", metavar="KEY=VALUE")
    p.set_defaults(func=_set)
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
    print(f"{'DATASET':<{width}}  CREATED               SNAPSHOTS  PROPERTIES")
    for r in rows:
        props = [p for p in ("read_only" if r["read_only"] else "", f"quota={r['quota']}" if r["quota"] else "",
                             f"origin={r['origin']}" if r["origin"] else "") if p]  # fmt: skip
        print(f"{r['name']:<{width}}  {r['created']}  {r['snapshots']:<9}  {' '.join(props)}".rstrip())
    return 0


def _delete(args) -> int:
    _run(args, f"cannot delete dataset {args.name!r}", lambda be: be.delete_dataset(args.name))
    print(f"deleted dataset {args.name}")
    return 0


def _set(args) -> int:
    values = dict(parse_property(a) for a in args.assignments)
    row = _run(args, f"cannot set properties of {args.name!r}", lambda be: be.set_dataset(args.name, values))
    schedule = ",".join(f"{e['name']}:{e['every']}:{e['keep']}" for e in row["schedule"])
    print(f"{args.name}: read_only={str(row['read_only']).lower()} quota={row['quota']} schedule={schedule}")
    return 0
