"""The admin API against a live in-process server."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ninep_server.admin.openapi import OPENAPI

from .conftest import admin_client

ROOT = Path(__file__).resolve().parents[2]


def assert_error(response, status: int, code: str):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["error"]["message"]


async def test_health_and_openapi(api):
    r = await api.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await api.get("/openapi.json")
    assert r.json() == OPENAPI


def test_committed_openapi_document_is_current():
    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == json.loads(json.dumps(OPENAPI)), "run: python -m ninep_server.admin.openapi > docs/openapi.json"


async def test_unix_socket_is_owner_only(live):
    assert stat.S_IMODE(os.stat(live.admin_unix[5:]).st_mode) == 0o600


async def test_tcp_listener_needs_the_token_except_for_health(live):
    async with admin_client(live, tcp=True, token=None) as anon:
        assert (await anon.get("/health")).status_code == 200
        for method, path in [("GET", "/v1/datasets"), ("POST", "/v1/datasets"), ("GET", "/metrics"), ("GET", "/v1/status")]:
            assert_error(await anon.request(method, path), 401, "unauthorized")
    async with admin_client(live, tcp=True, token="wrong-token-wrong-token") as wrong:
        assert_error(await wrong.get("/v1/datasets"), 401, "unauthorized")
    async with admin_client(live, tcp=True) as good:
        assert (await good.get("/v1/datasets")).status_code == 200


async def test_datasets_lifecycle_and_errors(live, api):
    r = await api.get("/v1/datasets")
    assert [d["name"] for d in r.json()] == ["main"]
    r = await api.post("/v1/datasets", json={"name": "proj"})
    assert r.status_code == 201 and r.json()["name"] == "proj"
    assert_error(await api.post("/v1/datasets", json={"name": "proj"}), 409, "already_exists")
    assert_error(await api.post("/v1/datasets", json={"name": "bad name"}), 400, "invalid_argument")
    assert_error(await api.post("/v1/datasets", json={}), 400, "invalid_argument")
    assert_error(await api.post("/v1/datasets", content=b"not json"), 400, "invalid_argument")
    assert (await api.get("/v1/datasets/proj")).json()["name"] == "proj"
    assert_error(await api.get("/v1/datasets/nope"), 404, "not_found")
    # a new dataset is served at once under its aname
    async with live.connect(aname=b"proj") as c:
        await c.write_file(b"hello", b"world")
        # ... and cannot be deleted while attached
        assert_error(await api.delete("/v1/datasets/proj"), 409, "dataset_in_use")
    r = await api.delete("/v1/datasets/proj")
    assert r.status_code == 200
    assert_error(await api.delete("/v1/datasets/proj"), 404, "not_found")
    assert_error(await api.get("/v1/no-such-thing"), 404, "no_such_endpoint")
    assert_error(await api.put("/v1/datasets"), 405, "method_not_allowed")


async def test_status_and_metrics(live, api):
    async with live.connect() as c:
        await c.write_file(b"f", b"x" * 1000)
        await c.read_file(b"f")
        big = bytes(range(256)) * 800           # 204,800 bytes: reads cross a chunk boundary
        await c.write_file(b"g", big)
        assert await c.read_file(b"g") == big   # a read across chunks goes out as its pieces
        r = await api.get("/v1/status")
        status = r.json()
        assert status["listening"] == [live.tcp, live.unix]
        assert len(status["sessions"]) == 1 and status["sessions"][0]["fids"] >= 1
        assert {e["name"] for e in status["exports"]} == {"main"}
        text = (await api.get("/metrics")).text
    assert 'ninep_request_seconds_count{type="Twrite"}' in text
    assert f"ninep_written_bytes_total {1000 + len(big)}.0" in text
    assert f"ninep_read_bytes_total {1000 + len(big)}.0" in text   # the pieces counted, not the tuple
    assert "ninep_connected_clients" in text and "ninep_commit_seconds_count" in text
    for gauge in ("ninep_dirty_bytes", "ninep_cache_hit_ratio", "ninep_chunk_store_bytes", "ninep_dedup_ratio",
                  "ninep_metadata_rows"):
        assert f"\n{gauge} " in text, gauge
    assert float(text.split("\nninep_metadata_records ")[1].split()[0]) >= 3   # the root, f and g
    assert 'ninep_request_seconds_bucket{le="0.001",type="Twalk"}' in text  # latency histograms


async def _wait_job(api, job: dict) -> dict:
    import trio

    with trio.fail_after(120):
        while job["state"] == "running":
            await trio.sleep(0.05)
            job = (await api.get(f"/v1/jobs/{job['id']}")).json()
    return job


async def test_jobs_gc_scrub_fsck_import_export(live, api, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "data").write_bytes(os.urandom(200_000))
    (src / "hello").write_text("hello\n")
    r = await api.post("/v1/jobs", json={"kind": "import", "source": str(src), "dataset": "imported"})
    assert r.status_code == 202 and r.json()["state"] == "running", r.text
    job = await _wait_job(api, r.json())
    assert job["state"] == "succeeded", job
    assert job["done"] > 0
    async with live.connect(aname=b"imported") as c:
        assert await c.read_file(b"sub/data") == (src / "sub" / "data").read_bytes()
        await c.unlink(b"sub/data")
    orphan = live.store.chunks.put(b"a chunk no catalog row names")  # what a crash leaves behind
    for kind, extra in [("gc", {"dry_run": False}), ("scrub", {}), ("fsck", {})]:
        job = await _wait_job(api, (await api.post("/v1/jobs", json={"kind": kind, **extra})).json())
        assert job["state"] == "succeeded", job
    gc = [j for j in (await api.get("/v1/jobs")).json() if j["kind"] == "gc"][0]
    assert gc["result"]["chunks_freed"] >= 1 and not live.store.chunks.has(orphan)
    scrubbed = [j for j in (await api.get("/v1/jobs")).json() if j["kind"] == "scrub"][0]
    assert scrubbed["result"]["clean"] is True
    dest = tmp_path / "out"
    job = await _wait_job(api, (await api.post("/v1/jobs", json={"kind": "export", "dataset": "imported", "dest": str(dest)})).json())
    assert job["state"] == "succeeded", job
    assert (dest / "hello").read_text() == "hello\n"
    assert_error(await api.post("/v1/jobs", json={"kind": "defrag"}), 400, "invalid_argument")
    assert_error(await api.post("/v1/jobs", json={"kind": "import", "source": "/no/such/dir", "dataset": "x"}), 400, "invalid_argument")
    assert_error(await api.get("/v1/jobs/gc-999"), 404, "not_found")


async def test_gc_job_grace_takes_any_finite_json_number_and_refuses_the_rest(live, api):
    """JSON has one number type: a grace of 1 is 1.0 s. NaN, infinities, negative
    numbers and booleans are refused: a NaN grace would make every object old enough."""
    job = await _wait_job(api, (await api.post("/v1/jobs", json={"kind": "gc", "grace": 1})).json())
    assert job["state"] == "succeeded", job
    for raw in ('{"kind": "gc", "grace": NaN}', '{"kind": "gc", "grace": Infinity}',
                '{"kind": "gc", "grace": -1}', '{"kind": "gc", "grace": true}'):
        r = await api.post("/v1/jobs", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 400, (raw, r.text)


async def test_stats(live, api):
    async with live.connect() as c:
        payload = os.urandom(300_000)
        await c.write_file(b"a", payload)
        await c.write_file(b"b", payload)  # the same data twice: stored once
    stats = (await api.get("/v1/stats")).json()
    main = [d for d in stats["datasets"] if d["name"] == "main"][0]
    assert main["files"] == 2 and main["logical_bytes"] == 600_000
    assert 1.9 <= main["dedup_ratio"] <= 2.1


async def test_dataset_properties_quota_and_read_only(live, api):
    import errno as _errno

    from ninep_server.client import NinepError

    assert_error(await api.patch("/v1/datasets/main", json={"quota": -5}), 400, "invalid_argument")
    assert_error(await api.patch("/v1/datasets/main", json={"color": "red"}), 400, "invalid_argument")
    assert_error(await api.patch("/v1/datasets/main", json={"origin": "x@y"}), 400, "invalid_argument")
    assert_error(await api.patch("/v1/datasets/nope", json={"quota": 5}), 404, "not_found")
    r = await api.patch("/v1/datasets/main", json={"quota": 1_000_000})
    assert r.status_code == 200 and r.json()["quota"] == 1_000_000
    async with live.connect() as c:
        s = await c.statfs(c.root_fid)
        assert s.blocks == 1_000_000 // s.bsize
        await c.write_file(b"fits", bytes(900_000))
        with pytest.raises(NinepError) as info:
            await c.write_file(b"too-much", bytes(200_000))
        assert info.value.errno == _errno.EDQUOT
        await c.unlink(b"too-much")
        await c.unlink(b"fits")  # space frees after delete (and gc reclaims the chunks)
        await c.write_file(b"again", bytes(900_000))
        job = await _wait_job(api, (await api.post("/v1/jobs", json={"kind": "gc"})).json())
        assert job["state"] == "succeeded"
        # read_only applies at once to what is served
        assert (await api.patch("/v1/datasets/main", json={"read_only": True})).json()["read_only"] is True
        root = await c.walk_path(b"")
        with pytest.raises(NinepError) as info:
            await c.mkdir(root, b"d")
        assert info.value.errno == _errno.EROFS
        await api.patch("/v1/datasets/main", json={"read_only": False, "quota": 0})
        await c.mkdir(root, b"d")


async def test_snapshots_through_the_api_and_clone_protection(live, api):
    async with live.connect() as c:
        await c.write_file(b"f", b"one")
    r = await api.post("/v1/datasets/main/snapshots", json={"name": "s1"})
    assert r.status_code == 201 and r.json()["name"] == "s1"
    assert_error(await api.post("/v1/datasets/main/snapshots", json={"name": "s1"}), 409, "already_exists")
    assert_error(await api.post("/v1/datasets/main/snapshots", json={"name": "../x"}), 400, "invalid_argument")
    assert_error(await api.post("/v1/datasets/nope/snapshots", json={"name": "x"}), 404, "not_found")
    assert [s["name"] for s in (await api.get("/v1/datasets/main/snapshots")).json()] == ["s1"]
    assert (await api.get("/v1/snapshots")).json()[0]["dataset"] == "main"
    assert (await api.get("/v1/datasets/main/snapshots/s1")).json()["name"] == "s1"
    assert_error(await api.get("/v1/datasets/main/snapshots/s9"), 404, "not_found")
    async with live.connect() as c:
        await c.write_file(b"f", b"two")
        await c.write_file(b"g", b"new")
    diff = (await api.get("/v1/datasets/main/diff", params={"from": "s1"})).json()
    assert {(d["kind"], d["path"]) for d in diff} == {("M", "/"), ("M", "/f"), ("+", "/g")}
    assert_error(await api.get("/v1/datasets/main/diff"), 400, "invalid_argument")
    r = await api.post("/v1/datasets/main/snapshots/s1/clone", json={"name": "copy"})
    assert r.status_code == 201
    assert (await api.get("/v1/datasets/copy")).json()["origin"] == "main@s1"
    async with live.connect(aname=b"copy") as c:
        assert await c.read_file(b"f") == b"one"
    assert_error(await api.delete("/v1/datasets/main/snapshots/s1"), 409, "busy")
    assert_error(await api.delete("/v1/datasets/main"), 409, "busy")
    r = await api.post("/v1/datasets/main/snapshots/s1/rollback")
    assert r.status_code == 200
    async with live.connect() as c:
        assert await c.read_file(b"f") == b"one" and not await c.exists(b"g")
    assert (await api.delete("/v1/datasets/copy")).status_code == 200
    assert (await api.delete("/v1/datasets/main/snapshots/s1")).status_code == 200


async def test_jobs_send_receive_have(live, api, tmp_path):
    """send, receive and have as admin jobs, into another dataset of the same served store."""
    async with live.connect() as c:
        await c.write_file(b"kept", b"k" * 300_000)
        await c.write_file(b"changed", b"before")
    assert (await api.post("/v1/datasets/main/snapshots", json={"name": "s1"})).status_code == 201
    full = tmp_path / "s1.stream"
    job = await _wait_job(api, (await api.post("/v1/jobs", json={
        "kind": "send", "dataset": "main", "snapshot": "s1", "file": str(full)})).json())
    assert job["state"] == "succeeded", job
    assert job["result"]["kind"] == "full" and job["result"]["stream_bytes"] == full.stat().st_size
    job = await _wait_job(api, (await api.post("/v1/jobs", json={
        "kind": "receive", "dataset": "copy", "file": str(full)})).json())
    assert job["state"] == "succeeded", job
    assert job["done"] == job["total"] == full.stat().st_size
    # every chunk was here already (the same store): the stream's chunks were deduplicated
    async with live.connect(aname=b"copy") as c:
        assert await c.read_file(b"kept") == b"k" * 300_000
        assert await c.read_file(b"changed") == b"before"
        async with live.connect() as m:
            await m.write_file(b"changed", b"after")
            await m.write_file(b"added", b"new file")
        await api.post("/v1/datasets/main/snapshots", json={"name": "s2"})
        have = tmp_path / "have.txt"
        job = await _wait_job(api, (await api.post("/v1/jobs", json={
            "kind": "have", "dataset": "copy", "file": str(have)})).json())
        assert job["state"] == "succeeded", job
        assert have.read_text().splitlines()[2].endswith(" s1")
        inc = tmp_path / "inc.stream"
        job = await _wait_job(api, (await api.post("/v1/jobs", json={
            "kind": "send", "dataset": "main", "snapshot": "s2", "since": "s1", "have": str(have),
            "file": str(inc)})).json())
        assert job["state"] == "succeeded", job
        # the two new chunks are in this store already (main uses them): the have list names them
        r = job["result"]
        assert r["kind"] == "incremental" and r["chunks"] == 0 and r["chunks_skipped"] == 2, job
        job = await _wait_job(api, (await api.post("/v1/jobs", json={
            "kind": "receive", "dataset": "copy", "file": str(inc)})).json())
        assert job["state"] == "succeeded", job
        # the attached live tree of "copy" shows the received snapshot at once
        assert await c.read_file(b"changed") == b"after"
        assert await c.read_file(b"added") == b"new file"
    diff = (await api.get("/v1/datasets/copy/diff", params={"from": "s1", "to": "s2"})).json()
    assert diff == (await api.get("/v1/datasets/main/diff", params={"from": "s1", "to": "s2"})).json() != []
    # a cut stream fails the job with the reason, and changes nothing
    cut = tmp_path / "cut.stream"
    cut.write_bytes(full.read_bytes()[:-10])
    job = await _wait_job(api, (await api.post("/v1/jobs", json={
        "kind": "receive", "dataset": "copy2", "file": str(cut)})).json())
    assert job["state"] == "failed" and "truncated" in job["error"], job
    assert "copy2" not in [d["name"] for d in (await api.get("/v1/datasets")).json()]
    assert_error(await api.post("/v1/jobs", json={"kind": "send", "dataset": "main", "file": str(inc)}),
                 400, "invalid_argument")
    assert_error(await api.post("/v1/jobs", json={"kind": "receive", "dataset": "x", "file": "/no/such/stream"}),
                 400, "invalid_argument")
    assert_error(await api.post("/v1/jobs", json={"kind": "receive", "dataset": "x", "file": "relative"}),
                 400, "invalid_argument")
    assert_error(await api.post("/v1/jobs", json={"kind": "have", "dataset": "x", "file": str(have),
                                                  "force": True}), 400, "invalid_argument")
