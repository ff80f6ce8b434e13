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
    total: int | None = None
    n: int = 0

    def update(self, n: int = 1) -> None:
        pass

    def refresh(self) -> None:
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


@contextmanager
def progress_callback(desc: str, *, bytes_unit: bool = True) -> Iterator:
    """A ``progress(done, total)`` callback drawing a terminal-only bar.

    Local jobs and jobs polled from a running server report the same way.
    """
    with progress_bar(None, desc, bytes_unit=bytes_unit) as bar:

        def update(done: int, total: int | None = None) -> None:
            if total is not None and bar.total != total:
                bar.total = total
            bar.n = done
            bar.refresh()

        yield update


def as_obj(value):
    """JSON-ready dicts as attribute objects, for readable printing code."""
    from types import SimpleNamespace

    if isinstance(value, dict):
        return SimpleNamespace(**{k: as_obj(v) for k, v in value.items()})
    if isinstance(value, list):
        return [as_obj(v) for v in value]
    return value
