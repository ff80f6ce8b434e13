"""HTTP routes of the admin API (Starlette), served by hypercorn under trio.

Every route is a thin adapter: parse the request, run an
:class:`~.operations.Operations` call in a worker thread (through the
:class:`~.context.AdminContext`, which serializes catalog changes with the
server's commit lock), and answer JSON. Errors carry stable codes (see
:mod:`.errors`). :func:`serve` runs the app on a bound socket.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import socket

import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .context import AdminContext
from .errors import ApiError, bad_request, from_oserror
from .jobs import jsonable
from .openapi import OPENAPI


class _TokenMiddleware:
    """Bearer-token check for the TCP listener; /health stays open."""

    def __init__(self, app, token: str):
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] != "/health":
            headers = dict(scope.get("headers") or [])
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, b"Bearer " + self.token):
                err = ApiError(401, "unauthorized", "missing or wrong bearer token")
                await err.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


_JOB_FIELDS = {
    "kind": str, "dry_run": bool, "repair": bool, "source": str, "dataset": str, "path": str, "dest": str, "snapshot": str,
    "preserve_owner": bool, "since": str, "file": str, "have": str, "force": bool, "chunks": bool,
    "grace": float,
}  # fmt: skip


async def _json_body(request: Request, *, required: bool = False) -> dict:
    raw = await request.body()
    if not raw:
        if required:
            raise bad_request("a JSON object body is required")
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise bad_request("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


def _str_field(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise bad_request(f"field {key!r} (a non-empty string) is required")
    return value


def create_app(ctx: AdminContext, *, token: str | None = None) -> Starlette:
    """The admin ASGI app for one server's context; with ``token``, requests need it.

    Over the owner-only unix socket, import and export may use any path on
    the server's host (the caller is the server's own user). Over TCP they
    are limited to the configured ``[admin] transfer_roots``: checked here
    for a prompt answer, and enforced again when the job runs, where the
    host directory is opened beneath its root without following symlinks
    (cas/hostdirs.py), so swapping a path component meanwhile leads nowhere.
    """
    roots = None if token is None else [os.path.realpath(r) for r in ctx.config.admin_transfer_roots]

    def allowed_path(path: str, what: str) -> str:
        if "\0" in path:
            raise bad_request(f"{what} contains a NUL byte")
        if not os.path.isabs(path):
            raise bad_request(f"{what} must be an absolute path on the server's host")
        real = os.path.realpath(path)
        if roots is not None and not any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots):
            raise ApiError(403, "forbidden", f"{what} is outside [admin] transfer_roots")
        return real

    async def run(fn, *args, **kwargs):
        try:
            return await ctx.call(fn, *args, **kwargs)
        except OSError as exc:
            raise from_oserror(exc) from None

    def ok(value, status: int = 200) -> JSONResponse:
        return JSONResponse(jsonable(value), status_code=status)

    async def health(request: Request):
        return ok({"status": "ok"})

    async def metrics(request: Request):
        return Response(await ctx.render_metrics(), media_type="text/plain; version=0.0.4")

    async def openapi(request: Request):
        return JSONResponse(OPENAPI)

    async def status(request: Request):
        return ok(ctx.status())

    async def datasets(request: Request):
        if request.method == "POST":
            body = await _json_body(request)
            created = await run(lambda ops: ops.create_dataset(_str_field(body, "name")))
            return ok(created, 201)
        return ok(await run(lambda ops: ops.list_datasets()))

    async def dataset(request: Request):
        name = request.path_params["name"]
        if request.method == "DELETE":
            ctx.check_dataset_deletable(name)
            result = await run(lambda ops: ops.delete_dataset(name))
            ctx.dataset_deleted(name)
            return ok(result)
        if request.method == "PATCH":
            body = await _json_body(request, required=True)
            updated = await run(lambda ops: ops.set_dataset(name, body))
            ctx.properties_changed(name, updated)
            return ok(updated)
        found = [d for d in await run(lambda ops: ops.list_datasets()) if d["name"] == name]
        if not found:
            raise ApiError(404, "not_found", f"no dataset named {name!r}")
        return ok(found[0])

    async def snapshots(request: Request):
        name = request.path_params["name"]
        if request.method == "POST":
            body = await _json_body(request)
            snap = _str_field(body, "name")
            return ok(await run(lambda ops: ops.create_snapshot(name, snap)), 201)
        return ok(await run(lambda ops: ops.list_snapshots(name)))

    async def snapshot(request: Request):
        name, snap = request.path_params["name"], request.path_params["snapshot"]
        if request.method == "DELETE":
            result = await run(lambda ops: ops.delete_snapshot(name, snap))
            ctx.snapshot_deleted(name, snap)
            return ok(result)
        found = [s for s in await run(lambda ops: ops.list_snapshots(name)) if s["name"] == snap]
        if not found:
            raise ApiError(404, "not_found", f"no snapshot {name}@{snap}")
        return ok(found[0])

    async def all_snapshots(request: Request):
        return ok(await run(lambda ops: ops.list_snapshots(None)))

    async def rollback(request: Request):
        name, snap = request.path_params["name"], request.path_params["snapshot"]
        return ok(await run(lambda ops: ops.rollback(name, snap)))

    async def clone(request: Request):
        name, snap = request.path_params["name"], request.path_params["snapshot"]
        body = await _json_body(request)
        new = _str_field(body, "name")
        return ok(await run(lambda ops: ops.clone(name, snap, new)), 201)

    async def diff(request: Request):
        name = request.path_params["name"]
        a = request.query_params.get("from")
        if not a:
            raise bad_request("query parameter 'from' (a snapshot name) is required")
        b = request.query_params.get("to") or None
        return ok(await run(lambda ops: ops.diff(name, a, b)))

    async def stats(request: Request):
        return ok(await ctx.read(lambda ops: ops.stats()))

    def _job_body(kind: str, body: dict):
        """Validate a job request; returns the worker-thread body."""
        if kind == "gc":
            dry_run, force = bool(body.get("dry_run", False)), bool(body.get("force", False))
            grace = body.get("grace")
            if grace is not None and not (math.isfinite(grace) and grace >= 0):
                raise ApiError(400, "bad_request", "grace must be a number of seconds >= 0")
            return {"dry_run": dry_run, "force": force, "grace": grace}, \
                lambda ops, progress: ops.gc(dry_run=dry_run, progress=progress, force=force,
                                             grace=grace)
        if kind == "scrub":
            return {}, lambda ops, progress: ops.scrub(progress=progress)
        if kind == "fsck":
            repair = bool(body.get("repair", False))
            return {"repair": repair}, lambda ops, progress: ops.fsck(repair=repair)
        if kind == "import":
            source, dataset = _str_field(body, "source"), _str_field(body, "dataset")
            path = body.get("path") or "/"
            if not isinstance(path, str):
                raise bad_request("field 'path' must be a string")
            source = allowed_path(source, "source")
            if not os.path.isdir(source):
                raise bad_request(f"source {source!r} is not a directory on the server's host")
            params = {"source": source, "dataset": dataset, "path": path}
            return params, lambda ops, progress: ops.import_tree(source, dataset, path, progress=progress, roots=roots)
        if kind == "export":
            dataset, dest = _str_field(body, "dataset"), _str_field(body, "dest")
            dest = allowed_path(dest, "dest")
            snapshot, path = body.get("snapshot") or None, body.get("path") or "/"
            if not isinstance(path, str) or not (snapshot is None or isinstance(snapshot, str)):
                raise bad_request("fields 'path' and 'snapshot' must be strings")
            preserve = bool(body.get("preserve_owner", False))
            params = {"dataset": dataset, "dest": dest, "snapshot": snapshot, "path": path, "preserve_owner": preserve}
            return params, lambda ops, progress: ops.export_tree(
                dataset, dest, snapshot, path, progress=progress, preserve_owner=preserve, roots=roots
            )
        if kind in ("send", "receive", "have"):
            return _replication_job(kind, body)
        raise bad_request(f"unknown job kind {kind!r}: use gc, scrub, fsck, import, export, send, receive or have")

    def _replication_job(kind: str, body: dict):
        """send, receive and have: a stream or have list in ``file`` on the server's host
        (a regular file, or a FIFO whose other end the client holds: see commands/replicate.py)."""
        dataset = _str_field(body, "dataset")
        file = allowed_path(_str_field(body, "file"), "file")
        if kind == "send":
            snapshot = _str_field(body, "snapshot")
            since = body.get("since") or None
            have = body.get("have") or None
            if have is not None:
                have = allowed_path(have, "have")
                if not os.path.isfile(have):
                    raise bad_request(f"have list {have!r} is not a file on the server's host")
            params = {"dataset": dataset, "snapshot": snapshot, "since": since, "file": file, "have": have}
            return params, lambda ops, progress: ops.send_snapshot(
                dataset, snapshot, file, since=since, have=have, progress=progress
            )
        if kind == "receive":
            if not os.path.exists(file):
                raise bad_request(f"stream {file!r} does not exist on the server's host")
            force = bool(body.get("force", False))
            params = {"dataset": dataset, "file": file, "force": force}
            return params, lambda ops, progress: ops.receive_snapshot(dataset, file, force=force, progress=progress)
        chunks = bool(body.get("chunks", True))
        params = {"dataset": dataset, "file": file, "chunks": chunks}
        return params, lambda ops, progress: ops.have(dataset, file, chunks=chunks)

    async def jobs(request: Request):
        if request.method == "POST":
            body = await _json_body(request, required=True)
            for key, value in body.items():
                want = _JOB_FIELDS.get(key)
                if want is None:
                    raise bad_request(f"unknown field {key!r}")
                if want is float and isinstance(value, int) and not isinstance(value, bool):
                    value = body[key] = float(value)  # JSON has one number type
                if not isinstance(value, want):
                    raise bad_request(f"field {key!r} must be a {want.__name__}")
            kind = _str_field(body, "kind")
            allowed = {"gc": {"dry_run", "force", "grace"}, "scrub": set(), "fsck": {"repair"}, "import": {"source", "dataset", "path"},
                       "export": {"dataset", "dest", "snapshot", "path", "preserve_owner"},
                       "send": {"dataset", "snapshot", "since", "file", "have"},
                       "receive": {"dataset", "file", "force"}, "have": {"dataset", "file", "chunks"}}.get(kind)  # fmt: skip
            if allowed is not None and set(body) - allowed - {"kind"}:
                raise bad_request(f"fields {sorted(set(body) - allowed - {'kind'})} do not apply to a {kind} job")
            params, work = _job_body(kind, body)
            job = ctx.start_job(kind, params, work)
            return ok(job.to_dict(), 202)
        return ok([j.to_dict() for j in ctx.jobs.list()])

    async def job(request: Request):
        found = ctx.jobs.get(request.path_params["id"])
        if found is None:
            raise ApiError(404, "not_found", f"no job {request.path_params['id']!r}")
        return ok(found.to_dict())

    routes = [
        Route("/health", health),
        Route("/metrics", metrics),
        Route("/openapi.json", openapi),
        Route("/v1/status", status),
        Route("/v1/datasets", datasets, methods=["GET", "POST"]),
        Route("/v1/datasets/{name}", dataset, methods=["GET", "PATCH", "DELETE"]),
        Route("/v1/snapshots", all_snapshots, methods=["GET"]),
        Route("/v1/datasets/{name}/snapshots", snapshots, methods=["GET", "POST"]),
        Route("/v1/datasets/{name}/snapshots/{snapshot}", snapshot, methods=["GET", "DELETE"]),
        Route("/v1/datasets/{name}/snapshots/{snapshot}/rollback", rollback, methods=["POST"]),
        Route("/v1/datasets/{name}/snapshots/{snapshot}/clone", clone, methods=["POST"]),
        Route("/v1/datasets/{name}/diff", diff, methods=["GET"]),
        Route("/v1/stats", stats, methods=["GET"]),
        Route("/v1/jobs", jobs, methods=["GET", "POST"]),
        Route("/v1/jobs/{id}", job, methods=["GET"]),
    ]

    async def api_error(request: Request, exc: ApiError):
        return exc.response()

    async def not_found(request: Request, exc):
        status = getattr(exc, "status_code", 404)
        code = {404: "no_such_endpoint", 405: "method_not_allowed"}.get(status, "http_error")
        response = ApiError(status, code, getattr(exc, "detail", "") or code).response()
        response.headers.update(getattr(exc, "headers", None) or {})  # e.g. Allow on a 405
        return response

    async def internal(request: Request, exc: Exception):
        return ApiError(500, "internal", f"{type(exc).__name__}: {exc}").response()

    middleware = [Middleware(_TokenMiddleware, token=token)] if token else []
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={ApiError: api_error, 404: not_found, 405: not_found, Exception: internal},
    )


async def serve(ctx: AdminContext, sock: socket.socket, token: str | None, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve the admin app on a bound, listening socket until cancelled."""
    from hypercorn.config import Config as HypercornConfig
    from hypercorn.trio import serve as hypercorn_serve

    config = HypercornConfig()
    # hypercorn owns the descriptor from here on (and closes it at shutdown).
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 2
    await hypercorn_serve(create_app(ctx, token=token), config, task_status=task_status)
