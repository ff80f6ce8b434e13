"""A store whose chunks are in a SeaweedFS bucket: dedup, open checks, gc, fsck, scrub, stats,
import and export."""

import errno
import os
import stat

import obstore
import pytest

from cas import CorruptChunkError, FsError, Store, StoreFormatError
from cas.fsck import fsck
from cas.gc import collect
from cas.scrub import scrub
from cas.stats import collect_stats
from cas.transfer import export_tree, import_tree

from .s3help import bucket, chunk_keys

MiB = 1 << 20


def _write(vol, name: bytes, data: bytes) -> int:
    f = vol.create(vol.root, name, 0o644, 0, 0)
    vol.write(f.ino, 0, data)
    vol.fsync(f.ino)
    return f.ino


def test_a_file_written_twice_is_uploaded_once(s3_env, s3_bucket):
    store, vol = s3_env.store, s3_env.vol
    assert store.chunk_size == MiB                  # the S3 default
    data = os.urandom(3 * MiB + 1000)
    _write(vol, b"one", data)
    _write(vol, b"two", data)
    keys = chunk_keys(bucket(s3_bucket), "store")
    assert len(keys) == 4                           # 3 whole chunks and a tail, once
    st = store.chunks.stats()
    assert st.uploads == 4 and st.dedup_skips == 4 and st.upload_bytes == len(data)


def test_reads_after_reopen_with_an_empty_cache(s3_env):
    data = os.urandom(2 * MiB + 5)
    ino = _write(s3_env.vol, b"f", data)
    s3_env.store.chunks.drop_cache()
    assert s3_env.vol.read(ino, 0, len(data)) == data
    vol = s3_env.reopen()
    assert vol.read(ino, MiB - 3, 10) == data[MiB - 3:MiB + 7]
    assert vol.read(ino, 0, len(data)) == data
    st = s3_env.store.chunks.stats()
    assert st.cache_hits >= 1                       # the cache survived the reopen
    cache = os.path.join(s3_env.path, "chunk-cache")
    assert not os.path.exists(os.path.join(s3_env.path, "chunks"))
    for d, dirs, files in os.walk(cache):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
        for n in files:
            assert stat.S_IMODE(os.stat(os.path.join(d, n)).st_mode) == 0o600


def test_store_records_its_chunk_location(s3_env, s3_bucket, s3_settings, tmp_path):
    s3_env.close()
    with open(os.path.join(s3_env.path, "FORMAT")) as f:
        assert f.read() == "ninep-store 2\n"
    url = f"s3://{s3_bucket}/store"
    for wrong in ("local", f"s3://{s3_bucket}/elsewhere"):
        with pytest.raises(StoreFormatError) as ei:
            Store.open(s3_env.path, chunks=wrong, s3=s3_settings)
        assert url in str(ei.value) and wrong in str(ei.value)
    with Store.open(s3_env.path, s3=s3_settings) as s:   # no chunks option: what it records
        assert s.chunks.location == url
    local = str(tmp_path / "local")
    Store.open(local, create=True).close()
    with pytest.raises(StoreFormatError) as ei:
        Store.open(local, chunks=url, s3=s3_settings)
    assert "local" in str(ei.value) and url in str(ei.value)
    with open(os.path.join(local, "FORMAT")) as f:
        assert f.read() == "ninep-store 1\n"           # local stores are unchanged
    s3_env.store = Store.open(s3_env.path, chunks=url + "/", s3=s3_settings)


def test_creating_on_an_unreachable_endpoint_leaves_no_store(s3_bucket, s3_settings, tmp_path):
    gone = s3_settings.model_copy(update={"endpoint": "http://127.0.0.1:9"})
    path = str(tmp_path / "s")
    with pytest.raises(FsError) as ei:
        Store.open(path, create=True, chunks=f"s3://{s3_bucket}/x", s3=gone)
    assert ei.value.errno == errno.EIO and "http://127.0.0.1:9" in str(ei.value)
    assert sorted(os.listdir(path)) == ["lock"]
    with Store.open(path, create=True, chunks=f"s3://{s3_bucket}/x", s3=s3_settings) as s:
        assert s.chunks.location == f"s3://{s3_bucket}/x"


def test_gc_deletes_objects(s3_env, s3_bucket):
    store, vol = s3_env.store, s3_env.vol
    _write(vol, b"keep", os.urandom(MiB + 10))
    _write(vol, b"drop", os.urandom(2 * MiB))
    orphan = store.chunks.put(b"a chunk no catalog row names")   # what a crash leaves
    assert len(chunk_keys(bucket(s3_bucket), "store")) == 5
    vol.unlink(vol.root, b"drop")
    store.commit()                 # another store of the pool may use them: only gc deletes
    assert len(chunk_keys(bucket(s3_bucket), "store")) == 5
    report = collect(store)
    assert report.chunks_freed == 3 and orphan in report.sample
    assert len(chunk_keys(bucket(s3_bucket), "store")) == 2
    assert store.check() == []


def test_fsck_and_repair(s3_env, s3_bucket):
    store, vol = s3_env.store, s3_env.vol
    ino = _write(vol, b"f", os.urandom(MiB + 3))
    report = fsck(store)
    assert report.clean and report.chunks == 2 and report.orphan_chunks == 0
    store.chunks.put(os.urandom(777))
    report = fsck(store)
    assert report.clean and report.orphan_chunks == 1 and report.orphan_bytes == 777
    report = fsck(store, repair=True)
    assert report.orphans_freed == 1 and fsck(store).orphan_chunks == 0
    h = vol.cache.file(ino).extents[0][0]
    obstore.delete(bucket(s3_bucket), f"store/{h[:2]}/{h}")
    report = fsck(store)
    assert [f.kind for f in report.damage] == ["missing-chunk"]
    assert h in report.damage[0].message and "/f" in report.damage[0].message


def test_corrupt_object_reads_as_eio_and_scrub_reports_it(s3_env, s3_bucket):
    store, vol = s3_env.store, s3_env.vol
    data = os.urandom(2 * MiB)
    ino = _write(vol, b"victim", data)
    _write(vol, b"fine", os.urandom(1000))
    h = vol.cache.file(ino).extents[1][0]
    obstore.put(bucket(s3_bucket), f"store/{h[:2]}/{h}", b"rotten" * 100)   # overwrite, no mode
    store.chunks.drop_cache()
    assert vol.read(ino, 0, 100) == data[:100]       # the other chunk is fine
    with pytest.raises(CorruptChunkError) as ei:
        vol.read(ino, MiB, 100)
    assert ei.value.errno == errno.EIO
    report = scrub(store)
    assert report.chunks == 3
    assert [(d.hash, d.problem) for d in report.damaged] == [(h, "content does not match its hash")]
    assert [u.path for u in report.damaged[0].users] == ["/victim"]
    assert store.scrub() == [h]


def test_stats_and_space(s3_env):
    store, vol = s3_env.store, s3_env.vol
    data = os.urandom(MiB)
    _write(vol, b"a", data)
    _write(vol, b"b", data)
    st = collect_stats(store)
    assert st.files == 2 and st.logical_bytes == 2 * MiB
    assert st.unique_bytes == MiB and st.chunks == 1 and st.dedup_ratio == 2.0
    assert store.chunks.usage() == (1, MiB)


def test_import_and_export(s3_env, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    (src / "d").mkdir(parents=True)
    files = {"big": os.urandom(3 * MiB + 17), "d/small": b"hello\n", "same": None}
    files["same"] = files["big"]
    for name, data in files.items():
        (src / name).write_bytes(data)
    r = import_tree(s3_env.store, str(src), "imported")
    assert r.files == 3
    st = s3_env.store.chunks.stats()
    assert st.uploads == 5                           # "same" deduplicated against "big"
    s3_env.store.chunks.drop_cache()
    e = export_tree(s3_env.store, "imported", str(out))
    assert e.warnings == []
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    assert fsck(s3_env.store).clean


def test_fsck_repair_makes_the_chunk_cache_owner_only(s3_env):
    _write(s3_env.vol, b"f", os.urandom(1000))
    cache = os.path.join(s3_env.path, "chunk-cache")
    name = next(n for d, _, files in os.walk(cache) for n in files)
    path = os.path.join(cache, name[:2], name)
    os.chmod(path, 0o644)
    os.chmod(os.path.join(cache, name[:2]), 0o755)
    report = fsck(s3_env.store)
    assert report.loose_modes == 2
    report = fsck(s3_env.store, repair=True)
    assert report.modes_fixed == 2
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert fsck(s3_env.store).loose_modes == 0
