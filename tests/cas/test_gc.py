"""gc: mark and sweep, dry run, the in-flight protocol, snapshots, concurrent writers."""

import hashlib
import os
import random
import threading
import time

import pytest

from cas import Store
from cas import gc as gcmod
from cas.fsck import fsck

from .conftest import Env


@pytest.fixture(params=["local", "s3"])
def env(request, tmp_path):
    """A store with local chunks, or with chunks in a SeaweedFS bucket (same chunk size)."""
    if request.param == "local":
        e = Env(tmp_path / "store")
    else:
        bucket = request.getfixturevalue("s3_bucket")
        e = Env(tmp_path / "store", chunk_size=128 * 1024, chunks=f"s3://{bucket}/gc",
                s3=request.getfixturevalue("s3_settings"), pool_grace=0)
    yield e
    e.close()


def _write(vol, name: bytes, data: bytes) -> int:
    ino = vol.create(vol.root, name, 0o644, 0, 0).ino
    vol.write(ino, 0, data)
    return ino


def _chunk_dir_bytes(store) -> int:
    return store.chunks.usage()[1]


def test_gc_frees_orphans_keeps_referenced(env):
    vol, store = env.vol, env.store
    _write(vol, b"keep", os.urandom(300_000))
    store.commit()
    orphan = os.urandom(5000)
    h = store.chunks.put(orphan)  # like a chunk of a commit lost in a crash
    before = store.chunks.usage()[0]
    dry = gcmod.collect(store, dry_run=True)
    assert dry.chunks_freed == 1 and dry.bytes_freed == 5000 and store.chunks.has(h)
    report = gcmod.collect(store)
    assert report.chunks_freed == 1 and report.bytes_freed == 5000
    assert report.sample == [h] and not store.chunks.has(h)
    assert store.chunks.usage()[0] == before - 1
    assert vol.read(vol.lookup(vol.root, b"keep").ino, 0, 10) is not None
    assert fsck(store).clean
    assert store.gc() == 0


def test_gc_spares_pinned_dedup_hit(env):
    """An unreferenced chunk a writer just found by dedup (pinned) is never deleted."""
    store = env.store
    data = os.urandom(4096)
    h = store.chunks.put(data)               # garbage: no catalog row
    assert store.chunks.put(data, pin=True) == h  # a writer's dedup hit registers the pin
    report = gcmod.collect(store)
    assert report.chunks_freed == 0 and report.skipped_in_flight == 1 and store.chunks.has(h)
    store.chunks.unpin(h)
    assert gcmod.collect(store).chunks_freed == 1


def test_gc_rechecks_catalog_under_commit_lock(env, monkeypatch):
    """A commit that lands between mark and sweep is seen by the re-check."""
    vol, store = env.vol, env.store
    _write(vol, b"f", os.urandom(200_000))
    store.commit()
    monkeypatch.setattr(gcmod, "referenced_hashes", lambda catalog: set())  # a stale mark
    report = gcmod.collect(store)
    assert report.candidates == 2 and report.chunks_freed == 0 and report.skipped_in_flight == 2
    assert fsck(store).clean


def test_gc_progress_phases(env):
    _write(env.vol, b"f", os.urandom(1000))
    env.store.chunks.put(os.urandom(1000))
    seen = []
    gcmod.collect(env.store, progress=lambda phase, n, total: seen.append((phase, total)))
    assert ("list", 256) in seen and ("sweep", 1) in seen


def test_gc_with_snapshot(tmp_path):
    with Store.open(str(tmp_path / "s"), create=True) as store:
        store.create_dataset("main")
        vol = store.volume("main")
        _write(vol, b"base", os.urandom(100_000))
        store.commit()
        base = _chunk_dir_bytes(store)
        for i in range(20):
            _write(vol, b"f%d" % i, os.urandom(150_000 + i))
        store.commit()
        full = _chunk_dir_bytes(store)
        assert full > base + 20 * 150_000
        store.create_snapshot("main", "s1")
        for i in range(20):
            vol.unlink(vol.root, b"f%d" % i)
        store.commit()
        report = gcmod.collect(store)
        assert report.chunks_freed == 0 and report.bytes_freed == 0
        assert _chunk_dir_bytes(store) == full
        assert fsck(store).clean
        store.delete_snapshot("main", "s1")
        gcmod.collect(store)
        after = _chunk_dir_bytes(store)
        assert abs(after - base) <= base * 0.01, (base, after)
        assert fsck(store).clean


@pytest.mark.slow
def test_gc_concurrent_writer(tmp_path):
    """gc in a loop against one Store while a writer creates, dedups, deletes and fsyncs."""
    _gc_stress(str(tmp_path / "s"), float(os.environ.get("NINEP_GC_STRESS_SECONDS", "60")), {})


def test_gc_concurrent_writer_on_s3(tmp_path, s3_bucket, s3_settings):
    """The same on a store whose chunks are in a bucket: the pins hold for object deletion too."""
    _gc_stress(str(tmp_path / "s"), float(os.environ.get("NINEP_GC_STRESS_S3_SECONDS", "12")),
               {"chunks": f"s3://{s3_bucket}/stress", "s3": s3_settings, "pool_grace": 0})


def _gc_stress(path: str, duration: float, options: dict) -> None:
    store = Store.open(path, create=True, chunk_size=16 * 1024, **options)
    store.create_dataset("main")
    vol = store.volume("main")
    stop = threading.Event()
    errors: list[BaseException] = []
    durable: dict[bytes, str] = {}     # name -> sha256 of content, once fsynced
    gc_runs = [0]
    freed = [0]

    def commit_loop():  # what the server's trio task does
        while not stop.is_set():
            try:
                store.commit()
            except BaseException as exc:  # pragma: no cover
                errors.append(exc)
                return
            time.sleep(0.05)

    def gc_loop():
        while not stop.is_set():
            try:
                r = gcmod.collect(store, commit=False, batch=64)
            except BaseException as exc:  # pragma: no cover
                errors.append(exc)
                return
            gc_runs[0] += 1
            freed[0] += r.chunks_freed

    def writer():
        rng = random.Random(1)
        pool = [os.urandom(rng.choice((3000, 16 * 1024, 40_000))) for _ in range(40)]
        live: list[bytes] = []
        n = 0
        try:
            while not stop.is_set():
                batch = []
                planted = []
                if rng.random() < 0.5:
                    # plant garbage that gc will list as a candidate, then write the
                    # same content: a dedup hit on a chunk gc is about to sweep
                    for _ in range(rng.randrange(1, 6)):
                        data = os.urandom(rng.choice((5000, 16 * 1024, 33_000)))
                        cs = store.chunk_size
                        for off in range(0, len(data), cs):
                            store.chunks.put(data[off:off + cs])
                        planted.append(data)
                    time.sleep(rng.random() * 0.02)
                for data in planted + [rng.choice(pool), os.urandom(rng.randrange(1, 50_000))]:
                    n += 1
                    name = b"f%d" % n
                    ino = vol.create(vol.root, name, 0o644, 0, 0).ino
                    vol.write(ino, 0, data)
                    batch.append((name, ino, data))
                time.sleep(rng.random() * 0.02)  # uncommitted references while gc sweeps
                for name, ino, data in batch:
                    vol.fsync(ino)
                    durable[name] = hashlib.sha256(data).hexdigest()
                    live.append(name)
                while len(live) > 50 and rng.random() < 0.7:
                    victim = live.pop(rng.randrange(len(live)))
                    vol.unlink(vol.root, victim)
                    del durable[victim]
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=f, daemon=True) for f in (commit_loop, gc_loop, writer)]
    for t in threads:
        t.start()
    time.sleep(duration)
    stop.set()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert gc_runs[0] > 10 and freed[0] > 0 and len(durable) > 50

    def verify():
        for name, digest in durable.items():
            attr = vol.lookup(vol.root, name)
            assert hashlib.sha256(vol.read(attr.ino, 0, attr.size)).hexdigest() == digest, name

    verify()
    report = fsck(store)
    assert report.clean, report.findings
    store.close()
    store = Store.open(path, **options)
    vol = store.volume("main")
    verify()
    assert fsck(store).clean
    store.close()
