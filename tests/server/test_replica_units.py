"""The pieces of a read-only replica that need no bucket: moving a namespace's views to a newer
working copy (Namespace.replace_store), waiting for the I/O running on the old one
(IoRunner.drain), the read-only configuration, and a replica store refusing gc and shipping."""

from __future__ import annotations

import errno
import shutil
import threading

import pytest
import trio

from cas import FsError, Store
from ninep_server.config import ExportConfig, ServerConfig
from ninep_server.context import IoRunner
from ninep_server.namespace import Namespace
from ninep_server.replica import ReplicaConfig, default_workdir, replica_config
from ninep_server.staletree import StaleTree


def _file(vol, name: bytes, data: bytes) -> None:
    ino = vol.create(vol.root, name, 0o100644, 0, 0).ino
    vol.write(ino, 0, data)


def test_replace_store_moves_every_view_and_stales_what_is_gone(tmp_path):
    with Store.open(str(tmp_path / "a"), create=True) as a:
        a.create_dataset("main")
        _file(a.volume("main"), b"f", b"first")
        a.create_snapshot("main", "s1")
        a.create_snapshot("main", "s2")
    shutil.copytree(tmp_path / "a", tmp_path / "b")     # b: the same store, later
    with Store.open(str(tmp_path / "b")) as b:
        _file(b.volume("main"), b"g", b"later")
        b.delete_snapshot("main", "s2")
        b.create_snapshot("main", "s3")
    a = Store.open(str(tmp_path / "a"))
    b = Store.open(str(tmp_path / "b"))
    try:
        ns = Namespace(a, ServerConfig(), trio.Lock())
        live = ns.attach("main", None)
        snapdir, _ = ns.cross(live, live.volume.root, b".snapshots")
        s1, _ = ns.cross(snapdir, snapdir.volume.root, b"s1")
        s2, _ = ns.cross(snapdir, snapdir.volume.root, b"s2")
        with pytest.raises(FsError):
            live.volume.lookup(live.volume.root, b"g")
        ns.replace_store(b)
        a.close()                                        # nothing served reads the old store
        assert ns.store is b
        assert live.volume is b.volume("main")
        g = live.volume.lookup(live.volume.root, b"g").ino
        assert live.volume.read(g, 0, 10) == b"later"
        assert [e.name for e in snapdir.volume.readdir(snapdir.volume.root)] == [b"s1", b"s3"]
        f = s1.volume.lookup(s1.volume.root, b"f").ino
        assert s1.volume.read(f, 0, 10) == b"first"
        assert isinstance(s2.volume, StaleTree)
        for call in (lambda: s2.volume.getattr(s2.volume.root), lambda: s2.volume.read(2, 0, 1),
                     lambda: s2.volume.readdir(s2.volume.root)):
            with pytest.raises(FsError) as exc:
                call()
            assert exc.value.errno == errno.ESTALE
        s2.volume.release(2)                             # a clunk of a stale fid is fine
        with pytest.raises(FsError) as exc:
            s2.volume.create(s2.volume.root, b"x", 0o644, 0, 0)
        assert exc.value.errno == errno.EROFS
        s3, _ = ns.cross(snapdir, snapdir.volume.root, b"s3")   # new snapshots are reachable
        assert s3.volume.lookup(s3.volume.root, b"g")
    finally:
        a.close()
        b.close()


async def test_drain_waits_for_calls_started_before_it_only():
    run = IoRunner()
    first, second = threading.Event(), threading.Event()
    drained = trio.Event()

    async def drain():
        await run.drain()
        drained.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, first.wait)
        await trio.sleep(0.05)
        nursery.start_soon(drain)
        await trio.sleep(0.05)
        nursery.start_soon(run, second.wait)              # started after the drain: not waited for
        await trio.sleep(0.1)
        assert not drained.is_set()
        first.set()
        with trio.fail_after(5):
            await drained.wait()
        second.set()
    with trio.fail_after(1):
        await run.drain()                                 # nothing running: returns at once


def test_replica_config_makes_every_export_read_only():
    base = ServerConfig(exports={"main": ExportConfig(name="main", squash="root")}, gc_interval=60,
                        admin_listen="tcp:127.0.0.1:0", admin_token="t" * 20)
    config = replica_config(base)
    assert isinstance(config, ReplicaConfig)
    listed, unlisted = config.export("main"), config.export("other")
    assert listed.read_only and listed.squash == "root" and listed.schedules == ()
    assert unlisted.read_only
    assert config.gc_interval == 0 and config.admin_socket == "" and config.admin_listen is None
    assert replica_config(ServerConfig(export_unlisted=False)).export("other") is None


def test_default_workdir_is_per_source_under_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    one = default_workdir("s3://b/p/catalogs/1")
    assert one.startswith(str(tmp_path / "ninep" / "replicas"))
    assert one == default_workdir("s3://b/p/catalogs/1") != default_workdir("s3://b/p/catalogs/2")


def test_a_replica_store_is_never_collected_nor_shipped(tmp_path):
    from cas.catalogcopy import ship
    from cas.gc import collect

    with Store.open(str(tmp_path / "s"), create=True) as s:
        s.create_dataset("main")
    with Store.open(str(tmp_path / "s"), replica=True) as s:
        assert s.replica and s.pool is None
        for call in (lambda: collect(s), lambda: ship(s)):
            with pytest.raises(FsError) as exc:
                call()
            assert exc.value.errno == errno.EROFS
