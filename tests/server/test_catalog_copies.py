"""Disaster recovery of an S3 store against a real SeaweedFS: the running server ships catalog
copies after snapshots (without the snapshot waiting), `ninep restore` rebuilds the store
directory after it is deleted, and the restored store serves everything committed before the
last copy."""

from __future__ import annotations

import os
import shutil
import threading
import time

import trio

from cas import Store

from .s3util import Serve, ninep, objects

CHUNK = 64 << 10


def _manifests(bucket: str, prefix: str) -> list[str]:
    return sorted(k for k in objects(dict(os.environ), bucket, f"{prefix}/catalogs/")
                  if k.endswith("/manifest.json"))


def _wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return value


def test_delete_the_store_directory_and_restore_it_from_the_bucket(s3_bucket, tmp_path):
    store = tmp_path / "store"
    r = ninep("init", store, "--chunks", f"s3://{s3_bucket}/dr", "--chunk-size", "64K")
    assert r.returncode == 0, r.stderr
    config = tmp_path / "ninep.toml"
    config.write_text("[server]\ncatalog_copy_interval = 0\ncatalog_copy_keep = 3\n")
    first = {"a": os.urandom(3 * CHUNK + 5), "b": b"small\n"}
    second = {"c": os.urandom(CHUNK), "b": b"changed\n"}
    srv = Serve(store, tmp_path / "serve.log", "--config", str(config)).start()
    try:
        srv.call(_writer(first))
        assert ninep("snapshot", "create", "main@one", "--store", store).returncode == 0
        one = _wait_for(lambda: _manifests(s3_bucket, "dr"))          # shipped shortly after
        srv.call(_writer(second))
        assert ninep("snapshot", "create", "main@two", "--store", store).returncode == 0
        _wait_for(lambda: len(_manifests(s3_bucket, "dr")) > len(one))
        srv.call(_writer({"after": b"committed after the last copy"}))
        r = ninep("catalog", "ship", "--store", store)                   # not beside a running server
        assert r.returncode == 1 and "ships a catalog copy after every snapshot" in r.stderr
    finally:
        assert srv.stop() == 0
    assert "catalog copy shipped" in srv.log_text()

    shutil.rmtree(store)                                                 # the host's disk is gone
    r = ninep("restore", f"s3://{s3_bucket}/dr", store)
    assert r.returncode == 0, r.stderr
    assert f"restored store {store} from s3://{s3_bucket}/dr/catalogs/" in r.stdout
    assert f"serve it with: ninep serve --store {store}" in r.stdout
    r = ninep("fsck", "--store", store)
    assert r.returncode == 0, (r.stdout, r.stderr)

    srv = Serve(store, tmp_path / "serve2.log").start()
    try:
        want = {**first, **second}
        assert srv.call(_reader(list(want))) == want
        assert srv.call(_reader(["after"], missing_ok=True)) == {}          # after the last copy: lost
        snap = srv.call(_reader([".snapshots/one/a", ".snapshots/one/b"]))
        assert snap == {".snapshots/one/a": first["a"], ".snapshots/one/b": first["b"]}
        assert srv.call(_reader([".snapshots/two/c"])) == {".snapshots/two/c": second["c"]}
    finally:
        assert srv.stop() == 0


def _writer(files: dict[str, bytes]):
    async def go(c):
        for name, data in files.items():
            await c.write_file(name, data, fsync=True)
    return go


def _reader(names: list[str], missing_ok: bool = False):
    from ninep_server.client import NinepError

    async def go(c):
        out = {}
        for name in names:
            try:
                out[name] = await c.read_file(name)
            except NinepError:
                if not missing_ok:
                    raise
        return out
    return go


def test_snapshot_creation_does_not_wait_for_the_copy(s3_bucket, tmp_path, monkeypatch):
    """The shipper is woken by the snapshot and ships in a worker thread: with the copy held back,
    the snapshot still returns at once; the copy lands once released."""
    import cas.catalogcopy
    from ninep_server.catalogship import CatalogShipper

    release, started = threading.Event(), threading.Event()
    real_ship = cas.catalogcopy.ship

    def held_ship(*args, **kwargs):
        started.set()
        assert release.wait(30)
        return real_ship(*args, **kwargs)

    monkeypatch.setattr(cas.catalogcopy, "ship", held_ship)
    with Store.open(str(tmp_path / "s"), create=True, chunks=f"s3://{s3_bucket}/held") as store:
        store.create_dataset("main")
        shipper = CatalogShipper(store, None, interval=0, keep=2)

        async def main():
            async with trio.open_nursery() as nursery:
                await nursery.start(shipper.run)
                with trio.fail_after(10):
                    await trio.to_thread.run_sync(store.create_snapshot, "main", "one")
                assert await trio.to_thread.run_sync(started.wait, 10)   # the ship began...
                assert shipper.shipped == 0 and not _manifests(s3_bucket, "held")  # ...and waits
                release.set()
                with trio.fail_after(30):
                    while shipper.shipped == 0:
                        await trio.sleep(0.05)
                nursery.cancel_scope.cancel()

        trio.run(main)
        assert len(_manifests(s3_bucket, "held")) == 1
        assert store.snapshot_hooks == []                                # unhooked when stopped


def test_a_failed_copy_is_logged_and_never_fails_the_snapshot(s3_bucket, tmp_path, monkeypatch):
    import cas.catalogcopy
    from ninep_server.catalogship import CatalogShipper

    calls = []

    def failing_ship(*args, **kwargs):
        calls.append(1)
        raise OSError(5, "bucket unreachable")

    monkeypatch.setattr(cas.catalogcopy, "ship", failing_ship)
    with Store.open(str(tmp_path / "s"), create=True, chunks=f"s3://{s3_bucket}/fail") as store:
        store.create_dataset("main")
        shipper = CatalogShipper(store, None, interval=0.3, keep=2)

        async def main():
            async with trio.open_nursery() as nursery:
                await nursery.start(shipper.run)
                await trio.to_thread.run_sync(store.create_snapshot, "main", "one")
                with trio.fail_after(10):
                    while shipper.failures < 2:                          # retried at the interval
                        await trio.sleep(0.05)
                nursery.cancel_scope.cancel()

        trio.run(main)
        assert [s.name for s in store.snapshots("main")] == ["one"]


def test_readme_disaster_recovery_commands(s3_bucket, tmp_path):
    """The README's `ci: disaster-recovery` block, run line by line in a directory holding an S3
    store with a snapshot (its bucket renamed to a fresh one, serve on a free port)."""
    import shlex

    from ..readme_blocks import blocks
    from .s3util import ROOT

    store = tmp_path / "ninep-data"
    assert ninep("init", store, "--chunks", f"s3://{s3_bucket}/ninep").returncode == 0
    srv = Serve(store, tmp_path / "before.log").start()
    try:
        srv.call(_writer({"kept": b"before the copy\n"}))
        assert ninep("snapshot", "create", "main@one", "--store", store).returncode == 0
    finally:
        assert srv.stop() == 0
    ran = []
    for line in blocks((ROOT / "README.md").read_text())["disaster-recovery"].splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        args = [w.replace("my-bucket", s3_bucket).replace("./ninep-data", str(store)) for w in words]
        ran.append(" ".join(words[:2]))
        if args[:2] == ["rm", "-rf"]:
            shutil.rmtree(args[2])
        elif args[:2] == ["ninep", "serve"]:
            srv = Serve(store, tmp_path / "after.log", *args[4:]).start()
            try:
                assert srv.call(_reader(["kept", ".snapshots/one/kept"])) == {
                    "kept": b"before the copy\n", ".snapshots/one/kept": b"before the copy\n"}
            finally:
                assert srv.stop() == 0
        else:
            assert args[0] == "ninep", line
            r = ninep(*args[1:])
            assert r.returncode == 0, (line, r.stdout, r.stderr)
            if args[1:3] == ["catalog", "list"]:
                assert len(r.stdout.splitlines()) == 3    # the URL, the copy after the snapshot, this one
    assert ran == ["ninep catalog", "ninep catalog", "rm -rf", "ninep restore", "ninep fsck", "ninep serve"]


def test_a_copy_requested_just_before_shutdown_is_still_shipped(s3_bucket, tmp_path):
    from ninep_server.catalogship import CatalogShipper

    with Store.open(str(tmp_path / "s"), create=True, chunks=f"s3://{s3_bucket}/last") as store:
        store.create_dataset("main")
        shipper = CatalogShipper(store, None, interval=0, keep=2)

        async def main():
            async with trio.open_nursery() as nursery:
                await nursery.start(shipper.run)
                store.create_snapshot("main", "one")   # in the trio thread: wakes, then the stop
                await trio.lowlevel.checkpoint()
                nursery.cancel_scope.cancel()

        trio.run(main)
        assert shipper.shipped == 1
        assert len(_manifests(s3_bucket, "last")) == 1
