"""Shared chunk pools on a real SeaweedFS: two stores on one prefix, dedup across them,
gc that frees only what no member references, stale members, forgetting, restarts,
and the migration of a layout-1 prefix."""

import errno
import json
import os
import random
import socket
import threading
import time
import traceback

import duckdb
import obstore
import pytest

from cas import FsError, Store, StoreFormatError
from cas import gc as gcmod
from cas.pool import Pool, PoolStaleError, decode_refs, encode_refs

from .s3help import bucket, chunk_keys, object_keys

MiB = 1 << 20


def _open(path, url, s3, **kw):
    store = Store.open(str(path), create=True, chunks=url, s3=s3, **kw)
    store.create_dataset("main")
    return store


def _write(store, name: bytes, data: bytes, dataset: str = "main") -> int:
    vol = store.volume(dataset)
    f = vol.create(vol.root, name, 0o644, 0, 0)
    vol.write(f.ino, 0, data)
    vol.fsync(f.ino)
    return f.ino


def _read(store, name: bytes, dataset: str = "main") -> bytes:
    vol = store.volume(dataset)
    ino = vol.lookup(vol.root, name).ino
    return vol.read(ino, 0, 64 * MiB)


@pytest.fixture
def pool(tmp_path, s3_bucket, s3_settings):
    """Two stores, a and b, on the prefix ``pool`` (grace 0, refresh 1 s)."""
    url = f"s3://{s3_bucket}/pool"
    kw = {"pool_grace": 0, "pool_refresh": 1.0}
    a = _open(tmp_path / "a", url, s3_settings, **kw)
    b = _open(tmp_path / "b", url, s3_settings, **kw)
    yield a, b
    for s in (a, b):
        s.close()


def test_published_set_format_round_trips_and_detects_damage():
    hashes = {os.urandom(32).hex() for _ in range(1000)}
    data = encode_refs(hashes)
    assert data[:8] == b"NINEPREF" and decode_refs(data) == hashes
    assert len(data) < 1000 * 32 + 100
    assert decode_refs(encode_refs([])) == set()
    bad = bytearray(data)
    bad[20] ^= 1
    with pytest.raises(StoreFormatError, match="damaged"):
        decode_refs(bytes(bad))


def test_two_stores_register_and_store_shared_content_once(pool, s3_bucket):
    a, b = pool
    assert a.pool.store_id != b.pool.store_id
    members = {m.id: m for m in a.pool.members()}
    assert set(members) == {a.pool.store_id, b.pool.store_id}
    assert members[b.pool.store_id].host == socket.gethostname()
    assert members[b.pool.store_id].path == os.path.realpath(b.path)
    same = os.urandom(2 * MiB + 100)
    _write(a, b"same", same)
    _write(b, b"same", same)
    _write(a, b"only-a", os.urandom(MiB))
    _write(b, b"only-b", os.urandom(MiB))
    # same: 3 chunks, stored once; only-a and only-b: one chunk each
    assert len(chunk_keys(bucket(s3_bucket), "pool")) == 5
    assert _read(b, b"same") == same and _read(a, b"same") == same
    record = json.loads(obstore.get(bucket(s3_bucket),
                                    f"pool/pool/stores/{a.pool.store_id}.json").bytes().to_bytes())
    assert record["format"] == 2 and record["role"] == "store"
    assert record["refs"].startswith(f"pool/refs/{a.pool.store_id}/")


def test_gc_frees_only_chunks_no_member_references(pool, s3_bucket):
    a, b = pool
    same = os.urandom(MiB)
    _write(a, b"same", same)
    _write(b, b"same", same)
    _write(b, b"only-b", os.urandom(MiB))
    b.create_dataset("other")
    _write(b, b"other", os.urandom(MiB), dataset="other")
    assert len(chunk_keys(bucket(s3_bucket), "pool")) == 3
    b.delete_dataset("main")
    assert len(chunk_keys(bucket(s3_bucket), "pool")) == 3   # no eager deletion in a pool
    a.pool.publish()
    kept = gcmod.collect(b, grace=3600)                       # all of them are young
    assert kept.chunks_freed == 0 and kept.kept_young == 1 and kept.kept_by_pool == 1
    report = gcmod.collect(b)                                 # the pool's grace: 0 s
    assert report.chunks_freed == 1 and report.kept_by_pool == 1
    assert len(chunk_keys(bucket(s3_bucket), "pool")) == 2
    assert _read(a, b"same") == same
    assert a.check() == [] and b.check() == []
    a.delete_dataset("main")
    assert gcmod.collect(a).chunks_freed == 1                 # now no one names it
    assert len(chunk_keys(bucket(s3_bucket), "pool")) == 1    # b's "other"


def test_stale_member_blocks_gc_until_forced_or_forgotten(tmp_path, s3_bucket, s3_settings):
    url = f"s3://{s3_bucket}/pool"
    a = _open(tmp_path / "a", url, s3_settings, pool_grace=0, pool_refresh=0.3)
    b = _open(tmp_path / "b", url, s3_settings, pool_grace=0, pool_refresh=0.3)
    try:
        kept = os.urandom(MiB)
        _write(a, b"kept", kept)
        a_id = a.pool.store_id
        a.close()                                      # a's host dies: it publishes no more
        b.chunks.put(b"garbage")                       # what a crash leaves
        time.sleep(1.2)                                # > 3 x 0.3 s
        with pytest.raises(PoolStaleError) as ei:
            gcmod.collect(b)
        msg = str(ei.value)
        assert a_id in msg and socket.gethostname() in msg and "s ago" in msg
        assert len(chunk_keys(bucket(s3_bucket), "pool")) == 2
        forced = gcmod.collect(b, force=True)          # a's last set still counts
        assert forced.chunks_freed == 1 and forced.kept_by_pool == 1
        assert b.pool.forget(a_id) and a_id not in {m.id for m in b.pool.members()}
        assert not [k for k in object_keys(bucket(s3_bucket), "pool/pool") if a_id in k]
        assert gcmod.collect(b).chunks_freed == 1      # a's chunk: no member names it
        assert chunk_keys(bucket(s3_bucket), "pool") == []
    finally:
        b.close()


def test_published_set_survives_a_restart(pool, s3_bucket, s3_settings):
    a, b = pool
    data = os.urandom(2 * MiB)
    _write(a, b"f", data)
    a_id, before = a.pool.store_id, a.pool.member(a.pool.store_id).sequence
    a.close()
    assert gcmod.collect(b).kept_by_pool == 2          # a is down; its set still protects
    assert len(chunk_keys(bucket(s3_bucket), "pool")) == 2
    a2 = Store.open(a.path, s3=s3_settings, pool_grace=0, pool_refresh=1.0)
    try:
        assert a2.pool.store_id == a_id
        m = a2.pool.member(a_id)
        assert m.sequence > before and m.count == 2
        assert len([k for k in object_keys(bucket(s3_bucket), f"pool/pool/refs/{a_id}")]) == 1
        a2.chunks.drop_cache()
        assert _read(a2, b"f") == data
    finally:
        a2.close()


def test_layout_1_prefix_becomes_a_pool_of_one(tmp_path, s3_bucket, s3_settings):
    url = f"s3://{s3_bucket}/old"
    a = _open(tmp_path / "a", url, s3_settings, pool_grace=0)
    data = os.urandom(MiB)
    _write(a, b"f", data)
    a.close()
    # make it what a store made before pools left: marker 1, no pool objects, no store id
    bk = bucket(s3_bucket)
    obstore.put(bk, "old/ninep-chunks", b"ninep-chunks 1\n")
    for k in object_keys(bk, "old/pool"):
        obstore.delete(bk, k)
    db = duckdb.connect(os.path.join(a.path, "catalog.duckdb"))
    db.execute("DELETE FROM meta WHERE key = 'store_id'")
    db.close()
    with pytest.raises(StoreFormatError, match="before chunk pools"):
        Store.open(str(tmp_path / "b"), create=True, chunks=url, s3=s3_settings)
    a = Store.open(a.path, s3=s3_settings, pool_grace=0)
    try:
        assert bytes(obstore.get(bk, "old/ninep-chunks").bytes()) == b"ninep-chunks 2\n"
        assert [m.id for m in a.pool.members()] == [a.pool.store_id]
        assert a.catalog.meta["store_id"] == a.pool.store_id
        assert _read(a, b"f") == data
        b = _open(tmp_path / "b", url, s3_settings, pool_grace=0)   # now it can join
        try:
            assert len(a.pool.members()) == 2
            assert gcmod.collect(b).chunks_freed == 0
            assert _read(a, b"f") == data
        finally:
            b.close()
    finally:
        a.close()


def test_two_stores_write_concurrently_while_gc_runs(tmp_path, s3_bucket, s3_settings):
    """Writers on both stores (shared and private content, overwrites), both publishing
    every 0.3 s and running gc in loops with a 3 s grace: every acknowledged file reads back."""
    url = f"s3://{s3_bucket}/busy"
    kw = {"pool_grace": 3.0, "pool_refresh": 0.3, "chunk_size": 16 * 1024}
    stores = [_open(tmp_path / n, url, s3_settings, **kw) for n in ("a", "b")]
    shared = [os.urandom(random.Random(i).choice((3000, 16 * 1024, 40_000))) for i in range(12)]
    stop = threading.Event()
    errors: list[BaseException] = []
    durable: list[dict[bytes, bytes]] = [{}, {}]
    stats = {"gc": 0, "refused": 0, "freed": 0}

    def loop(fn):
        def run():
            while not stop.is_set():
                try:
                    fn()
                except BaseException as exc:  # pragma: no cover
                    errors.append(exc)
                    return
        return run

    def refresher(store):
        def once():
            store.pool.publish()
            time.sleep(0.3)
        return once

    def collector(store):
        def once():
            try:
                r = gcmod.collect(store, batch=64)
            except PoolStaleError:
                stats["refused"] += 1  # a loaded machine published late: refusing is right
                return
            stats["gc"] += 1
            stats["freed"] += r.chunks_freed
        return once

    def writer(i):
        rng = random.Random(i)
        store = stores[i]

        def run():
            n = 0
            while not stop.is_set():
                try:
                    vol = store.volume("main")
                    name = b"f%d" % rng.randrange(8)
                    data = rng.choice(shared) if rng.random() < 0.5 else os.urandom(20_000)
                    try:
                        ino = vol.lookup(vol.root, name).ino
                        vol.setattr(ino, size=0)
                    except FsError as exc:
                        if exc.errno != errno.ENOENT:
                            raise
                        ino = vol.create(vol.root, name, 0o644, 0, 0).ino
                    vol.write(ino, 0, data)
                    vol.fsync(ino)
                    durable[i][name] = data
                    n += 1
                except BaseException as exc:  # pragma: no cover
                    errors.append(exc)
                    return
        return run

    threads = [threading.Thread(target=writer(i)) for i in (0, 1)]
    for s in stores:
        threads.append(threading.Thread(target=loop(refresher(s))))
        threads.append(threading.Thread(target=loop(collector(s))))
    for t in threads:
        t.start()
    time.sleep(float(os.environ.get("NINEP_POOL_STRESS_SECONDS", "8")))
    stop.set()
    for t in threads:
        t.join()
    try:
        for e in errors:
            traceback.print_exception(e)   # where it failed, in the captured output
        assert errors == []
        assert stats["gc"] >= 2 and stats["freed"] > 0, stats
        for i, store in enumerate(stores):
            store.chunks.drop_cache()
            for name, data in durable[i].items():
                assert _read(store, name) == data
            assert store.check() == []
    finally:
        for s in stores:
            s.close()


def test_a_dedup_hit_on_an_old_object_refreshes_its_time(pool, s3_bucket):
    """What lets other members' gc see a chunk found by dedup as in use: its time moves on."""
    a, _ = pool
    data = os.urandom(5000)
    h = a.chunks.put(data)
    key = f"pool/{h[:2]}/{h}"

    def modified() -> float:
        return obstore.head(bucket(s3_bucket), key)["last_modified"].timestamp()

    first = modified()
    time.sleep(1.1)                                # the store's clock counts whole seconds
    a.chunks.touch_age = 3600.0
    a.chunks.put(data)
    assert modified() == first                     # young: a dedup hit sends nothing
    a.chunks.touch_age = 0.5
    a.chunks.put(data)
    assert modified() > first                      # old: uploaded again, same bytes
    assert a.chunks.get(h) == data
    assert a.chunks.stats().uploads == 1           # counted as a dedup hit, not an upload


def test_a_members_catalog_copies_keep_their_chunks_from_every_members_gc(pool, s3_bucket):
    """A chunk that only a's catalog copy still names (the file was deleted after the
    copy) is in a's published set: b's gc keeps it, and a's own gc too."""
    from cas import catalogcopy

    a, b = pool
    data = os.urandom(MiB)
    _write(a, b"doomed", data)
    catalogcopy.ship(a)
    vol = a.volume("main")
    vol.unlink(vol.root, b"doomed")
    a.commit()
    published = a.pool.publish()                        # what a's server would publish
    assert published.count == 1                         # the catalog names nothing now
    report = gcmod.collect(b)
    assert report.chunks_freed == 0 and report.kept_by_pool == 1
    assert gcmod.collect(a).chunks_freed == 0
    assert len(chunk_keys(bucket(s3_bucket), "pool")) == 1


@pytest.mark.parametrize("grace", [float("nan"), float("inf"), -1.0])
def test_gc_refuses_a_grace_that_is_not_a_finite_number_of_seconds(pool, grace):
    a, _ = pool
    with pytest.raises(FsError) as ei:
        gcmod.collect(a, grace=grace)
    assert ei.value.errno == errno.EINVAL
