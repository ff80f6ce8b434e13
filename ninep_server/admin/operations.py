"""Admin operations on a store, returning JSON-ready values.

The same functions serve both paths of every admin command: the HTTP API of
a running server calls them in worker threads, and the CLI calls them
directly when no server holds the store. So the output is the same either
way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import os
import re
import select
import stat

from cas import FsError, Store
from cas.fsck import fsck
from cas.properties import INTERNAL
from cas.gc import collect
from cas.scrub import scrub
from cas.stats import collect_stats
from cas.names import check_label
from cas.receive import receive_snapshot
from cas.send import read_have, send_snapshot, write_have
from cas.transfer import export_size, export_tree, import_tree, scan_size

from ..scheduler import parse_schedules
from .jobs import jsonable

EVERY_RE = re.compile(r"[1-9][0-9]{0,8}[smhdw]?")


def _when(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Operations:
    """Admin operations over one open store."""

    def __init__(self, store: Store):
        self.store = store

    # -- datasets ----------------------------------------------------------------

    def list_datasets(self) -> list[dict]:
        counts: dict[str, int] = {}
        for snap in self.store.snapshots():
            counts[snap.dataset] = counts.get(snap.dataset, 0) + 1
        rows = self.store.catalog.query("SELECT id, name, created_ns FROM datasets ORDER BY id")
        props = self.store.properties
        return [
            {"name": name, "created": _when(ns), "created_ns": ns, "snapshots": counts.get(name, 0), **props.get(ds)}
            for ds, name, ns in rows
        ]

    def set_dataset(self, name: str, values: dict) -> dict:
        """Change properties: read_only, quota (bytes, 0 = none), schedule."""
        internal = set(values) & INTERNAL
        if internal:
            raise FsError(errno.EINVAL, f"{', '.join(sorted(internal))} cannot be set")
        if "schedule" in values:
            entries = values["schedule"]
            if not isinstance(entries, list) or not all(
                isinstance(e, dict)
                and set(e) == {"name", "every", "keep"}
                and isinstance(e["name"], str)
                and isinstance(e["every"], str)
                and EVERY_RE.fullmatch(e["every"])
                and isinstance(e["keep"], int)
                and not isinstance(e["keep"], bool)
                for e in entries
            ):
                raise FsError(errno.EINVAL, 'schedule must be a list like [{"name": "hourly", "every": "1h", "keep": 24}]')
            # Entries are keyed by name: a later entry replaces an earlier one.
            values = {**values, "schedule": list({e["name"]: e for e in entries}.values())}
            try:
                parse_schedules(name, values["schedule"])
            except ValueError as exc:
                raise FsError(errno.EINVAL, f"bad schedule: {exc}") from None
        self.store.set_dataset_properties(name, values)
        return next(d for d in self.list_datasets() if d["name"] == name)

    def _clones_of(self, prefix: str) -> list[str]:
        """Datasets cloned from a snapshot whose name starts with ``prefix``."""
        origins = self.store.properties.with_origin()
        names = dict((ds, n) for ds, n, _ in self.store.catalog.datasets())
        return sorted(names[ds] for ds, origin in origins.items() if ds in names and origin and origin.startswith(prefix))

    def create_dataset(self, name: str) -> dict:
        check_label(name, "dataset")
        self.store.create_dataset(name)
        return next(d for d in self.list_datasets() if d["name"] == name)

    def delete_dataset(self, name: str) -> dict:
        clones = self._clones_of(f"{name}@")
        if clones:
            raise FsError(errno.EBUSY, f"{name} has clones ({', '.join(clones)}); delete them first")
        self.store.delete_dataset(name)
        return {"deleted": name}

    # -- snapshots -----------------------------------------------------------------

    @staticmethod
    def _snapshot(info) -> dict:
        d = dataclasses.asdict(info)
        d["created"] = _when(info.created_ns)
        return d

    def list_snapshots(self, dataset: str | None = None) -> list[dict]:
        return [self._snapshot(s) for s in self.store.snapshots(dataset)]

    def create_snapshot(self, dataset: str, name: str) -> dict:
        return self._snapshot(self.store.create_snapshot(dataset, name))

    def delete_snapshot(self, dataset: str, name: str) -> dict:
        clones = self._clones_of(f"{dataset}@{name}")
        clones = [c for c in clones if self.store.properties.get(self._ds_id(c))["origin"] == f"{dataset}@{name}"]
        if clones:
            raise FsError(errno.EBUSY, f"{dataset}@{name} is the origin of {', '.join(clones)}; delete them first")
        self.store.delete_snapshot(dataset, name)
        return {"deleted": f"{dataset}@{name}"}

    def rollback(self, dataset: str, name: str) -> dict:
        self.store.rollback(dataset, name)
        return {"dataset": dataset, "rolled_back_to": name}

    def _ds_id(self, name: str) -> int:
        return next(ds for ds, n, _ in self.store.catalog.datasets() if n == name)

    def clone(self, dataset: str, name: str, new_dataset: str) -> dict:
        check_label(new_dataset, "dataset")
        self.store.clone(dataset, name, new_dataset)
        self.store.properties.set(self._ds_id(new_dataset), {"origin": f"{dataset}@{name}"})
        return {"dataset": new_dataset, "origin": f"{dataset}@{name}"}

    def diff(self, dataset: str, a: str, b: str | None = None) -> list[dict]:
        return [
            {"kind": c.kind, "path": jsonable(c.path), "old_path": jsonable(c.old_path)}
            for c in self.store.diff(dataset, a, b)
        ]

    # -- space and integrity ---------------------------------------------------------

    def stats(self) -> dict:
        """Space per dataset and store (catalog figures), where the chunks live and their local cache.

        The chunk backend's request counters belong to the process that has
        the store open: they are in the server's status and /metrics.
        """
        out = jsonable(collect_stats(self.store))
        chunks = self.store.chunks
        counters = chunks.stats()
        out["chunk_backend"] = {"location": chunks.location, "cache_bytes": counters.cache_bytes,
                                "cache_limit": counters.cache_limit}
        return out

    def gc(self, dry_run: bool = False, progress=None, force: bool = False,
           grace: float | None = None) -> dict:
        """Mark and sweep; ``progress(done, total)`` counts chunks. In a chunk pool,
        ``force`` proceeds past stale members and ``grace`` overrides the grace period."""
        seen = {"list": 0, "sweep": 0}

        def report(phase: str, advance: int, total: int) -> None:
            seen[phase] = seen.get(phase, 0) + advance
            if progress:
                progress(seen[phase], total)

        return jsonable(collect(self.store, dry_run=dry_run, progress=report, force=force,
                                grace=grace))

    def scrub(self, threads: int | None = None, progress=None) -> dict:
        """Re-hash every chunk; ``progress(done, total)`` counts bytes."""
        done = [0]
        total = self.store.chunks.usage()[1]

        def report(nbytes: int) -> None:
            done[0] += nbytes
            if progress:
                progress(done[0], total)

        result = scrub(self.store, threads=threads, progress=report)
        out = jsonable(result)
        out["clean"] = result.clean
        out["bytes_per_second"] = result.bytes_per_second
        return out

    def fsck(self, repair: bool = False) -> dict:
        result = fsck(self.store, repair=repair)
        out = jsonable(result)
        out["clean"] = result.clean
        return out

    def import_tree(self, source: str, dataset: str, path: str = "/", progress=None, roots=None) -> dict:
        """Import ``source``; with ``roots``, it must lie inside one of them when the job runs."""
        total = scan_size(source, roots=roots)
        done = [0]

        def report(nbytes: int) -> None:
            done[0] += nbytes
            if progress:
                progress(done[0], total)

        return jsonable(import_tree(self.store, source, dataset, path, progress=report, roots=roots))

    def export_tree(
        self,
        dataset: str,
        dest: str,
        snapshot: str | None = None,
        path: str = "/",
        progress=None,
        preserve_owner: bool = False,
        roots=None,
    ) -> dict:
        """Export into ``dest`` (see cas.transfer.export_tree); owners, setuid and setgid
        only with ``preserve_owner``; with ``roots``, ``dest`` must lie inside one of them."""
        total = export_size(self.store, dataset, snapshot, path)
        done = [0]

        def report(nbytes: int) -> None:
            done[0] += nbytes
            if progress:
                progress(done[0], total)

        return jsonable(
            export_tree(
                self.store, dataset, dest, snapshot=snapshot, path=path, progress=report,
                preserve_owner=preserve_owner, roots=roots,
            )
        )

    # -- replication -------------------------------------------------------------------

    def send_snapshot(
        self,
        dataset: str,
        snapshot: str,
        file: str | None = None,
        since: str | None = None,
        have: str | None = None,
        progress=None,
        stream=None,
    ) -> dict:
        """Write ``dataset@snapshot`` as a send stream to ``file`` (a path, or a FIFO a
        reader holds open) or to the binary ``stream``; incremental from ``since``;
        chunks listed in the have file ``have`` are left out."""
        have_list = None
        if have is not None:
            with open(have, encoding="ascii", errors="replace") as f:
                have_list = read_have(f)
        with _stream_file(file, "w") if file is not None else _given(stream) as out:
            return jsonable(send_snapshot(self.store, dataset, snapshot, out, since=since, have=have_list,
                                          progress=progress))

    def receive_snapshot(self, dataset: str, file: str | None = None, force: bool = False, progress=None,
                         stream=None) -> dict:
        """Apply the send stream in ``file`` (a path or a FIFO) or ``stream`` as a snapshot of ``dataset``."""
        total = None
        if file is not None and stat.S_ISREG(os.stat(file).st_mode):
            total = os.stat(file).st_size
        with _stream_file(file, "r") if file is not None else _given(stream) as src:
            return jsonable(receive_snapshot(self.store, dataset, src, force=force, progress=progress, total=total))

    def have(self, dataset: str, file: str | None = None, chunks: bool = True, progress=None, stream=None) -> dict:
        """Write the have list of ``dataset`` (its snapshot GUIDs, and the chunks this store holds)."""
        with _stream_file(file, "w") if file is not None else _given(stream) as out:
            return write_have(self.store, dataset, out, chunks=chunks)


#: how long a send or receive job waits for the other end of a FIFO to appear
FIFO_WAIT = 60.0


@contextlib.contextmanager
def _given(stream):
    yield stream


@contextlib.contextmanager
def _stream_file(path: str, mode: str):
    """``path`` opened for a stream: a regular file (created 0600 for writing), or a FIFO
    whose other end a client holds or opens within FIFO_WAIT seconds (never blocking forever)."""
    try:
        st = os.stat(path)
        fifo = stat.S_ISFIFO(st.st_mode)
    except FileNotFoundError:
        fifo = False
    if mode == "w":
        if fifo:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno == errno.ENXIO:
                    raise FsError(errno.EPIPE, f"no reader on the FIFO {path}") from None
                raise
            os.set_blocking(fd, True)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        f = os.fdopen(fd, "wb", buffering=1 << 20)
    else:
        if fifo:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                if not poller.poll(FIFO_WAIT * 1000):
                    raise FsError(errno.ETIMEDOUT, f"no writer on the FIFO {path}")
                os.set_blocking(fd, True)
            except BaseException:
                os.close(fd)
                raise
        else:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        f = os.fdopen(fd, "rb", buffering=0)
    with f:
        yield f
