"""`ninep pool` and `ninep gc` on a shared chunk pool, through the real CLI against
SeaweedFS: the README's `ci: pool` block, line by line, and a server that republishes."""

from __future__ import annotations

import json
import os
import shlex
import threading
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


def test_two_servers_share_a_pool(s3_bucket, tmp_path):
    """Two `ninep serve` on one prefix: a file written through each is stored once, and
    `ninep gc` through one server frees only the chunk no member's set names."""
    config = tmp_path / "ninep.toml"
    # No timed commit mid-write: one would store the partly written chunk, which a later
    # write supersedes and only gc frees (a shared pool deletes nothing at commit).
    config.write_text("[server]\ncommit_interval = 3600\n[s3]\npool_refresh = 0.5\npool_grace = 0\n")
    url = f"s3://{s3_bucket}/two"
    stores = [tmp_path / "a", tmp_path / "b"]
    for s in stores:
        assert ninep("init", s, "--chunks", url).returncode == 0
    same, only = os.urandom(2 * (1 << 20) + 5), [os.urandom(1000), os.urandom(2000)]
    servers = [Serve(s, tmp_path / f"{s.name}.log", "--config", str(config)).start() for s in stores]
    try:
        def write(i):
            async def go(c):
                await c.write_file("same", same, fsync=True)
                await c.write_file("only", only[i], fsync=True)
            servers[i].call(go)

        threads = [threading.Thread(target=write, args=(i,)) for i in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(chunk_keys(bucket(s3_bucket), "two")) == 3 + 2   # "same" stored once
        written = time.time()

        async def drop(c):
            await c.unlink("same")
            await c.unlink("only")
        servers[1].call(drop)
        deadline = time.monotonic() + 30                # a's next publication names "same"
        while min(m.refreshed for m in _members(s3_bucket, "two").values()) < written + 0.1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        r = ninep("gc", "--store", stores[1])           # through b's server (admin socket)
        assert r.returncode == 0, r.stderr
        assert "freed 1 chunks" in r.stdout and "4 kept for other stores" in r.stdout, r.stdout
        assert len(chunk_keys(bucket(s3_bucket), "two")) == 4

        async def read(c):
            return await c.read_file("same"), await c.read_file("only")
        assert servers[0].call(read) == (same, only[0])
    finally:
        for srv in servers:
            srv.stop()
