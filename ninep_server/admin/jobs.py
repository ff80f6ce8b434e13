"""Long admin jobs (gc, scrub, import) run in the server's nursery, with progress."""

from __future__ import annotations

import itertools
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import structlog
import trio

log = structlog.get_logger(__name__)

#: A job body runs in a worker thread and reports progress as (done, total).
JobBody = Callable[[Callable[[int, int | None], None]], dict]


@dataclass
class Job:
    """The state of one job, as the API shows it."""

    id: str
    kind: str
    params: dict
    state: str = "running"  # running | succeeded | failed
    started: float = field(default_factory=time.time)
    finished: float | None = None
    done: int = 0
    total: int | None = None
    result: dict | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def progress(self, done: int, total: int | None = None) -> None:
        # Called from the worker thread; plain attribute writes are atomic.
        self.done = done
        if total is not None:
            self.total = total


class JobManager:
    """Starts jobs as tasks of a nursery the server owns and keeps their records."""

    def __init__(self, limiter: trio.CapacityLimiter | None = None, keep: int = 100):
        self.jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._nursery: trio.Nursery | None = None
        #: jobs run one at a time, each holding this limiter while it works
        self.limiter = limiter or trio.CapacityLimiter(1)
        self._keep = keep

    def bind(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery

    def start(self, kind: str, params: dict, body: JobBody) -> Job:
        if self._nursery is None:
            raise RuntimeError("the job manager is not running")
        job = Job(id=f"{kind}-{next(self._ids)}", kind=kind, params=params)
        self.jobs[job.id] = job
        self._forget_old()
        self._nursery.start_soon(self._run, job, body)
        log.info("job started", job=job.id, **{k: v for k, v in params.items() if isinstance(v, (str, int, bool))})
        return job

    async def _run(self, job: Job, body: JobBody) -> None:
        try:
            job.result = await trio.to_thread.run_sync(body, job.progress, limiter=self.limiter)
            job.state = "succeeded"
        except Exception as exc:  # a failed job is reported, never fatal to the server
            job.state = "failed"
            job.error = f"{type(exc).__name__}: {exc}"
            log.error("job failed", job=job.id, error=job.error, traceback=traceback.format_exc())
        finally:
            job.finished = time.time()
        log.info("job finished", job=job.id, state=job.state)

    def _forget_old(self) -> None:
        finished = [j for j in self.jobs.values() if j.state != "running"]
        for job in finished[: max(0, len(self.jobs) - self._keep)]:
            del self.jobs[job.id]

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def list(self) -> list[Job]:
        return list(self.jobs.values())

    async def wait(self, job_id: str, timeout: float = 3600) -> Job:
        """Wait for a job to finish (for the CLI's synchronous commands)."""
        job = self.jobs[job_id]
        with trio.fail_after(timeout):
            while job.state == "running":
                await trio.sleep(0.05)
        return job


def jsonable(value: Any) -> Any:
    """Dataclasses and bytes (file names) as JSON-friendly values."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, bytes):
        # Lossless: bytes that are not UTF-8 become lone surrogates (os.fsencode undoes it).
        return os.fsdecode(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
