"""S3Chunks against a real SeaweedFS: put-if-absent, verified reads, cache, listing, deletion."""

import errno
import os
import threading

import obstore
import pytest
import structlog

from pydantic import SecretStr

from cas import ChunkBackend, ChunkStore, CorruptChunkError, FsError, StoreFormatError
from cas.chunkbase import chunk_hash
from cas.s3chunks import S3Chunks

from .s3help import bucket, chunk_keys, object_keys


@pytest.fixture
def s3c(tmp_path, s3_bucket, s3_settings):
    c = S3Chunks(f"s3://{s3_bucket}/pre/fix", s3_settings, str(tmp_path / "cache"), 1 << 20,
                 chunk_size=64 << 10, create=True, io_threads=4)
    yield c
    c.close()


def test_both_backends_implement_the_protocol(tmp_path, s3c):
    assert isinstance(s3c, ChunkBackend)
    assert isinstance(ChunkStore(str(tmp_path / "local")), ChunkBackend)


def test_layout_marker_and_keys(s3c, s3_bucket):
    h = s3c.put(b"hello chunk")
    keys = object_keys(bucket(s3_bucket))
    assert sorted(keys) == sorted(["pre/fix/ninep-chunks", f"pre/fix/{h[:2]}/{h}"])
    assert bytes(obstore.get(bucket(s3_bucket), "pre/fix/ninep-chunks").bytes()) == b"ninep-chunks 2\n"
    assert s3c.location == f"s3://{s3_bucket}/pre/fix"


def test_put_if_absent_counts_dedup_and_uploads_once(s3c, s3_bucket):
    data = os.urandom(5000)
    h = s3c.put(data)
    assert s3c.put(data) == h and s3c.put(bytearray(data)) == h
    st = s3c.stats()
    assert (st.uploads, st.upload_bytes, st.dedup_skips) == (1, 5000, 2)
    assert chunk_keys(bucket(s3_bucket), "pre/fix") == [f"pre/fix/{h[:2]}/{h}"]
    assert s3c.chunks_written == 1 and s3c.bytes_written == 5000


def test_put_many_in_parallel_keeps_order_and_pins(s3c):
    contents = [os.urandom(3000 + i) for i in range(20)] + [b"same", b"same"]
    hashes = s3c.put_many(contents, pin=True)
    assert hashes == [chunk_hash(c) for c in contents]
    assert all(s3c.pinned(h) for h in hashes)
    assert s3c.delete_if_unpinned(hashes[0]) is False
    for h in hashes:
        s3c.unpin(h)
    assert not any(s3c.pinned(h) for h in hashes)
    assert s3c.usage() == (21, sum(len(c) for c in contents[:21]))


def test_get_verifies_and_goes_through_the_disk_cache(s3c):
    data = os.urandom(10000)
    h = s3c.put(data)
    s3c.drop_cache()
    assert s3c.get(h) == data                       # downloaded
    st = s3c.stats()
    assert (st.downloads, st.download_bytes, st.cache_misses) == (1, 10000, 1)
    s3c.drop_cache()
    assert s3c.get(h) == data
    assert s3c.stats().downloads == 2
    # the disk cache serves the next read without memory
    other = os.urandom(777)
    h2 = s3c.put(other)                             # written through to the disk cache
    assert s3c.get(h2) == other
    assert s3c.stats().downloads == 2 and s3c.stats().cache_hits >= 1


def test_corrupt_object_is_eio_and_logged(s3c, s3_bucket):
    data = os.urandom(4000)
    h = s3c.put(data)
    obstore.put(bucket(s3_bucket), f"pre/fix/{h[:2]}/{h}", b"not the content")
    s3c.drop_cache()
    with structlog.testing.capture_logs() as logs, pytest.raises(CorruptChunkError) as ei:
        s3c.get(h)
    assert ei.value.errno == errno.EIO and ei.value.chunk_hash == h
    assert [e["chunk"] for e in logs if e["event"] == "corrupt chunk object"] == [h]
    assert s3c.verify(h) is False
    buf = bytearray(8000)
    with pytest.raises(CorruptChunkError):
        s3c.get_into(h, memoryview(buf))


def test_corrupt_cache_file_is_fetched_again(s3c, tmp_path):
    data = os.urandom(4000)
    h = s3c.put(data)                               # also in the disk cache
    path = tmp_path / "cache" / h[:2] / h
    assert path.exists()
    path.write_bytes(b"x" + data[1:])
    assert s3c.get(h) == data                       # put keeps no memory copy: read from disk
    assert s3c.stats().downloads == 1
    assert chunk_hash(path.read_bytes()) == h       # the cache holds the good copy again


def test_missing_chunk_is_file_not_found(s3c):
    h = chunk_hash(b"never stored")
    with pytest.raises(FileNotFoundError):
        s3c.get(h)
    with pytest.raises(FileNotFoundError):
        s3c.size_of(h)
    assert s3c.has(h) is False and s3c.verify(h) is False


def test_get_many_into(s3c):
    contents = [os.urandom(2000 + 10 * i) for i in range(9)]
    hashes = s3c.put_many(contents, pin=False)
    s3c.drop_cache()
    bufs = [bytearray(len(c)) for c in contents]
    bufs[3] = bytearray(5)                          # too small: None, the caller reads it whole
    got = s3c.get_many_into([(h, memoryview(b)) for h, b in zip(hashes, bufs)])
    assert got == [len(c) if i != 3 else None for i, c in enumerate(contents)]
    assert all(bytes(b) == c for i, (b, c) in enumerate(zip(bufs, contents)) if i != 3)


def test_prefetch_downloads_into_the_cache_in_the_background(s3c):
    contents = [os.urandom(3000 + i) for i in range(6)]
    hashes = s3c.put_many(contents, pin=False)
    s3c.drop_cache()
    s3c.prefetch(hashes)
    s3c.prefetch(hashes)                            # announced already: not fetched twice
    assert s3c.wait_readahead(30)
    assert all(h in s3c.cache for h in hashes)
    st = s3c.stats()
    assert st.downloads == 6 and st.cache_misses == 0   # read-ahead is not a miss


def test_sizes_delete_and_listing_progress(s3c):
    hashes = s3c.put_many([os.urandom(100 + i) for i in range(5)], pin=False)
    calls = []
    sizes = s3c.sizes(lambda: calls.append(1))
    assert len(calls) == 256
    assert sizes == {h: 100 + i for i, h in enumerate(hashes)}
    assert set(s3c) == set(hashes)
    assert s3c.delete(hashes[0]) is True and s3c.delete(hashes[0]) is False
    assert s3c.delete_if_unpinned(hashes[1]) is True
    assert set(s3c.sizes()) == set(hashes[2:])
    assert hashes[1] not in s3c.cache


def test_pin_waits_for_a_running_deletion(s3c):
    """A writer pinning a chunk gc is deleting waits, then finds it gone and uploads again."""
    data = b"shared by gc and a writer"
    h = s3c.put(data)
    started, release = threading.Event(), threading.Event()
    remove = s3c._remove

    def slow_remove(x):
        started.set()
        release.wait(5)
        return remove(x)

    s3c._remove = slow_remove
    t = threading.Thread(target=lambda: s3c.delete_if_unpinned(h))
    t.start()
    started.wait(5)
    result = []
    w = threading.Thread(target=lambda: result.append(s3c.put(data, pin=True)))
    w.start()
    w.join(0.3)
    assert w.is_alive()                             # the pin waits for the deletion
    release.set()
    t.join()
    w.join(5)
    assert result == [h] and s3c.pinned(h) and s3c.has(h)


def test_second_store_on_the_same_prefix_joins_the_pool(s3c, s3_bucket, s3_settings, tmp_path):
    h = s3c.put(b"shared")
    other = S3Chunks(f"s3://{s3_bucket}/pre/fix", s3_settings, str(tmp_path / "c2"), 1 << 20,
                     chunk_size=1 << 20, create=True)
    try:
        assert other.get(h) == b"shared"
    finally:
        other.close()
    with pytest.raises(StoreFormatError, match="no ninep chunks"):
        S3Chunks(f"s3://{s3_bucket}/other", s3_settings, str(tmp_path / "c3"), 1 << 20,
                 chunk_size=1 << 20, create=False)


def test_bad_credentials_fail_fast_without_showing_them(s3_bucket, s3_settings, tmp_path):
    secret = "wrong-secret-0123456789"
    bad = s3_settings.model_copy(update={"secret_access_key": SecretStr(secret)})
    assert secret not in repr(bad) and secret not in str(bad)
    with structlog.testing.capture_logs() as logs, pytest.raises(FsError) as ei:
        S3Chunks(f"s3://{s3_bucket}/x", bad, str(tmp_path / "c"), 1 << 20, chunk_size=1 << 20,
                 create=True)
    assert ei.value.errno == errno.EIO
    msg = str(ei.value)
    assert "credentials" in msg and "AWS_ENDPOINT_URL" in msg
    assert secret not in msg and s3_settings.access_key_id not in msg
    assert secret not in repr(logs)


def test_unreachable_endpoint_fails_fast(s3_bucket, s3_settings, tmp_path):
    import socket
    import time
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                   # nothing listens there
    gone = s3_settings.model_copy(update={"endpoint": f"http://127.0.0.1:{port}"})
    t0 = time.monotonic()
    with pytest.raises(FsError, match="endpoint"):
        S3Chunks(f"s3://{s3_bucket}/x", gone, str(tmp_path / "c"), 1 << 20, chunk_size=1 << 20,
                 create=True)
    assert time.monotonic() - t0 < 15


def test_without_conditional_put_a_head_decides(tmp_path, s3_bucket, s3_settings):
    settings = s3_settings.model_copy(update={"conditional_put": False})
    c = S3Chunks(f"s3://{s3_bucket}/nocond", settings, str(tmp_path / "c"), 1 << 20,
                 chunk_size=1 << 20, create=True)
    try:
        data = os.urandom(3000)
        h = c.put(data)
        assert c.put(data, pin=True) == h and c.pinned(h)
        st = c.stats()
        assert (st.uploads, st.dedup_skips) == (1, 1)
        assert chunk_keys(bucket(s3_bucket), "nocond") == [f"nocond/{h[:2]}/{h}"]
    finally:
        c.close()


def test_claiming_a_prefix_without_conditional_put(tmp_path, s3_bucket, s3_settings):
    settings = s3_settings.model_copy(update={"conditional_put": False})
    S3Chunks(f"s3://{s3_bucket}/p", settings, str(tmp_path / "a"), 1 << 20, chunk_size=1 << 20,
             create=True).close()
    S3Chunks(f"s3://{s3_bucket}/p", settings, str(tmp_path / "b"), 1 << 20,
             chunk_size=1 << 20, create=True).close()       # joins the pool
    assert bytes(obstore.get(bucket(s3_bucket), "p/ninep-chunks").bytes()) == b"ninep-chunks 2\n"
