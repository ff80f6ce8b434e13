"""scrub: re-hash every chunk and say who uses each damaged one.

Chunks are read from the backing store (chunk files, or objects in the
bucket: never a cache) and hashed in a thread pool (BLAKE3, file reads and
obstore's requests release the GIL). A chunk is damaged when its content no
longer hashes to its name (a flipped byte, a truncation), when it cannot be
read, or when the catalog references it and it is missing. Scrub changes
nothing: reads of a damaged chunk keep failing with EIO (every backend's
``get`` verifies every read), and a later write of the same content does not heal it (dedup finds
the name); restore the file from a snapshot or a backup.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import structlog

from .gc import list_chunks
from .views import ChunkUse, chunk_users, read_cursor

log = structlog.get_logger(__name__)


@dataclass
class DamagedChunk:
    """One damaged chunk and every file (live or in a snapshot) that uses it."""

    hash: str
    problem: str            # "content does not match its hash", "missing", "unreadable: ..."
    size: int | None
    users: list[ChunkUse] = field(default_factory=list)


@dataclass
class ScrubReport:
    """What a scrub read and what it found."""

    chunks: int = 0
    bytes: int = 0
    seconds: float = 0.0
    damaged: list[DamagedChunk] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.damaged

    @property
    def bytes_per_second(self) -> float:
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


def _verify(chunks, h: str) -> str | None:
    """The problem of chunk ``h`` (None if it verifies, "gone" if it vanished meanwhile)."""
    try:
        ok = chunks.verify(h)
    except FileNotFoundError:
        return "gone"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if ok:
        return None
    return "content does not match its hash" if chunks.has(h) else "gone"


def scrub(store, *, threads: int | None = None,
          progress: Callable[[int], None] | None = None) -> ScrubReport:
    """Verify every chunk of ``store``; ``progress(nbytes)`` after each chunk."""
    t0 = time.monotonic()
    report = ScrubReport()
    chunks = store.chunks
    listed = list_chunks(chunks)
    problems: dict[str, tuple[str, int | None]] = {}
    workers = threads or min(8, (os.cpu_count() or 2) * 2)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scrub") as pool:
        hashes = list(listed)
        for h, problem in zip(hashes, pool.map(lambda h: _verify(chunks, h), hashes)):
            report.chunks += 1
            if problem != "gone":
                report.bytes += listed[h]
            if problem is not None and problem != "gone":
                problems[h] = (problem, listed[h])
            if progress:
                progress(listed[h])
    with read_cursor(store.catalog) as cur:
        referenced = {r[0] for r in cur.execute("SELECT DISTINCT hash FROM extents").fetchall()}
        for h in referenced:
            if h not in listed and not chunks.has(h):
                problems[h] = ("missing", None)
        # a chunk gc deleted while we read is not damage: keep what is still referenced
        # or still on disk
        for h in list(problems):
            if problems[h][0] != "missing" and not chunks.has(h):
                del problems[h]
        users = chunk_users(cur, list(problems))
    for h in sorted(problems):
        problem, size = problems[h]
        report.damaged.append(DamagedChunk(h, problem, size, users.get(h, [])))
        log.error("damaged chunk", chunk=h, problem=problem,
                  used_by=[f"{u.view}:{u.path}" for u in users.get(h, [])][:10])
    report.seconds = time.monotonic() - t0
    log.info("scrub finished", chunks=report.chunks, bytes=report.bytes,
             damaged=len(report.damaged), seconds=round(report.seconds, 3))
    return report
