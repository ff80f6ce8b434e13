"""`ninep pool` and `ninep gc` on a shared chunk pool, through the real CLI against
SeaweedFS: the README's `ci: pool` block, line by line, and a server that republishes."""

from __future__ import annotations

import json
import shlex
import time

from cas.pool import Member

import obstore

from ..cas.s3help import bucket, chunk_keys
from ..readme_blocks import blocks
from ..server.s3util import ROOT, Serve, ninep


def _members(s3_bucket: str, prefix: str) -> dict[str, Member]:
    bk = bucket(s3_bucket)
    out = {}
    for batch in obstore.list(bk, f"{prefix}/pool/stores"):
        for meta in batch:
            m = Member.parse(bytes(obstore.get(bk, meta["path"]).bytes()), meta["path"])
            out[m.id] = m
    return out


def test_readme_pool_commands(s3_bucket, tmp_path):
    """Two stores on one prefix; gc on b refuses while a's set is stale (b's config says
    publications every 0.2 s), --force proceeds, `pool forget` unblocks it."""
    config = tmp_path / "ninep.toml"
    config.write_text("[s3]\npool_refresh = 0.2\npool_grace = 0\n")
    lines = [ln for ln in blocks((ROOT / "README.md").read_text())["pool"].splitlines()
             if shlex.split(ln, comments=True)]
    ran = []
    a_id = None
    for line in lines:
        args = [w.replace("my-bucket", s3_bucket).replace("./", f"{tmp_path}/")
                for w in shlex.split(line, comments=True)]
        assert args[0] == "ninep", line
        args = args[1:]
        ran.append(" ".join(args[:2]))
        if args[0] == "gc":
            args += ["--config", config]
            time.sleep(1.0)                       # a's set (published at init) is now stale
        if args[:2] == ["pool", "forget"]:
            args[-1] = a_id
        r = ninep(*args)
        if args[:2] == ["pool", "list"]:
            assert r.returncode == 0, r.stderr
            members = _members(s3_bucket, "pool")
            assert len(members) == 2
            for m in members.values():
                assert m.id in r.stdout and f"{m.host}:{m.path}" in r.stdout
            a_id = next(m.id for m in members.values() if m.path.endswith("store-a"))
            js = json.loads(ninep("pool", "list", f"s3://{s3_bucket}/pool", "--json").stdout)
            assert sorted(m["id"] for m in js) == sorted(members)
        elif args[0] == "gc" and "--force" not in args:
            assert r.returncode == 1 and a_id in r.stderr and "s ago" in r.stderr, r.stderr
        else:
            assert r.returncode == 0, (line, r.stderr)
    assert [r.split()[0] for r in ran] == ["init", "init", "pool", "gc", "gc", "pool"]
    (left,) = _members(s3_bucket, "pool").values()
    assert left.id != a_id and left.path.endswith("store-b")
    r = ninep("gc", "--store", tmp_path / "store-b", "--config", config)
    assert r.returncode == 0, r.stderr
    r = ninep("pool", "forget", f"s3://{s3_bucket}/pool", a_id)
    assert r.returncode == 1 and "no store" in r.stderr


def test_server_republishes_its_set(s3_bucket, tmp_path):
    """`ninep serve` publishes the store's chunk set every [s3] pool_refresh seconds."""
    config = tmp_path / "ninep.toml"
    config.write_text("[s3]\npool_refresh = 0.3\n")
    store = tmp_path / "s"
    assert ninep("init", store, "--chunks", f"s3://{s3_bucket}/p").returncode == 0
    srv = Serve(store, tmp_path / "serve.log", "--config", str(config)).start()
    try:
        (first,) = _members(s3_bucket, "p").values()
        deadline = time.monotonic() + 30
        while _members(s3_bucket, "p")[first.id].sequence < first.sequence + 3:
            assert time.monotonic() < deadline, srv.log_text()[-2000:]
            time.sleep(0.2)
        later = _members(s3_bucket, "p")[first.id]
        assert later.refreshed > first.refreshed
    finally:
        srv.stop()
    assert chunk_keys(bucket(s3_bucket), "p") == []
