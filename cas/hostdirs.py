"""Host directories held by file descriptor, for import and export.

A path checked now and used later can be redirected in between: swap one
component for a symlink and the same name leads elsewhere. So import and
export resolve their host directory once, when they start, and hold it as
a file descriptor: from a trusted base directory (``/``, or the transfer
root the path lies in), every component is opened with ``O_NOFOLLOW``
relative to the previous one, and everything after that works relative to
held descriptors (``dir_fd``), never by path again. A symlink met on the way
is an error (ELOOP), never followed.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Iterable

from .errors import FsError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class HostDir:
    """An open host directory: ``fd`` (owned, close it), its path (for messages only),
    and whether opening it created it (it did not exist before)."""

    fd: int
    path: bytes
    created: bool = False

    def close(self) -> None:
        os.close(self.fd)


def _within(real: bytes, root: bytes) -> bool:
    return real == root or real.startswith(root.rstrip(b"/") + b"/")


def open_dir_at(dir_fd: int, name: bytes, *, what: bytes = b"") -> int:
    """Open directory ``name`` in ``dir_fd`` without following a symlink (FsError ELOOP)."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
    shown = os.fsdecode(what or name)
    try:
        is_link = os.path.islink(magic_path(dir_fd, name))
    except OSError:
        is_link = False
    if is_link:
        raise FsError(errno.ELOOP, f"{shown}: {os.fsdecode(name)} is a symlink (transfers never "
                      "follow symlinks on the host)")
    raise FsError(errno.ENOTDIR, f"{shown}: {os.fsdecode(name)} is not a directory")


def open_host_dir(path: str | bytes, *, roots: Iterable[str | bytes] | None = None,
                  create: bool = False, mode: int = 0o700) -> HostDir:
    """Open directory ``path`` for a transfer and hold it.

    With ``roots``, ``path`` must lie inside one of them (EACCES otherwise):
    the root is opened, then each component below it with ``O_NOFOLLOW``,
    so the directory reached is inside the root whatever changes meanwhile.
    Without ``roots``, the walk starts at ``/`` (a relative ``path`` is taken
    from the current directory). With ``create``, missing
    components are made (the last with ``mode``; ``created`` tells).
    """
    path = os.path.abspath(os.fsencode(path))
    real = os.path.realpath(path)
    base = b"/"
    if roots is not None:
        resolved = [os.path.realpath(os.fsencode(r)) for r in roots]
        inside = [r for r in resolved if _within(real, r)]
        if not inside:
            raise FsError(errno.EACCES, f"{os.fsdecode(path)} is outside the transfer roots")
        base = max(inside, key=len)
    rel = [part for part in real[len(base):].split(b"/") if part]
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    created = False
    try:
        for i, part in enumerate(rel):
            last = i == len(rel) - 1
            created = False
            try:
                nfd = open_dir_at(fd, part, what=path)
            except FileNotFoundError:
                if not create:
                    raise FsError(errno.ENOENT, f"{os.fsdecode(path)}: no such directory") from None
                try:
                    os.mkdir(part, mode if last else 0o777, dir_fd=fd)
                    created = True
                except FileExistsError:
                    pass  # made meanwhile: open whatever is there, still without following
                nfd = open_dir_at(fd, part, what=path)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return HostDir(fd, path, created)


def magic_path(fd: int, name: bytes | None = None) -> bytes:
    """``/proc/self/fd/FD[/NAME]``: the file an fd holds (or NAME in that directory)
    by path, for calls that take no descriptor (xattrs, chmod of a device node).
    The kernel resolves the fd itself, not a name: nothing to swap."""
    base = b"/proc/self/fd/%d" % fd
    return base if name is None else base + b"/" + name
