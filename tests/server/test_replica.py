"""A read-only replica (`ninep serve --replica`) of an S3 store, against a real SeaweedFS: a
primary `ninep serve` ships catalog copies, a replica process on the same bucket serves its
snapshots to the project's 9P client while the primary keeps writing, snapshotting and running
gc, picks up new copies, refuses every write with EROFS, and keeps the chunks it reads alive in
the pool until it is stopped and forgotten."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import blake3
import pytest
import trio

from ninep_server.client import NinepError, connect

from .s3util import Serve, chunk_objects, child_env, ninep, objects

CHUNK = 64 << 10


class ReplicaProc:
    """`ninep serve --replica` as a real process on a free TCP port."""

    def __init__(self, tmp_path: Path, source: str, *extra: str):
        self.log = tmp_path / "replica.log"
        self.workdir = tmp_path / "replica"
        args = [sys.executable, "-m", "ninep_server", "--log-format", "json", "serve", "--replica", source,
                "--store", str(self.workdir), "--listen", "tcp:127.0.0.1:0", *extra]
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                         text=True, env=child_env())
        line = self.proc.stdout.readline()
        if not line.startswith("listening tcp:"):
            raise RuntimeError(f"replica exited ({self.proc.wait()}):\n{self.log_text()[-3000:]}")
        self.tcp = line.split(None, 1)[1].strip()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def replica_id(self) -> str:
        return (self.workdir / "replica-id").read_text().strip()

    def call(self, fn):
        async def main():
            async with connect(self.tcp, uname=b"0", n_uname=0) as c:
                return await fn(c)
        return trio.run(main)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def _wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def _manifests(bucket: str, prefix: str) -> list[str]:
    return sorted(k for k in objects(dict(os.environ), bucket, f"{prefix}/catalogs/")
                  if k.endswith("/manifest.json"))


def _writer(files: dict[str, bytes]):
    async def go(c):
        for name, data in files.items():
            if "/" in name:
                await c.makedirs(name.rsplit("/", 1)[0])
            await c.write_file(name, data, fsync=True)
    return go


def _reader(names):
    async def go(c):
        return {name: await c.read_file(name) for name in names}
    return go


def _listing(path: str):
    async def go(c):
        return sorted(e.name.decode() for e in await c.listdir(path) if e.name not in (b".", b".."))
    return go


def _primary(tmp_path: Path, bucket: str, prefix: str, config: str) -> tuple[Path, Serve]:
    store = tmp_path / "primary"
    r = ninep("init", store, "--chunks", f"s3://{bucket}/{prefix}", "--chunk-size", "64K")
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "primary.toml"
    cfg.write_text(config)
    return store, Serve(store, tmp_path / "primary.log", "--config", str(cfg)).start()


def _shipped_and_stopped(tmp_path: Path, bucket: str, prefix: str, files: dict[str, bytes]) -> Path:
    """A primary that wrote ``files``, took snapshot ``one``, shipped its copy and stopped."""
    store, primary = _primary(tmp_path, bucket, prefix, "[server]\ncatalog_copy_interval = 0\n")
    try:
        primary.call(_writer(files))
        assert ninep("snapshot", "create", "main@one", "--store", store).returncode == 0
        _wait_for(lambda: _manifests(bucket, prefix), what="a catalog copy")
    finally:
        assert primary.stop() == 0
    return store


def test_replica_serves_snapshots_while_the_primary_writes_snapshots_and_collects(s3_bucket, tmp_path):
    store, primary = _primary(tmp_path, s3_bucket, "rep", "[server]\ncatalog_copy_interval = 0\n"
                              "catalog_copy_keep = 2\n[s3]\npool_refresh = 1\npool_grace = 0\n")
    replica = None
    try:
        one = {"big": os.urandom(5 * CHUNK + 17), "small": b"first\n", "dir/nested": os.urandom(CHUNK)}
        primary.call(_writer(one))
        assert ninep("snapshot", "create", "main@one", "--store", store).returncode == 0
        _wait_for(lambda: _manifests(s3_bucket, "rep"), what="the first catalog copy")
        rcfg = tmp_path / "replica.toml"
        rcfg.write_text("[s3]\npool_refresh = 1\n")
        replica = ReplicaProc(tmp_path, f"s3://{s3_bucket}/rep", "--replica-poll", "0.5", "--config", str(rcfg))

        snap_one = {f".snapshots/one/{k}": v for k, v in one.items()}
        assert replica.call(_reader(snap_one)) == snap_one
        assert replica.call(_reader(one)) == one                        # the live tree as of the copy

        # the primary keeps writing, snapshotting and collecting while the replica is read
        stop, failures = threading.Event(), []

        def churn():
            try:
                for i in range(4):
                    primary.call(_writer({"big": os.urandom(5 * CHUNK + i), f"f{i}": os.urandom(CHUNK)}))
                    r = ninep("snapshot", "create", f"main@churn{i}", "--store", store)
                    assert r.returncode == 0, r.stderr
                    if i >= 1:
                        r = ninep("snapshot", "delete", f"main@churn{i - 1}", "--store", store)
                        assert r.returncode == 0, r.stderr
                    r = ninep("gc", "--store", store, "--grace", "0")
                    assert r.returncode == 0, (r.stdout, r.stderr)
                    if stop.is_set():
                        return
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                failures.append(exc)

        t = threading.Thread(target=churn)
        t.start()
        reads = 0
        try:
            while t.is_alive():
                assert replica.call(_reader(snap_one)) == snap_one       # byte-identical throughout
                reads += 1
        finally:
            stop.set()
            t.join()
        assert not failures, failures
        assert reads >= 1
        assert replica.call(_reader(snap_one)) == snap_one

        # a refresh under open fids: the primary deletes churn3 and takes snapshot two; the
        # replica moves to the new copy without dropping the connection: two appears, a fid on
        # snapshot one (still there) reads on, a fid on churn3 (gone) gets ESTALE
        two = {"new": os.urandom(2 * CHUNK + 3)}
        primary.call(_writer(two))
        _wait_for(lambda: "churn3" in replica.call(_listing(".snapshots")), what="churn3 on the replica")

        def primary_moves_on():
            assert ninep("snapshot", "delete", "main@churn3", "--store", store).returncode == 0
            assert ninep("snapshot", "create", "main@two", "--store", store).returncode == 0

        async def across_refresh(c):
            held = await c.open(".snapshots/one/big")
            gone = await c.open(".snapshots/churn3/f3")
            assert await c.read(held.fid, 0, 10) == one["big"][:10]
            await trio.to_thread.run_sync(primary_moves_on)
            with trio.fail_after(60):
                while "two" not in await _listing(".snapshots")(c):
                    await trio.sleep(0.2)
            assert "churn3" not in await _listing(".snapshots")(c)
            held_data = await c.read_all(held.fid)
            try:
                await c.read(gone.fid, 0, 10)
                gone_errno = None
            except NinepError as exc:
                gone_errno = exc.errno
            return await c.read_file(".snapshots/two/new"), held_data, gone_errno

        new, held_data, gone_errno = replica.call(across_refresh)
        assert new == two["new"] and held_data == one["big"] and gone_errno == errno.ESTALE
        assert "replica refreshed" in replica.log_text()
        assert replica.call(_reader(snap_one)) == snap_one
        # the old working copy is removed once no request uses it
        _wait_for(lambda: len(os.listdir(replica.workdir / "copies")) == 1, what="one working copy")

        # the replica is a pool member with role replica; it ships nothing and keeps its set fresh
        members = json.loads(ninep("pool", "list", f"s3://{s3_bucket}/rep", "--json").stdout)
        mine = [m for m in members if m["id"] == replica.replica_id()]
        assert len(mine) == 1 and mine[0]["role"] == "replica" and mine[0]["chunks"] > 0
        stores = {k.split("/")[2] for k in objects(dict(os.environ), s3_bucket, "rep/catalogs/")}
        assert replica.replica_id() not in stores and len(stores) == 1
    finally:
        if replica is not None:
            assert replica.stop() == 0
        assert primary.stop() == 0


def test_writes_to_the_replica_fail_with_erofs(s3_bucket, tmp_path):
    _shipped_and_stopped(tmp_path, s3_bucket, "ro", {"f": b"data\n"})
    before = objects(dict(os.environ), s3_bucket, "ro/")
    replica = ReplicaProc(tmp_path, f"s3://{s3_bucket}/ro")
    try:
        async def attempts(c):
            async def chmod(path):
                async with c.fid(path) as fid:
                    await c.setattr(fid, mode=0o600)
            out = {}
            for name, op in {
                "create at the root": lambda: c.write_file("new", b"x"),
                "overwrite a live file": lambda: c.write_file("f", b"x"),
                "create in a snapshot": lambda: c.write_file(".snapshots/one/new", b"x"),
                "mkdir": lambda: c.makedirs("d"),
                "snapshot by mkdir": lambda: c.makedirs(".snapshots/two"),
                "remove": lambda: c.unlink("f"),
                "chmod": lambda: chmod("f"),
            }.items():
                try:
                    await op()
                    out[name] = None
                except NinepError as exc:
                    out[name] = exc.errno
            return out

        got = replica.call(attempts)
        assert got == dict.fromkeys(got, errno.EROFS), got

        async def statfs(c):
            async with c.fid("") as fid:
                return await c.statfs(fid)
        assert replica.call(statfs) is not None
        assert replica.call(_reader(["f", ".snapshots/one/f"])) == {"f": b"data\n", ".snapshots/one/f": b"data\n"}
    finally:
        assert replica.stop() == 0
    after = objects(dict(os.environ), s3_bucket, "ro/")
    rid = replica.replica_id()
    written = {k for k in set(after) - set(before)} | {k for k in before if k in after and after[k] != before[k]}
    assert written and all(k == f"ro/pool/stores/{rid}.json" or k.startswith(f"ro/pool/refs/{rid}/")
                           for k in written), written
    assert set(before) - set(after) <= {k for k in before if k.startswith(f"ro/pool/refs/{rid}/")}


def test_primary_gc_keeps_what_the_replica_serves_until_it_is_forgotten(s3_bucket, tmp_path):
    """The primary deletes a snapshot the replica serves and ships a newer copy (keeping one):
    its gc still keeps the snapshot's chunks (the replica's set names them) and the replica reads
    them; with the replica stopped its set goes stale and gc refuses; `ninep pool forget` lets gc
    free them."""
    store, primary = _primary(tmp_path, s3_bucket, "gcr", "[server]\ncatalog_copy_interval = 0\n"
                              "catalog_copy_keep = 1\n[s3]\npool_refresh = 1\npool_grace = 0\n")
    doomed = os.urandom(CHUNK - 100)
    doomed_hash = blake3.blake3(doomed).hexdigest()
    replica = None
    try:
        primary.call(_writer({"doomed": doomed}))
        assert ninep("snapshot", "create", "main@keep", "--store", store).returncode == 0
        first = _wait_for(lambda: _manifests(s3_bucket, "gcr"), what="a catalog copy")
        rcfg = tmp_path / "replica.toml"
        rcfg.write_text("[s3]\npool_refresh = 1\n")
        replica = ReplicaProc(tmp_path, f"s3://{s3_bucket}/gcr", "--replica-poll", "3600", "--config", str(rcfg))

        async def remove(c):
            await c.unlink("doomed")
        primary.call(remove)
        assert ninep("snapshot", "delete", "main@keep", "--store", store).returncode == 0
        assert ninep("snapshot", "create", "main@later", "--store", store).returncode == 0
        _wait_for(lambda: (m := _manifests(s3_bucket, "gcr")) and m != first, what="a newer copy")
        _wait_for(lambda: len(_manifests(s3_bucket, "gcr")) == 1, what="the older copy pruned")

        r = ninep("gc", "--store", store, "--grace", "0", "--json")
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert json.loads(r.stdout)["kept_by_pool"] >= 1
        assert doomed_hash in chunk_objects(dict(os.environ), s3_bucket, "gcr/")
        assert replica.call(_reader([".snapshots/keep/doomed"])) == {".snapshots/keep/doomed": doomed}

        rid = replica.replica_id()
        assert replica.stop() == 0
        replica = None
        time.sleep(3.5)                                      # 3 x pool_refresh: its set is stale
        r = ninep("gc", "--store", store, "--grace", "0")
        assert r.returncode != 0 and rid in (r.stdout + r.stderr), (r.stdout, r.stderr)
        assert doomed_hash in chunk_objects(dict(os.environ), s3_bucket, "gcr/")
        r = ninep("pool", "forget", f"s3://{s3_bucket}/gcr", rid)
        assert r.returncode == 0, r.stderr
        r = ninep("gc", "--store", store, "--grace", "0")
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert doomed_hash not in chunk_objects(dict(os.environ), s3_bucket, "gcr/")
    finally:
        if replica is not None:
            replica.stop()
        assert primary.stop() == 0


def test_replica_without_copies_says_so(s3_bucket, tmp_path):
    r = ninep("init", tmp_path / "p", "--chunks", f"s3://{s3_bucket}/none")
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "ninep_server", "serve", "--replica", f"s3://{s3_bucket}/none",
                        "--store", str(tmp_path / "w"), "--listen", "tcp:127.0.0.1:0"],
                       capture_output=True, text=True, env=child_env(), timeout=120)
    assert r.returncode == 1 and "no catalog copies" in r.stderr, r.stderr


@pytest.mark.parametrize("args", [["--store-id", "x"], ["--replica-poll", "5"]])
def test_replica_options_need_replica(tmp_path, args):
    r = ninep("serve", "--store", tmp_path / "s", *args)
    assert r.returncode == 1 and "go with --replica" in r.stderr


def test_readme_replica_commands(s3_bucket, tmp_path):
    """The README's `ci: replica` block, line by line, beside a primary that shipped a copy (its
    bucket renamed to a fresh one, serve on a free port with a working directory under tmp)."""
    import shlex

    from ..readme_blocks import blocks
    from .s3util import ROOT

    _shipped_and_stopped(tmp_path, s3_bucket, "ninep", {"kept": b"in the copy\n"})
    replica, rid, ran = None, None, []
    try:
        for line in blocks((ROOT / "README.md").read_text())["replica"].splitlines():
            words = shlex.split(line, comments=True)
            if not words:
                continue
            args = [w.replace("my-bucket", s3_bucket) for w in words]
            assert args[0] == "ninep", line
            ran.append(" ".join(args[1:3]))
            if args[1] == "serve":
                i = args.index("--listen")
                del args[i:i + 2]
                replica = ReplicaProc(tmp_path, *args[3:4], *args[4:])
                rid = replica.replica_id()
                assert replica.call(_reader(["kept", ".snapshots/one/kept"])) == {
                    "kept": b"in the copy\n", ".snapshots/one/kept": b"in the copy\n"}
                continue
            if args[1:3] == ["pool", "forget"]:
                assert replica.stop() == 0
                replica = None
                args[-1] = rid
            r = ninep(*args[1:])
            assert r.returncode == 0, (line, r.stdout, r.stderr)
            if args[1:3] == ["pool", "list"]:
                assert f"{rid}" in r.stdout and "(replica)" in r.stdout, r.stdout
    finally:
        if replica is not None:
            replica.stop()
    assert ran == ["serve --replica", "pool list", "pool forget"]
    members = json.loads(ninep("pool", "list", f"s3://{s3_bucket}/ninep", "--json").stdout)
    assert rid not in {m["id"] for m in members} and len(members) == 1
