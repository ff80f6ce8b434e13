"""The local on-disk chunk cache of an S3-backed store: bound, LRU order, modes, verification."""

import os
import stat

import pytest

from cas.chunkbase import chunk_hash
from cas.chunkcache import ChunkCache


def _chunk(i: int, n: int = 1000) -> tuple[str, bytes]:
    data = bytes([i % 256]) * n + i.to_bytes(4, "big")
    return chunk_hash(data), data


def test_bounded_by_bytes_evicting_least_recently_used(tmp_path):
    cache = ChunkCache(str(tmp_path / "c"), limit=3 * 1004)
    chunks = [_chunk(i) for i in range(4)]
    for h, data in chunks[:3]:
        cache.put(h, data)
    assert cache.get(chunks[0][0]) == chunks[0][1]      # 0 is now the most recently used
    cache.put(*chunks[3])                               # evicts 1, the least recently used
    assert cache.bytes == 3 * 1004 and len(cache) == 3
    assert cache.order() == [chunks[2][0], chunks[0][0], chunks[3][0]]
    assert chunks[1][0] not in cache
    assert not os.path.exists(tmp_path / "c" / chunks[1][0][:2] / chunks[1][0])
    assert cache.get(chunks[1][0]) is None


def test_chunk_larger_than_the_bound_is_not_kept(tmp_path):
    cache = ChunkCache(str(tmp_path / "c"), limit=100)
    h, data = _chunk(1)
    cache.put(h, data)
    assert h not in cache and cache.bytes == 0


def test_hits_and_misses_are_counted(tmp_path):
    cache = ChunkCache(str(tmp_path / "c"), limit=1 << 20)
    h, data = _chunk(1)
    assert cache.get(h) is None
    cache.put(h, data)
    assert cache.get(h) == data and cache.get(h) == data
    assert cache.get(h, count=False) == data
    assert (cache.hits, cache.misses) == (2, 1)


def test_owner_only_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        cache = ChunkCache(str(tmp_path / "c"), limit=1 << 20)
        h, data = _chunk(1)
        cache.put(h, data)
    finally:
        os.umask(old)
    root = tmp_path / "c"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / h[:2]).stat().st_mode) == 0o700
    assert stat.S_IMODE((root / h[:2] / h).stat().st_mode) == 0o600


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_cache_file_is_dropped_on_read(tmp_path, damage):
    cache = ChunkCache(str(tmp_path / "c"), limit=1 << 20)
    h, data = _chunk(7)
    cache.put(h, data)
    path = tmp_path / "c" / h[:2] / h
    bad = bytearray(data)
    if damage == "flip":
        bad[10] ^= 1
    else:
        del bad[-3:]
    path.write_bytes(bytes(bad))
    assert cache.get(h) is None                  # a miss: the caller fetches it again
    assert not path.exists() and h not in cache and cache.bytes == 0
    assert cache.misses == 1 and cache.hits == 0
    cache.put(h, data)
    assert cache.get(h) == data


def test_rebuilt_at_open_in_modification_order(tmp_path):
    root = str(tmp_path / "c")
    cache = ChunkCache(root, limit=1 << 20)
    chunks = [_chunk(i) for i in range(3)]
    for k, (h, data) in enumerate(chunks):
        cache.put(h, data)
        t = 1_000_000 + 100 * (3 - k)            # the first put is the newest on disk
        os.utime(os.path.join(root, h[:2], h), (t, t))
    tmp = os.path.join(root, "ab", ".tmp-leftover")
    open(tmp, "wb").close()
    again = ChunkCache(root, limit=2 * 1004)     # smaller bound: the oldest file goes
    assert again.order() == [chunks[1][0], chunks[0][0]]
    assert again.bytes == 2 * 1004
    assert not os.path.exists(tmp)
    assert not os.path.exists(os.path.join(root, chunks[2][0][:2], chunks[2][0]))
    assert again.get(chunks[0][0]) == chunks[0][1]


def test_clear_and_discard(tmp_path):
    cache = ChunkCache(str(tmp_path / "c"), limit=1 << 20)
    a, b = _chunk(1), _chunk(2)
    cache.put(*a)
    cache.put(*b)
    cache.discard(a[0])
    assert a[0] not in cache and b[0] in cache
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0
    assert cache.get(b[0]) is None
