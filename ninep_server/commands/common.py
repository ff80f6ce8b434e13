"""Helpers shared by the admin subcommands: store access, names, output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from typing import Iterator

from cas import FsError, Store, StoreFormatError, StoreLockedError

from ..config import ConfigError, ServerConfig, load_config
from ..storeopen import open_hint, open_options

DEFAULT_STORE = "./ninep-data"


class CommandError(Exception):
    """A user-facing failure: printed as ``ninep: message`` with exit status 1."""


def add_store_option(parser: argparse.ArgumentParser) -> None:
    """--store, --admin for reaching a running server explicitly, and --config."""
    parser.add_argument(
        "--store", default=DEFAULT_STORE, metavar="DIR", help=f"store directory (default: {DEFAULT_STORE})"
    )
    parser.add_argument(
        "--admin",
        metavar="ADDR",
        help="admin API of a running server (unix:PATH or tcp:HOST:PORT; token in $NINEP_ADMIN_TOKEN); "
        "default: the server running on --store, if any, else the store itself",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="the server's configuration file: when the store is opened directly, its [s3] table "
        "(object-storage endpoint and credentials; the AWS_* variables take precedence); "
        "volume create also reads [server] listen and [admin] socket",
    )


def load_config_option(path: str | None) -> ServerConfig:
    """The configuration named by --config, or the defaults; a bad file is a CommandError."""
    if not path:
        return ServerConfig()
    try:
        return load_config(path)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


@contextmanager
def open_store(path: str, *, create: bool = False, config: ServerConfig | None = None,
               chunks: str | None = None, chunk_size: int | None = None) -> Iterator[Store]:
    """Open a store for an admin command, with errors that say what to do.

    A store on object storage is reached with the AWS_* variables, else the
    ``[s3]`` table of ``config``.
    """
    options: dict = {}
    try:
        options = open_options(config, chunks=chunks, chunk_size=chunk_size)
        store = Store.open(path, create=create, **options)
    except StoreLockedError:
        raise CommandError(
            f"the store {path} is locked by another process, and no server answers on {path}/admin.sock; "
            "if a server runs with another admin socket, pass --admin unix:PATH"
        ) from None
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    except StoreFormatError as exc:
        hint = open_hint(exc, options) or " (is --store right? `ninep init DIR` or `ninep serve --store DIR` creates a store)"
        raise CommandError(f"{exc}{hint}") from None
    except FsError as exc:
        raise CommandError(f"cannot open store {path}: {exc.strerror or exc}{open_hint(exc, options)}") from None
    except ValueError as exc:  # e.g. a chunk size the store cannot hold
        raise CommandError(f"cannot open store {path}: {exc}") from None
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
