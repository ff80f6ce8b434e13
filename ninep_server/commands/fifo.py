"""Relay a server job's stream through a FIFO: ``send`` and ``have`` to stdout, stdin to ``receive``.

A running server owns the store, so it runs send and receive as admin jobs
that read or write a file on its host. For a pipe (``ninep snapshot send
... | ssh host ninep snapshot receive ...``) the command makes a FIFO in a
private temporary directory, passes its path to the job and copies between
the FIFO and its own standard input or output. Neither side can hang: the
command holds its end open before the job starts (send) or opens it only
while the job runs (receive), and the server waits a bounded time for the
other end (ninep_server/admin/operations.py).
"""

from __future__ import annotations

import errno
import os
import select
import tempfile
import time
from contextlib import contextmanager
from typing import Iterator

from .common import CommandError

_BLOCK = 1 << 20
_POLL = 0.2


@contextmanager
def _fifo() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="ninep-stream-") as tmp:  # 0700: ours alone
        path = os.path.join(tmp, "stream")
        os.mkfifo(path, 0o600)
        yield path


def _finish(be, job: dict, kind: str) -> dict:
    while job["state"] == "running":
        time.sleep(_POLL)
        job = be.job_state(job["id"])
    if job["state"] != "succeeded":
        raise CommandError(f"{kind} failed on the server: {job['error']}")
    return job["result"]


def job_to_stream(be, kind: str, params: dict, out, progress=None) -> dict:
    """Run job ``kind`` writing into a FIFO and copy what it writes to ``out``."""
    with _fifo() as path:
        # Read and write: the open does not wait for the server, and reads never see
        # end-of-file; the job's state says when the stream is complete.
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            job = be.start_job(kind, {**params, "file": path})
            done = 0
            checked = time.monotonic()
            while True:
                ready, _, _ = select.select([fd], [], [], _POLL)
                if ready:
                    data = os.read(fd, _BLOCK)
                    out.write(data)
                    done += len(data)
                    if time.monotonic() - checked < 1:
                        continue
                checked = time.monotonic()
                job = be.job_state(job["id"])
                if progress:
                    progress(job["done"], job["total"])
                if job["state"] != "running":
                    break
            while True:  # the job closed its end: drain what is left in the pipe
                try:
                    data = os.read(fd, _BLOCK)
                except BlockingIOError:
                    break
                if not data:
                    break
                out.write(data)
            out.flush()
        finally:
            os.close(fd)
        return _finish(be, job, kind)


def stream_to_job(be, kind: str, params: dict, src, progress=None) -> dict:
    """Run job ``kind`` reading from a FIFO and copy ``src`` into it."""
    with _fifo() as path:
        job = be.start_job(kind, {**params, "file": path})
        fd = None
        while fd is None:  # wait for the job to open its end (or to fail first)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                job = be.job_state(job["id"])
                if job["state"] != "running":
                    return _finish(be, job, kind)
                time.sleep(0.05)
        try:
            os.set_blocking(fd, True)
            done = 0
            while True:
                data = src.read(_BLOCK)
                if not data:
                    break
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                except BrokenPipeError:
                    break  # the job stopped reading: its error says why
                done += len(data)
                if progress:
                    progress(done, None)
        finally:
            os.close(fd)
        return _finish(be, job, kind)
