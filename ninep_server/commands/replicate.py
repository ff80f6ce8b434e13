"""``ninep snapshot send``, ``receive`` and ``have``: replicate snapshots between stores.

The stream format is in docs/format.md ("Send streams"). Each command works
on a stopped store directly and through a running server (as an admin job;
a pipe passes through a FIFO, see fifo.py), with a progress bar on a terminal.
"""

from __future__ import annotations

import argparse
import os
import sys

from cas import FsError

from .backend import backend
from .common import CommandError, describe, split_snapshot
from .output import human, progress_callback

SEND_HELP = """\
Writes DATASET@SNAP as a stream to standard output (or -o FILE): its rows
and the chunks the receiver may lack. With --since, only what changed since
an earlier snapshot (the receiver must have that one). With --have, chunks
listed in a have list from the receiver (ninep snapshot have) are left out.

examples:
  ninep snapshot send main@monday -o monday.stream
  ninep snapshot send main@tuesday --since main@monday | \\
      ssh backup ninep snapshot receive --store /srv/ninep main
"""

RECEIVE_HELP = """\
Reads a stream from standard input (or -i FILE) and applies it as a snapshot
of DATASET: a full stream creates DATASET, an incremental one needs DATASET's
latest snapshot to be the stream's base. Every chunk is verified against its
name and the stream against its checksum; a truncated or corrupt stream
changes nothing. --force first rolls DATASET back to its latest snapshot if
it changed since.
"""

HAVE_HELP = """\
Prints what this store has for DATASET: its snapshot GUIDs and the chunks it
holds, for `ninep snapshot send --have FILE` on the sending side.

example:
  ssh backup ninep snapshot have --store /srv/ninep main > have.txt
  ninep snapshot send main@tuesday --since main@monday --have have.txt | \\
      ssh backup ninep snapshot receive --store /srv/ninep main
"""


def add_actions(cmds: argparse._SubParsersAction) -> None:
    """Add send, receive and have to ``ninep snapshot``."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = cmds.add_parser("send", help="write a snapshot as a stream (full or incremental)",
                        description=SEND_HELP, formatter_class=fmt)
    p.add_argument("spec", metavar="DATASET@SNAP")
    p.add_argument("--since", metavar="DATASET@EARLIER", help="send only the changes since this snapshot")
    p.add_argument("-o", "--output", metavar="FILE", help="write the stream to FILE (default: standard output)")
    p.add_argument("--have", metavar="FILE", help="a have list from the receiver: its chunks are not sent")
    p.set_defaults(func=_send)

    p = cmds.add_parser("receive", help="apply a stream as a snapshot of a dataset",
                        description=RECEIVE_HELP, formatter_class=fmt)
    p.add_argument("dataset", metavar="DATASET")
    p.add_argument("-i", "--input", metavar="FILE", help="read the stream from FILE (default: standard input)")
    p.add_argument("--force", action="store_true",
                   help="roll DATASET back to its latest snapshot first if it changed since")
    p.set_defaults(func=_receive)

    p = cmds.add_parser("have", help="list a dataset's snapshot GUIDs and the chunks this store holds",
                        description=HAVE_HELP, formatter_class=fmt)
    p.add_argument("dataset", metavar="DATASET")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: standard output)")
    p.add_argument("--no-chunks", action="store_true", help="list snapshots only")
    p.set_defaults(func=_have)


def _fail(what: str, exc: FsError) -> CommandError:
    return CommandError(f"{what}: {describe(exc)}")


def _send(args) -> int:
    dataset, snap = split_snapshot(args.spec)
    since = None
    if args.since:
        since_ds, at, since = args.since.rpartition("@")
        if not at:
            since_ds, since = dataset, args.since
        if since_ds != dataset or not since:
            raise CommandError(f"--since names a snapshot of {dataset}: {dataset}@NAME")
    if args.output is None and sys.stdout.isatty():
        raise CommandError("refusing to write a binary stream to a terminal: use -o FILE or a pipe")
    if args.have and not os.path.isfile(args.have):
        raise CommandError(f"have list {args.have} is not a file")
    out = None if args.output else sys.stdout.buffer
    with backend(args) as be, progress_callback(f"send {args.spec}") as progress:
        try:
            r = be.send_snapshot(dataset, snap, args.output, since=since, have=args.have, progress=progress,
                                 stream=out)
        except BrokenPipeError:
            # the reading side stopped (a receiver that refused the stream says why itself)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise CommandError(f"cannot send {args.spec}: the reading end of the pipe closed") from None
        except FsError as exc:
            raise _fail(f"cannot send {args.spec}", exc) from None
    sys.stderr.write(f"sent {r['kind']} stream of {dataset}@{snap}"
                     f"{' since ' + since if since else ''}: {human(r['stream_bytes'])}, {r['chunks']} chunks "
                     f"({human(r['chunk_bytes'])}), {r['chunks_skipped']} chunks the receiver has, "
                     f"in {r['seconds']:.2f}s\n")
    return 0


def _receive(args) -> int:
    if args.input is not None and not os.path.exists(args.input):
        raise CommandError(f"{args.input} does not exist")
    src = None if args.input else sys.stdin.buffer
    with backend(args, create=True) as be, progress_callback(f"receive {args.dataset}") as progress:
        try:
            r = be.receive_snapshot(args.dataset, args.input, force=args.force, progress=progress, stream=src)
        except FsError as exc:
            raise _fail(f"cannot receive into {args.dataset}", exc) from None
    print(f"received {args.dataset}@{r['snapshot']} ({r['kind']}"
          f"{', base ' + r['base'] if r['base'] else ''}{', rolled back first' if r['rolled_back'] else ''}): "
          f"{human(r['stream_bytes'])}, {r['chunks']} chunks ({human(r['chunk_bytes'])}) in {r['seconds']:.2f}s")
    return 0


def _have(args) -> int:
    out = None if args.output else sys.stdout.buffer
    with backend(args) as be:
        try:
            be.have(args.dataset, args.output, chunks=not args.no_chunks, stream=out)
        except FsError as exc:
            raise _fail(f"cannot list what {args.dataset} has", exc) from None
    return 0
