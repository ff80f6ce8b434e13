"""Where an admin command runs: against a running server, or on the store itself.

DuckDB's file lock lets only one process open a store, so while ``ninep
serve`` runs, admin commands must go through its admin API. :func:`backend`
picks the way: ``--admin ADDR`` names a server; otherwise a server is used if
one answers on ``<store>/admin.sock``; otherwise the store is opened directly.
Both backends return the same JSON-ready values, so commands print the same
output either way.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

from ..address import parse_address
from . import fifo
from .common import CommandError, load_config_option, open_store


class RemoteError(CommandError):
    """The admin API answered with an error."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{message} ({code})")
        self.status = status
        self.code = code


class RemoteBackend:
    """Admin operations through a running server's HTTP API."""

    remote = True

    def __init__(self, address: str, token: str | None = None):
        import httpx

        addr = parse_address(address)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if addr.kind == "unix":
            transport = httpx.HTTPTransport(uds=addr.path)
            self._http = httpx.Client(transport=transport, base_url="http://ninep", headers=headers, timeout=3600)
        else:
            self._http = httpx.Client(base_url=f"http://{addr.host}:{addr.port}", headers=headers, timeout=3600)
        self.address = address

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs):
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CommandError(f"cannot reach the server's admin API at {self.address}: {exc}") from None
        if response.status_code >= 400:
            try:
                err = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                err = {"code": "http_error", "message": response.text}
            raise RemoteError(response.status_code, err["code"], err["message"])
        return response.json()

    def start_job(self, kind: str, params: dict) -> dict:
        """Start a job; returns its record."""
        return self._call("POST", "/v1/jobs", json={"kind": kind, **params})

    def job_state(self, job_id: str) -> dict:
        """A job's record now."""
        return self._call("GET", f"/v1/jobs/{quote(job_id)}")

    def _job(self, kind: str, params: dict, progress=None) -> dict:
        job = self._call("POST", "/v1/jobs", json={"kind": kind, **params})
        while job["state"] == "running":
            time.sleep(0.2)
            job = self._call("GET", f"/v1/jobs/{quote(job['id'])}")
            if progress:
                progress(job["done"], job["total"])
        if job["state"] != "succeeded":
            raise CommandError(f"{kind} failed on the server: {job['error']}")
        return job["result"]

    def status(self) -> dict:
        return self._call("GET", "/v1/status")

    def list_datasets(self) -> list[dict]:
        return self._call("GET", "/v1/datasets")

    def create_dataset(self, name: str) -> dict:
        return self._call("POST", "/v1/datasets", json={"name": name})

    def delete_dataset(self, name: str) -> dict:
        return self._call("DELETE", f"/v1/datasets/{quote(name)}")

    def set_dataset(self, name: str, properties: dict) -> dict:
        return self._call("PATCH", f"/v1/datasets/{quote(name)}", json=properties)

    def list_snapshots(self, dataset: str | None = None) -> list[dict]:
        if dataset:
            return self._call("GET", f"/v1/datasets/{quote(dataset)}/snapshots")
        return self._call("GET", "/v1/snapshots")

    def create_snapshot(self, dataset: str, name: str) -> dict:
        return self._call("POST", f"/v1/datasets/{quote(dataset)}/snapshots", json={"name": name})

    def delete_snapshot(self, dataset: str, name: str) -> dict:
        return self._call("DELETE", f"/v1/datasets/{quote(dataset)}/snapshots/{quote(name)}")

    def rollback(self, dataset: str, name: str) -> dict:
        return self._call("POST", f"/v1/datasets/{quote(dataset)}/snapshots/{quote(name)}/rollback")

    def clone(self, dataset: str, name: str, new_dataset: str) -> dict:
        return self._call(
            "POST", f"/v1/datasets/{quote(dataset)}/snapshots/{quote(name)}/clone", json={"name": new_dataset}
        )

    def diff(self, dataset: str, a: str, b: str | None = None) -> list[dict]:
        params = {"from": a, **({"to": b} if b else {})}
        return self._call("GET", f"/v1/datasets/{quote(dataset)}/diff", params=params)

    def stats(self) -> dict:
        return self._call("GET", "/v1/stats")

    def gc(self, dry_run: bool = False, progress=None, force: bool = False,
           grace: float | None = None) -> dict:
        params: dict = {"dry_run": dry_run, "force": force}
        if grace is not None:
            params["grace"] = float(grace)
        return self._job("gc", params, progress)

    def scrub(self, threads: int | None = None, progress=None) -> dict:
        return self._job("scrub", {}, progress)

    def fsck(self, repair: bool = False) -> dict:
        return self._job("fsck", {"repair": repair})

    def import_tree(self, source: str, dataset: str, path: str = "/", progress=None) -> dict:
        # The server reads the source itself: pass an absolute path on its host.
        return self._job("import", {"source": os.path.abspath(source), "dataset": dataset, "path": path}, progress)

    def export_tree(
        self,
        dataset: str,
        dest: str,
        snapshot: str | None = None,
        path: str = "/",
        progress=None,
        preserve_owner: bool = False,
    ) -> dict:
        params = {
            "dataset": dataset,
            "dest": os.path.abspath(dest),
            "snapshot": snapshot,
            "path": path,
            "preserve_owner": preserve_owner,
        }
        # the API takes no nulls: leave out what is not given
        return self._job("export", {k: v for k, v in params.items() if v is not None}, progress)

    # -- replication: the stream passes through a FIFO the server opens (fifo.py) --------

    def send_snapshot(self, dataset: str, snapshot: str, file: str | None = None, since: str | None = None,
                      have: str | None = None, progress=None, stream=None) -> dict:
        params = {"dataset": dataset, "snapshot": snapshot, "since": since,
                  "have": os.path.abspath(have) if have else None}
        params = {k: v for k, v in params.items() if v is not None}
        if file is not None:
            return self._job("send", {**params, "file": os.path.abspath(file)}, progress)
        return fifo.job_to_stream(self, "send", params, stream, progress)

    def receive_snapshot(self, dataset: str, file: str | None = None, force: bool = False, progress=None,
                         stream=None) -> dict:
        params = {"dataset": dataset, "force": force}
        if file is not None:
            return self._job("receive", {**params, "file": os.path.abspath(file)}, progress)
        return fifo.stream_to_job(self, "receive", params, stream, progress)

    def have(self, dataset: str, file: str | None = None, chunks: bool = True, progress=None, stream=None) -> dict:
        params = {"dataset": dataset, "chunks": chunks}
        if file is not None:
            return self._job("have", {**params, "file": os.path.abspath(file)}, progress)
        return fifo.job_to_stream(self, "have", params, stream, progress)


class LocalBackend:
    """Admin operations on a store opened by this process."""

    remote = False

    def __init__(self, operations):
        self._ops = operations

    def __getattr__(self, name: str):
        return getattr(self._ops, name)

    def status(self) -> dict:
        raise CommandError("no server is running for this store (status needs one)")


def _server_socket(store: str) -> str | None:
    """The admin socket of a server running on ``store``, if one answers."""
    return answering_socket(Path(store) / "admin.sock")


def answering_socket(path: str | Path) -> str | None:
    """``unix:PATH`` when a server answers on the admin socket ``path``, else None."""
    import socket

    path = Path(path)
    if not path.exists():
        return None
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return None  # a stale socket left by a server that died
    return f"unix:{path}"


@contextmanager
def backend(args, *, need_server: bool = False, create: bool = False) -> Iterator[RemoteBackend | LocalBackend]:
    """The backend for an admin command's ``--store``/``--admin`` options."""
    from ..admin.operations import Operations

    address = getattr(args, "admin", None) or _server_socket(args.store)
    if need_server and not address:
        raise CommandError(f"no server is running for {args.store} (start one with: ninep serve --store {args.store})")
    if address:
        remote = RemoteBackend(address, token=getattr(args, "token", None) or os.environ.get("NINEP_ADMIN_TOKEN"))
        try:
            yield remote
        finally:
            remote.close()
        return
    config = load_config_option(getattr(args, "config", None))
    with open_store(args.store, create=create, config=config) as store:
        yield LocalBackend(Operations(store))
