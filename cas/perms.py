"""Owner-only modes for everything in a store directory.

Chunk files hold every file's contents whatever its 9P mode, and the catalog
holds every name and attribute, so no other local user may read either: the
store directory and the directories in it are 0700, chunk files 0400, and
every other file 0600. Files are created with these modes explicitly (the
umask can only take bits away, and a restrictive umask could leave the owner
without access, so creators also ``fchmod``). DuckDB creates its own files
(the catalog, its ``.wal`` and its ``.tmp`` spill directory) with the
process umask; :func:`tighten` puts them right after the fact, and
``ninep serve`` runs with umask 077 so they are never created loose.

:func:`audit` lists paths whose mode gives group or other any access, or
has setuid/setgid/sticky bits; :func:`repair` makes them owner-only.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

DIR_MODE = 0o700
FILE_MODE = 0o600
CHUNK_MODE = 0o400
_LOOSE = 0o7077  # group/other access, setuid, setgid, sticky


@dataclass(frozen=True)
class Loose:
    """A path in a store whose mode is not owner-only."""

    path: str
    mode: int

    @property
    def wanted(self) -> int:
        """The owner-only mode :func:`repair` gives it (owner bits kept)."""
        want = self.mode & 0o700
        if stat.S_ISDIR(self.mode):
            return DIR_MODE
        return want or FILE_MODE


def is_loose(mode: int) -> bool:
    return bool(mode & _LOOSE)


def tighten(path: str, exact: bool = False) -> bool:
    """Make ``path`` owner-only if it exists and is not; returns True if it changed.

    With ``exact``, also give the owner full access (0600 for a file, 0700 for
    a directory): for files other programs create, such as DuckDB's, whose
    modes follow the umask. Symlinks are left alone (chmod would follow them).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        return False
    if exact:
        want = DIR_MODE if stat.S_ISDIR(st.st_mode) else FILE_MODE
        if stat.S_IMODE(st.st_mode) == want:
            return False
    elif is_loose(st.st_mode):
        want = Loose(path, st.st_mode).wanted
    else:
        return False
    os.chmod(path, want)
    return True


def audit(root: str, *, deep: bool = False) -> list[Loose]:
    """Paths under store ``root`` that are not owner-only.

    Always checks the store directory, its top-level entries and the chunk
    (or chunk cache) fan-out directories (a few hundred ``lstat`` calls: cheap enough for every
    open). ``deep`` also checks every chunk (or cached chunk) file, as fsck does.
    """
    found: list[Loose] = []

    def check(path: str, st: os.stat_result) -> None:
        if not stat.S_ISLNK(st.st_mode) and is_loose(st.st_mode):
            found.append(Loose(path, st.st_mode))

    check(root, os.lstat(root))
    for entry, st in _entries(root):
        check(entry.path, st)
        if entry.name.endswith(".tmp") and stat.S_ISDIR(st.st_mode):
            _scan_files(entry.path, check)  # DuckDB's spill files
    for name in ("chunks", "chunk-cache"):  # chunk files, or an S3 store's chunk cache
        chunks = os.path.join(root, name)
        if os.path.isdir(chunks):
            for entry, st in _entries(chunks):
                check(entry.path, st)
                if deep and stat.S_ISDIR(st.st_mode):
                    _scan_files(entry.path, check)
    return found


def _entries(directory: str) -> list[tuple[os.DirEntry, os.stat_result]]:
    """The entries of ``directory`` by name, with their lstat; entries gone meanwhile are skipped."""
    with os.scandir(directory) as it:
        entries = sorted(it, key=lambda e: e.name)
    out = []
    for entry in entries:
        try:
            out.append((entry, entry.stat(follow_symlinks=False)))
        except FileNotFoundError:
            continue
    return out


def _scan_files(directory: str, check) -> None:
    try:
        it = os.scandir(directory)
    except FileNotFoundError:
        return
    with it:
        for e in it:
            try:
                check(e.path, e.stat(follow_symlinks=False))
            except FileNotFoundError:
                pass  # a chunk deleted meanwhile


def repair(found: list[Loose]) -> int:
    """Make every path of ``found`` owner-only; returns how many were changed."""
    return sum(1 for item in found if tighten(item.path))
