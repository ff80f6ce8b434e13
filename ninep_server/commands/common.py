"""Helpers shared by the admin subcommands: store access, names, output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from typing import Iterator

from cas import FsError, Store, StoreFormatError, StoreLockedError

DEFAULT_STORE = "./ninep-data"


class CommandError(Exception):
    """A user-facing failure: printed as ``ninep: message`` with exit status 1."""


def add_store_option(parser: argparse.ArgumentParser) -> None:
    """--store, plus --admin for reaching a running server explicitly."""
    parser.add_argument(
        "--store", default=DEFAULT_STORE, metavar="DIR", help=f"store directory (default: {DEFAULT_STORE})"
    )
    parser.add_argument(
        "--admin",
        metavar="ADDR",
        help="admin API of a running server (unix:PATH or tcp:HOST:PORT; token in $NINEP_ADMIN_TOKEN); "
        "default: the server running on --store, if any, else the store itself",
    )


@contextmanager
def open_store(path: str, *, create: bool = False) -> Iterator[Store]:
    """Open a store for an admin command, with errors that say what to do."""
    try:
        store = Store.open(path, create=create)
    except StoreLockedError:
        raise CommandError(
            f"the store {path} is locked by another process, and no server answers on {path}/admin.sock; "
            "if a server runs with another admin socket, pass --admin unix:PATH"
        ) from None
    except StoreFormatError as exc:
        raise CommandError(f"{exc} (is --store right? `ninep serve --store DIR` creates a store)") from None
    except FsError as exc:
        raise CommandError(f"cannot open store {path}: {exc.strerror or exc}") from None
    try:
        yield store
    finally:
        store.close()


def split_snapshot(spec: str, *, need_snapshot: bool = True) -> tuple[str, str | None]:
    """``DATASET@NAME`` -> (dataset, name); the name may be optional."""
    dataset, at, name = spec.partition("@")
    if not dataset or (need_snapshot and not name) or (at and not name):
        form = "DATASET@SNAPSHOT" if need_snapshot else "DATASET[@SNAPSHOT]"
        raise CommandError(f"expected {form}, got {spec!r}")
    return dataset, name or None


def print_json(value) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def describe(exc: OSError) -> str:
    """``Invalid argument: bad snapshot name ...``: the errno's words, then the details."""
    words = os.strerror(exc.errno) if exc.errno else ""
    detail = exc.strerror or str(exc)
    if not words or detail == words:
        return detail or words
    return f"{words}: {detail}"
