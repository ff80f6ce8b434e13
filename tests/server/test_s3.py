"""`ninep serve` and the CLI on a store whose chunks live in S3, against a real SeaweedFS.

The server runs as a subprocess (the real `ninep serve`), the project's 9P
client and diod's diodcat/diodls talk to it, and obstore looks into the
bucket directly to count and corrupt objects.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess

import blake3
import pytest
import trio

from ninep_server.client import NinepError
from ninep_server import protocol as p

from ..servers import free_port, require, start_seaweedfs
from .s3util import Serve, bucket_store, chunk_objects, metric, ninep, objects, wait_until_readable

CHUNK = 64 << 10  # small chunks so that small files span several


def _init(store, location: str, *extra) -> str:
    r = ninep("init", store, "--chunks", location, "--chunk-size", "64K", *extra)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _write(srv: Serve, files: dict[str, bytes]) -> None:
    async def go(c):
        for name, data in files.items():
            await c.write_file(name, data, fsync=True)

    srv.call(go)


def _read(srv: Serve, name: str) -> bytes:
    async def go(c):
        return await c.read_file(name)

    return srv.call(go)


def _errno_of_read(srv: Serve, name: str) -> int | None:
    """The errno a whole-file read fails with, or None if it succeeds."""
    async def go(c):
        try:
            await c.read_file(name)
        except NinepError as exc:
            return exc.errno
        return None

    return srv.call(go)


def _drop_local_cache(store) -> None:
    """Empty the store's local chunk cache (the server is stopped): reads must go to the bucket."""
    shutil.rmtree(store / "chunk-cache", ignore_errors=True)


def test_s3_store_serves_the_clients_and_uploads_each_chunk_once(s3_bucket, tmp_path):
    store = tmp_path / "store"
    location = f"s3://{s3_bucket}/one"
    out = _init(store, location)
    assert f"created store {store} with dataset main" in out
    assert f"chunks: {location}, cached locally in {store}/chunk-cache" in out
    assert "chunk size: 64.0 KiB" in out and f"serve it with: ninep serve --store {store}" in out
    assert not (store / "chunks").exists() or not any((store / "chunks").iterdir())

    files = {"small": b"hello s3\n", "exact": os.urandom(CHUNK), "multi": os.urandom(3 * CHUNK + 1234)}
    srv = Serve(store, tmp_path / "serve.log").start()
    try:
        _write(srv, files)
        for name, data in files.items():
            assert _read(srv, name) == data
        env = dict(os.environ)
        chunks = chunk_objects(env, s3_bucket, "one")
        assert len(chunks) == 1 + 1 + 4, sorted(objects(env, s3_bucket, "one"))
        assert blake3.blake3(files["multi"][:CHUNK]).hexdigest() in chunks
        assert all(k.startswith("one/") for k in chunks.values())
        # the same content again: no new object, no new upload
        before = metric(srv.metrics(), "ninep_chunk_uploads_total")
        _write(srv, {"copy": files["multi"]})
        assert chunk_objects(env, s3_bucket, "one") == chunks
        text = srv.metrics()
        assert metric(text, "ninep_chunk_uploads_total") == before == 6
        assert metric(text, "ninep_chunk_backend_errors_total") == 0
        assert 0 <= metric(text, "ninep_chunk_cache_hit_ratio") <= 1
        assert f'location="{location}"' in text
        status = ninep("status", "--store", store)
        assert status.returncode == 0 and f"chunks: {location}" in status.stdout, status.stderr
        assert "uploads 6 (" in status.stdout and "failed requests 0" in status.stdout
        # diod's clients read the same bytes
        diodcat = shutil.which("diodcat") or "/usr/sbin/diodcat"
        diodls = shutil.which("diodls") or "/usr/sbin/diodls"
        require(os.path.exists(diodcat) and os.path.exists(diodls), "diod's clients are not installed")
        host = srv.tcp[4:]
        got = subprocess.run([diodcat, "-s", host, "-a", "main", "multi"], capture_output=True, timeout=60)
        assert got.returncode == 0 and got.stdout == files["multi"]
        listing = subprocess.run([diodls, "-s", host, "-a", "main"], capture_output=True, timeout=60)
        assert set(listing.stdout.split()) == {b".snapshots", b"small", b"exact", b"multi", b"copy"}
    finally:
        assert srv.stop() == 0, srv.log_text()[-3000:]

    stats = ninep("stats", "--store", store)
    assert stats.returncode == 0, stats.stderr
    assert f"chunks: {location}" in stats.stdout and "local cache" in stats.stdout

    # Everything reads back from the bucket alone: downloads, then the local cache
    _drop_local_cache(store)
    srv = Serve(store, tmp_path / "serve.log").start()
    try:
        assert _read(srv, "multi") == files["multi"] and _read(srv, "copy") == files["multi"]
        text = srv.metrics()
        downloads = metric(text, "ninep_chunk_downloads_total")
        assert downloads >= 4 and metric(text, "ninep_chunk_cache_misses_total") >= 4
        assert _read(srv, "multi") == files["multi"]
        assert metric(srv.metrics(), "ninep_chunk_downloads_total") == downloads  # served locally now
    finally:
        assert srv.stop() == 0


def test_bucket_going_away_and_coming_back(tmp_path):
    """Tfsync fails with EIO while the bucket is down, uncached reads too; when it
    returns the next Tfsync succeeds without restarting ninep and nothing
    acknowledged is lost."""
    weed = start_seaweedfs(tmp_path / "weed")
    env = {**os.environ, **weed.env()}
    store = tmp_path / "store"
    location = "s3://outage/st"
    srv = None

    def bucket_returns() -> None:
        weed.start()  # same ports: the same endpoint
        wait_until_readable(env, "outage", "st")

    try:
        assert ninep("init", store, "--chunks", location, "--chunk-size", "64K", env=env).returncode == 0
        a = os.urandom(3 * CHUNK)
        srv = Serve(store, tmp_path / "serve.log", env=env).start()
        _write(srv, {"a": a})
        assert srv.stop() == 0
        _drop_local_cache(store)
        srv = Serve(store, tmp_path / "serve.log", env=env).start()
        weed.kill()

        assert _errno_of_read(srv, "a") == errno.EIO  # its chunks are in the bucket only
        # Less than a chunk: buffered by the server, so Twrite is acknowledged. (A write
        # that fills a chunk stores it at once, and fails with EIO itself during an outage.)
        b = os.urandom(1000)

        async def outage(c):
            f = await c.create("b", p.OpenFlags.RDWR)
            try:
                await c.write_all(f.fid, b)
                with trio.fail_after(300):
                    with pytest.raises(NinepError) as failed:
                        await c.fsync(f.fid)
                assert failed.value.errno == errno.EIO
                await trio.to_thread.run_sync(bucket_returns)
                with trio.fail_after(300):
                    await c.fsync(f.fid)  # the bucket is back: this one succeeds
            finally:
                await c.clunk(f.fid)

        srv.call(outage)
        # A write that fills chunks while the bucket is down: EIO at Twrite or at Tfsync,
        # never a silent success; what was acknowledged reads back once it returns.
        weed.kill()
        big = os.urandom(2 * CHUNK + 17)

        async def big_write(c):
            f = await c.create("big", p.OpenFlags.RDWR)
            try:
                try:
                    await c.write_all(f.fid, big)
                except NinepError as exc:
                    assert exc.errno == errno.EIO
                    acknowledged = False
                else:
                    acknowledged = True
                    with trio.fail_after(300):
                        with pytest.raises(NinepError) as failed:
                            await c.fsync(f.fid)
                    assert failed.value.errno == errno.EIO
                await trio.to_thread.run_sync(bucket_returns)
                if acknowledged:
                    with trio.fail_after(300):
                        await c.fsync(f.fid)
                return acknowledged
            finally:
                await c.clunk(f.fid)

        if srv.call(big_write):
            assert _read(srv, "big") == big
        log = srv.log_text()
        assert "chunk upload failed: object storage unreachable" in log, log[-3000:]
        assert "chunk download failed: object storage unreachable" in log
        assert _read(srv, "b") == b and _read(srv, "a") == a
        text = srv.metrics()
        assert metric(text, "ninep_chunk_backend_errors_total") > 0
        # what was acknowledged is in the bucket: a killed server and an empty cache lose nothing
        srv.kill()
        _drop_local_cache(store)
        srv = Serve(store, tmp_path / "serve.log", env=env).start()
        assert _read(srv, "a") == a and _read(srv, "b") == b
        assert srv.stop() == 0
        srv = None
    finally:
        if srv is not None:
            srv.kill()
        weed.stop()


def test_corrupted_object_reads_as_eio_and_scrub_names_it(s3_bucket, tmp_path):
    store = tmp_path / "store"
    _init(store, f"s3://{s3_bucket}/c")
    victim, other = os.urandom(2 * CHUNK + 5), os.urandom(1000)
    srv = Serve(store, tmp_path / "serve.log").start()
    try:
        _write(srv, {"victim": victim, "other": other})
    finally:
        assert srv.stop() == 0
    import obstore

    env = dict(os.environ)
    bad = blake3.blake3(victim[CHUNK:2 * CHUNK]).hexdigest()
    key = chunk_objects(env, s3_bucket, "c")[bad]
    obstore.put(bucket_store(env, s3_bucket), key, os.urandom(CHUNK))  # same size, other bytes
    _drop_local_cache(store)

    srv = Serve(store, tmp_path / "serve.log").start()
    try:
        assert _errno_of_read(srv, "victim") == errno.EIO
        assert _read(srv, "other") == other  # one bad chunk spoils nothing else

        async def first_chunk(c):
            f = await c.open("victim")
            try:
                return await c.read(f.fid, 0, CHUNK)
            finally:
                await c.clunk(f.fid)

        assert srv.call(first_chunk) == victim[:CHUNK]
    finally:
        assert srv.stop() == 0
    assert bad in srv.log_text()

    r = ninep("scrub", "--store", store)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"DAMAGED chunk {bad}" in r.stdout and "main:/victim" in r.stdout


def test_init_and_serve_refuse_a_mismatch_with_a_clear_error(s3_bucket, tmp_path):
    store = tmp_path / "store"
    location = f"s3://{s3_bucket}/m"
    _init(store, location)

    again = ninep("init", store, "--chunks", location)
    assert again.returncode == 1 and again.stdout == ""
    assert "File exists" in again.stderr and "already a ninep store" in again.stderr
    assert f"ninep serve --store {store}" in again.stderr

    other = f"s3://{s3_bucket}/elsewhere"
    r = ninep("serve", "--store", store, "--chunks", other, "--listen", "tcp:127.0.0.1:0")
    assert r.returncode == 1 and location in r.stderr and other in r.stderr, r.stderr

    local = tmp_path / "local"
    r = ninep("init", local)
    assert r.returncode == 0 and f"chunks: local:{local}/chunks" in r.stdout, r.stdout + r.stderr
    r = ninep("serve", "--store", local, "--chunks", location, "--listen", "tcp:127.0.0.1:0")
    assert r.returncode == 1 and location in r.stderr and "local" in r.stderr, r.stderr

    assert ninep("init", tmp_path / "x", "--chunks", "http://bucket").returncode == 2
    r = ninep("init", tmp_path / "x", "--chunk-size", "32M")
    assert r.returncode == 2 and "16M" in r.stderr


def test_unreachable_endpoint_and_bad_credentials_say_what_to_check(s3_bucket, tmp_path):
    canary = "SECRET-canary-0f3a9c"
    env = dict(os.environ, AWS_SECRET_ACCESS_KEY=canary)
    r = ninep("init", tmp_path / "bad-key", "--chunks", f"s3://{s3_bucket}/k", env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "credential" in r.stderr.lower() or "AWS_SECRET_ACCESS_KEY" in r.stderr, r.stderr
    assert canary not in r.stdout + r.stderr

    env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    r = ninep("init", tmp_path / "no-endpoint", "--chunks", f"s3://{s3_bucket}/k", env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "AWS_ENDPOINT_URL" in r.stderr or "endpoint" in r.stderr.lower(), r.stderr
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in r.stdout + r.stderr


def _config_file(path, env: dict, bucket: str, secret: str | None = None) -> str:
    path.write_text(
        "[server]\n"
        f'chunks = "s3://{bucket}/cfg"\n'
        "[s3]\n"
        f'endpoint = "{env["AWS_ENDPOINT_URL"]}"\n'
        f'region = "{env["AWS_REGION"]}"\n'
        f'access_key_id = "{env["AWS_ACCESS_KEY_ID"]}"\n'
        f'secret_access_key = "{secret or env["AWS_SECRET_ACCESS_KEY"]}"\n'
        "allow_http = true\n"
        'cache_size = "8M"\n')
    os.chmod(path, 0o600)
    return str(path)


def test_credentials_from_the_configuration_file(s3_bucket, tmp_path, monkeypatch):
    env = dict(os.environ)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ALLOW_HTTP"):
        monkeypatch.delenv(name)
    config = _config_file(tmp_path / "ninep.toml", env, s3_bucket)
    store = tmp_path / "store"
    r = ninep("init", store, "--config", config, "--chunk-size", "64K")
    assert r.returncode == 0, r.stderr
    assert f"chunks: s3://{s3_bucket}/cfg" in r.stdout and "at most 8.0 MiB" in r.stdout
    assert f"serve it with: ninep serve --store {store} --config {config}" in r.stdout
    srv = Serve(store, tmp_path / "serve.log", "--config", config).start()
    try:
        data = os.urandom(2 * CHUNK)
        _write(srv, {"f": data})
        assert _read(srv, "f") == data
    finally:
        assert srv.stop() == 0
    assert len(chunk_objects(env, s3_bucket, "cfg")) == 2
    r = ninep("stats", "--store", store, "--config", config)
    assert r.returncode == 0 and f"chunks: s3://{s3_bucket}/cfg" in r.stdout, r.stderr
    assert "of 8.0 MiB" in r.stdout
    r = ninep("fsck", "--store", store, "--config", config)
    assert r.returncode == 0, r.stdout + r.stderr

    # the standard variables take precedence over the file, as for the AWS CLI
    wrong = dict(os.environ, AWS_SECRET_ACCESS_KEY="wrong-secret-from-env")
    r = ninep("stats", "--store", store, "--config", config, env=wrong)
    assert r.returncode == 1 and "wrong-secret-from-env" not in r.stdout + r.stderr, r.stdout + r.stderr
    # and a file secret that is wrong is not shown either
    bad = _config_file(tmp_path / "bad.toml", env, s3_bucket, secret="file-secret-canary-77")
    r = ninep("stats", "--store", store, "--config", bad)
    assert r.returncode == 1 and "file-secret-canary-77" not in r.stdout + r.stderr


def test_secrets_never_appear_in_any_output(s3_bucket, tmp_path):
    """`ninep serve` at debug level, admin commands, and failing commands: the
    secret key is nowhere in their output or logs."""
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    store = tmp_path / "store"
    outputs = []
    r = ninep("--log-level", "debug", "init", store, "--chunks", f"s3://{s3_bucket}/sec")
    assert r.returncode == 0
    outputs += [r.stdout, r.stderr]
    srv = Serve(store, tmp_path / "serve.log", log_level="debug").start()
    try:
        _write(srv, {"f": os.urandom(CHUNK + 1)})
        outputs.append(srv.metrics())
    finally:
        assert srv.stop() == 0
    outputs += [srv.stdout, srv.log_text()]
    for args in (("stats", "--json"), ("fsck",), ("scrub",), ("gc",)):
        r = ninep("--log-level", "debug", *args, "--store", store)
        assert r.returncode == 0, (args, r.stderr)
        outputs += [r.stdout, r.stderr]
    failing = ninep("--log-level", "debug", "serve", "--store", store, "--chunks", f"s3://{s3_bucket}/other")
    assert failing.returncode == 1
    outputs += [failing.stdout, failing.stderr]
    assert "serving" in srv.log_text()  # the log was captured
    for text in outputs:
        assert secret not in text


# -- the README's commands ---------------------------------------------------------

def test_readme_object_storage_commands(s3_bucket, tmp_path):
    """The README's `ci: s3-init` block, run line by line (its bucket renamed to a
    fresh one, serve on a free port), and its `ci: s3-config` file, parsed."""
    import shlex
    import signal
    import sys
    import tomllib

    from ninep_server.config import parse_config

    from ..readme_blocks import blocks
    from .s3util import ROOT, child_env

    found = blocks((ROOT / "README.md").read_text())
    ran = []
    for line in found["s3-init"].splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "export":
            # the values are placeholders: the s3_bucket fixture set the real ones
            names = {w.split("=", 1)[0] for w in words[1:]}
            assert names <= {"AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_REGION", "AWS_ACCESS_KEY_ID",
                             "AWS_SECRET_ACCESS_KEY"}
            ran += sorted(names)
            continue
        assert words[0] == "ninep", line
        args = [w.replace("my-bucket", s3_bucket) for w in words[1:]]
        ran.append(args[0])
        if args[0] == "serve":
            proc = subprocess.Popen([sys.executable, "-m", "ninep_server", *args, "--listen", "tcp:127.0.0.1:0"],
                                    cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                    env=child_env())
            try:
                first = proc.stdout.readline()
                assert first.startswith("listening tcp:"), first
                srv = Serve(tmp_path / "ninep-data", tmp_path / "unused.log")
                srv.tcp = first.split(None, 1)[1].strip()
                _write(srv, {"hello": b"on object storage\n"})
                assert _read(srv, "hello") == b"on object storage\n"
            finally:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(60) == 0
            continue
        r = subprocess.run([sys.executable, "-m", "ninep_server", *args], cwd=tmp_path, capture_output=True,
                           text=True, timeout=180, env=child_env())
        assert r.returncode == 0, (line, r.stderr)
        if args[0] == "init":
            assert f"chunks: s3://{s3_bucket}/ninep" in r.stdout
        if args[0] == "stats":
            assert f"chunks: s3://{s3_bucket}/ninep" in r.stdout and "local cache" in r.stdout
    assert ran == ["AWS_ALLOW_HTTP", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                   "init", "serve", "stats"]
    assert len(chunk_objects(dict(os.environ), s3_bucket, "ninep")) == 1

    config = parse_config(tomllib.loads(found["s3-config"]), source="README")
    assert config.chunks == "s3://my-bucket/ninep" and config.s3.cache_size == 1 << 30
    assert config.s3.allow_http is True and config.s3.endpoint == "http://127.0.0.1:8333"


def test_admin_commands_open_an_s3_store_directly(s3_bucket, tmp_path):
    """import, snapshot, dataset, export, gc, fsck, scrub and stats on a stopped S3 store."""
    store = tmp_path / "store"
    _init(store, f"s3://{s3_bucket}/adm")
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "big").write_bytes(os.urandom(3 * CHUNK + 9))
    (src / "small").write_bytes(b"small\n")
    (src / "twin").write_bytes((src / "d" / "big").read_bytes())

    def ok(*args) -> str:
        r = ninep(*args, "--store", store)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r.stdout

    ok("import", src, "main")
    ok("snapshot", "create", "main@one")
    ok("dataset", "create", "other")
    assert "other" in ok("dataset", "list")
    (src / "small").unlink()
    ok("snapshot", "rollback", "main@one")
    out = tmp_path / "out"
    ok("export", "main@one", out)
    for rel in ("d/big", "small", "twin"):
        assert (out / rel).read_bytes() == ((src / rel).read_bytes() if rel != "small" else b"small\n")
    assert len(chunk_objects(dict(os.environ), s3_bucket, "adm")) == 4 + 1  # the twin is stored once
    assert "no damage" in ok("scrub")
    ok("fsck")
    ok("gc")
    assert f"chunks: s3://{s3_bucket}/adm" in ok("stats")
