"""Output helpers for the admin commands: byte sizes and terminal-only progress bars."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator


def human(n: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def reset(self, total: int | None = None) -> None:
        pass

    def set_description(self, desc: str) -> None:
        pass


@contextmanager
def progress_bar(total: int | None, desc: str, *, bytes_unit: bool = True) -> Iterator:
    """A tqdm bar on standard error when it is a terminal, else a no-op object."""
    if not sys.stderr.isatty():
        yield _NoBar()
        return
    from tqdm import tqdm

    kw = dict(unit="B", unit_scale=True, unit_divisor=1024) if bytes_unit else dict(unit="it")
    with tqdm(total=total, desc=desc, file=sys.stderr, leave=False, **kw) as bar:
        yield bar
