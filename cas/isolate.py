"""Commit isolation: one inode's bad rows must not stop every other inode's commit.

A commit batch is checked against the catalog's column types before it is
turned into Arrow tables (:func:`invalid_inodes`). A row that slips past the
check and still makes the transaction fail is found by applying the batch in
parts (:func:`bisect_apply`). Either way the inode concerned is set aside
together with every row that would be inconsistent without it: the rows of
all inodes joined to it by an entry written or removed in this batch (its
parent directory, its children, the other side of a rename). That group is a
connected component of the batch's entry graph, so what is committed never
has an entry pointing at a missing inode or a link count that disagrees.
"""

from __future__ import annotations

from typing import Callable, Iterable

from .catalog import INODE_COLS, Batch

_I64 = (-(2**63), 2**63 - 1)
_I32 = (-(2**31), 2**31 - 1)
_INODE_RANGES = tuple(_I32 if c in ("dataset", "mode") else None if c == "target" else _I64
                      for c in INODE_COLS)
_ENTRY_RANGES = (_I64, None, _I64, _I64, _I32)     # parent, name, child, seq, type
_EXTENT_RANGES = (_I64, _I64, None, _I32)          # ino, idx, hash, length
_XATTR_RANGES = (_I64, None, None)                 # ino, name, value

_LISTS = ("inode_rows", "inode_retire", "freed", "entry_rows", "entry_retire",
          "extent_rows", "extent_retire", "xattr_rows", "xattr_retire")


def _bad_value(row: tuple, ranges: tuple, names: tuple[str, ...]) -> str | None:
    """The first value of ``row`` its column cannot hold, as ``name=value``."""
    for value, rng, name in zip(row, ranges, names):
        if rng is None:
            if value is not None and type(value) not in (bytes, str):
                return f"{name}={value!r}"
        elif type(value) is not int or not rng[0] <= value <= rng[1]:
            return f"{name}={value!r}"
    return None


def _check(rows: list[tuple], ranges: tuple, names: tuple[str, ...],
           owners: Callable[[tuple], Iterable[int]], out: dict[int, str]) -> None:
    if not rows:
        return
    # Fast path: every integer column within its type, checked by C-level min/max.
    try:
        cols = list(zip(*rows))
        if all(rng is None or (rng[0] <= min(col) and max(col) <= rng[1])
               for col, rng in zip(cols, ranges)):
            return
    except TypeError:  # a value of the wrong type: find it row by row
        pass
    for row in rows:
        bad = _bad_value(row, ranges, names)
        if bad is not None:
            for ino in owners(row):
                out.setdefault(ino, bad)


def invalid_inodes(b: Batch) -> dict[int, str]:
    """Inodes named by a row whose values the catalog cannot hold, with the offending value."""
    out: dict[int, str] = {}
    _check(b.inode_rows, _INODE_RANGES, INODE_COLS, lambda r: (r[0],), out)
    _check(b.entry_rows, _ENTRY_RANGES, ("parent", "name", "child", "seq", "type"),
           lambda r: (r[2],), out)
    _check(b.extent_rows, _EXTENT_RANGES, ("ino", "idx", "hash", "length"), lambda r: (r[0],), out)
    _check(b.xattr_rows, _XATTR_RANGES, ("ino", "name", "value"), lambda r: (r[0],), out)
    return out


class Components:
    """The inodes of a batch grouped by the entries that join them (union-find)."""

    def __init__(self, b: Batch, old_children: dict[tuple[int, bytes], int]):
        self._up: dict[int, int] = {}
        for row in b.inode_rows:
            self._find(row[0])
        for ino in (*b.inode_retire, *b.freed, *(k[0] for k in b.extent_rows),
                    *(k[0] for k in b.extent_retire), *(k[0] for k in b.xattr_rows),
                    *(k[0] for k in b.xattr_retire)):
            self._find(ino)
        for parent, _name, child, *_ in b.entry_rows:
            self._union(parent, child)
        for key in b.entry_retire:
            old = old_children.get(key)
            self._union(key[0], key[0] if old is None else old)

    def _find(self, x: int) -> int:
        up = self._up
        root = up.setdefault(x, x)
        while root != up[root]:
            root = up[root]
        while up[x] != root:
            up[x], x = root, up[x]
        return root

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self._up[ra] = rb

    def groups(self) -> list[set[int]]:
        out: dict[int, set[int]] = {}
        for x in list(self._up):
            out.setdefault(self._find(x), set()).add(x)
        return list(out.values())

    def closure(self, inos: Iterable[int]) -> set[int]:
        """Every inode in the same group as one of ``inos``."""
        roots = {self._find(i) for i in inos}
        return {x for x in list(self._up) if self._find(x) in roots}


def take(b: Batch, inos: set[int]) -> Batch:
    """Move every row of ``b`` that names one of ``inos`` into a new batch, which is returned."""
    out = Batch()
    for name in _LISTS:
        rows = getattr(b, name)
        if name in ("inode_retire", "freed"):
            named = [ino in inos for ino in rows]
        elif name == "entry_rows":
            named = [r[0] in inos or r[2] in inos for r in rows]
        else:  # rows whose first field is the inode (or the parent directory)
            named = [(r[0] if type(r) is tuple else r) in inos for r in rows]
        getattr(out, name).extend(r for r, n in zip(rows, named) if n)
        setattr(b, name, [r for r, n in zip(rows, named) if not n])
    out.next_ino = b.next_ino
    return out


def only(b: Batch, inos: set[int]) -> Batch:
    """A copy of the rows of ``b`` that name ``inos`` (``b`` is unchanged)."""
    copy = Batch(**{name: list(getattr(b, name)) for name in _LISTS}, next_ino=b.next_ino)
    return take(copy, inos)


def is_data_error(exc: BaseException) -> bool:
    """True if ``exc`` comes from the rows themselves, not from the disk or the database."""
    import duckdb
    if isinstance(exc, OSError):
        return False
    return isinstance(exc, (OverflowError, ValueError, TypeError, duckdb.DataError,
                            duckdb.IntegrityError))


def bisect_apply(b: Batch, groups: list[set[int]], apply: Callable[[Batch], list[str]]
                 ) -> tuple[list[str], list[tuple[set[int], BaseException]]]:
    """Apply ``b`` group by group, halving on data errors; return (dropped hashes, bad groups).

    Each successful :func:`apply` commits its part. An error that is not a
    data error (disk, database) propagates: the caller retries the commit.
    So does one that every part fails with, even a batch without rows: that
    is no row's fault, and setting everything aside would lose it all.
    """
    dropped: list[str] = []
    bad: list[tuple[set[int], BaseException]] = []
    applied = False
    stack = [groups]
    while stack:
        part = stack.pop()
        inos = set().union(*part)
        try:
            dropped += apply(only(b, inos))
            applied = True
        except Exception as exc:
            if not is_data_error(exc):
                raise
            if len(part) == 1:
                bad.append((part[0], exc))
            else:
                mid = len(part) // 2
                stack += [part[mid:], part[:mid]]
    if bad and not applied:
        try:
            dropped += apply(only(b, set()))
        except Exception as exc:
            raise RuntimeError(f"the commit fails without any rows: {exc!r}") from exc
    return dropped, bad
