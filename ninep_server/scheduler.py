"""Scheduled snapshots: ``auto-<schedule>-<UTC timestamp>``, each schedule pruning its own.

A schedule is declared per export in the configuration::

    [[exports.main.schedule]]
    name = "hourly"     # appears in the snapshot names
    every = "1h"        # s, m, h, d suffixes, or a number of seconds
    keep = 24           # newest snapshots of this schedule to keep

Snapshots are taken at multiples of ``every`` since the epoch (so hourly ones
land on the hour), named by their UTC time, e.g. ``auto-hourly-20261124T2300Z``.
After taking one, the schedule deletes its own oldest snapshots beyond
``keep``; snapshots of other schedules and manual ones are never touched.
"""

from __future__ import annotations

import datetime
import errno
import math
import re
from dataclasses import dataclass
from typing import Awaitable, Callable

import structlog
import trio

log = structlog.get_logger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SCHEDULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}")


@dataclass(frozen=True)
class Schedule:
    """One snapshot schedule of one dataset."""

    dataset: str
    name: str
    every: float  # seconds
    keep: int

    @property
    def prefix(self) -> str:
        return f"auto-{self.name}-"

    def snapshot_name(self, when: float) -> str:
        stamp = datetime.datetime.fromtimestamp(when, datetime.timezone.utc)
        fmt = "%Y%m%dT%H%MZ" if self.every >= 60 and when % 60 == 0 else "%Y%m%dT%H%M%SZ"
        return self.prefix + stamp.strftime(fmt)

    def next_due(self, now: float) -> float:
        """The next multiple of ``every`` strictly after ``now``."""
        return (math.floor(now / self.every) + 1) * self.every


def parse_duration(value) -> float:
    """``90``, ``"90s"``, ``"15m"``, ``"1h"``, ``"7d"`` -> seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw]?)", text)
        if not m:
            raise ValueError(f"bad duration {value!r}: use a number of seconds or 30s, 15m, 1h, 1d, 1w")
        seconds = float(m.group(1)) * _UNITS.get(m.group(2) or "s", 1)
    if seconds <= 0:
        raise ValueError(f"duration {value!r} must be positive")
    return seconds


def parse_schedules(dataset: str, entries: list) -> tuple[Schedule, ...]:
    """Validate the ``schedule`` array of one export."""
    out = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ValueError("each schedule is a table with name, every and keep")
        name = str(entry.get("name", ""))
        if not _SCHEDULE_NAME.fullmatch(name):
            raise ValueError(f"schedule name {name!r} must match [A-Za-z0-9][A-Za-z0-9_-]{{0,20}}")
        keep = entry.get("keep", 1)
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"schedule {name!r}: keep must be a whole number >= 1")
        out.append(Schedule(dataset, name, parse_duration(entry.get("every", "")), keep))
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ValueError("schedule names must be unique per export")
    return tuple(out)


class SnapshotScheduler:
    """Takes and prunes scheduled snapshots; one task per schedule."""

    def __init__(
        self,
        create: Callable[[str, str], Awaitable[object]],
        delete: Callable[[str, str], Awaitable[None]],
        list_names: Callable[[str], Awaitable[list[str]]],
        clock: Callable[[], float],
    ):
        self._create = create
        self._delete = delete
        self._list = list_names
        self._clock = clock

    async def run(self, current: Callable[[], Awaitable[set[Schedule]]], changed: Callable[[], trio.Event]) -> None:
        """Keep one task per schedule ``current()`` returns, re-read when ``changed()`` fires."""
        running: dict[Schedule, trio.CancelScope] = {}
        async with trio.open_nursery() as nursery:
            while True:
                event = changed()
                wanted = await current()
                for schedule in set(running) - wanted:
                    running.pop(schedule).cancel()
                for schedule in wanted - set(running):
                    running[schedule] = await nursery.start(self._run_one, schedule)
                with trio.move_on_after(60):  # also catch changes made behind our back
                    await event.wait()

    async def _run_one(self, schedule: Schedule, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            while True:
                due = schedule.next_due(self._clock())
                await trio.sleep(max(0.0, due - self._clock()))
                await self.take(schedule, due)

    async def take(self, schedule: Schedule, when: float) -> str | None:
        """Take one scheduled snapshot and prune; errors are logged, not raised."""
        name = schedule.snapshot_name(when)
        try:
            await self._create(schedule.dataset, name)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                log.error("scheduled snapshot failed", dataset=schedule.dataset, snapshot=name, error=str(exc))
                return None
        try:
            mine = [n for n in await self._list(schedule.dataset) if n.startswith(schedule.prefix)]
            for old in mine[: max(0, len(mine) - schedule.keep)]:
                await self._delete(schedule.dataset, old)
                log.info("scheduled snapshot pruned", dataset=schedule.dataset, snapshot=old)
        except OSError as exc:
            log.error("pruning scheduled snapshots failed", dataset=schedule.dataset, error=str(exc))
        return name
