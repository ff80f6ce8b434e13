"""``ninep import`` and ``ninep export``: copy directory trees into and out of datasets."""

from __future__ import annotations

import argparse
import os

from cas import FsError

from .backend import backend
from .common import CommandError, add_store_option, describe, split_snapshot
from .output import as_obj, human, progress_callback

IMPORT_HELP = """\
Loads an existing directory tree into a dataset (created when missing), at
PATH inside it (default: its root), preserving modes, owners, times,
symlinks, hard links, xattrs, device nodes, fifos and sparse holes. Chunks
are deduplicated against everything already in the store.

examples:
  ninep import /srv/photos photos
  ninep import ./build main/releases/1.0
"""

EXPORT_HELP = """\
Writes a dataset's tree (or a snapshot's, or a subdirectory of either) into
DEST_DIR, created when missing, preserving what import preserves except
owners: the files belong to whoever runs the export (the server's user when
a server runs), and setuid and setgid bits are dropped, since 9P clients
chose them. --preserve-owner restores owners and those bits (as root). A
DEST_DIR that exists keeps its own mode and owner. Symlinks on the way to
DEST_DIR are resolved once, when the export starts.

examples:
  ninep export photos /restore/photos
  ninep export main@before-upgrade/etc /tmp/etc-before
  sudo ninep export --preserve-owner main /srv/restore
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="load a directory tree into a dataset", description=IMPORT_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC_DIR")
    p.add_argument("target", metavar="DATASET[/PATH]")
    add_store_option(p)
    p.set_defaults(func=_import)
    p = sub.add_parser("export", help="write a dataset or snapshot out as a directory tree",
                       description=EXPORT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="DATASET[@SNAPSHOT][/PATH]")
    p.add_argument("dest", metavar="DEST_DIR")
    p.add_argument("--preserve-owner", action="store_true",
                   help="restore owners, and setuid/setgid bits with them (needs root)")
    add_store_option(p)
    p.set_defaults(func=_export)


def _split_path(spec: str) -> tuple[str, str]:
    head, _, path = spec.partition("/")
    if not head:
        raise CommandError(f"expected DATASET[/PATH], got {spec!r}")
    return head, "/" + path


def _summary(verb: str, result: dict) -> None:
    r = as_obj(result)
    print(f"{verb} {r.files} files, {r.directories} directories, {r.symlinks} symlinks, "
          f"{r.hardlinks} hard links, {r.specials} special files, {human(r.bytes)} of data "
          f"in {r.seconds:.2f}s")
    for w in r.warnings:
        print(f"warning: {w}")


def _import(args) -> int:
    if not os.path.isdir(args.src):
        raise CommandError(f"{args.src} is not a directory")
    dataset, path = _split_path(args.target)
    with backend(args, create=True) as be, progress_callback(f"import {dataset}") as progress:
        try:
            report = be.import_tree(args.src, dataset, path, progress=progress)
        except FsError as exc:
            raise CommandError(f"import into {args.target} failed: {describe(exc)}") from None
    _summary("imported", report)
    return 0


def _export(args) -> int:
    head, path = _split_path(args.source)
    dataset, snapshot = split_snapshot(head, need_snapshot=False)
    with backend(args) as be, progress_callback(f"export {head}") as progress:
        try:
            report = be.export_tree(dataset, os.path.abspath(args.dest), snapshot, path, progress=progress,
                                    preserve_owner=args.preserve_owner)
        except FsError as exc:
            raise CommandError(f"export of {args.source} failed: {describe(exc)}") from None
        except FileExistsError as exc:
            raise CommandError(f"export of {args.source}: {exc.filename!r} exists") from None
    _summary("exported", report)
    return 0
