import os
import threading

import blake3
import pytest

from cas import ChunkStore, CorruptChunkError


def test_put_get_layout(tmp_path):
    cs = ChunkStore(str(tmp_path / "c"))
    data = b"hello world" * 100
    h = cs.put(data)
    assert h == blake3.blake3(data).hexdigest()
    assert os.path.exists(tmp_path / "c" / h[:2] / h)
    assert cs.get(h) == data
    assert cs.has(h)
    assert cs.put(data) == h  # dedup: same name, written once
    assert cs.chunks_written == 1
    assert list(cs) == [h]
    assert cs.usage() == (1, len(data))


def test_delete_and_missing(tmp_path):
    cs = ChunkStore(str(tmp_path / "c"))
    h = cs.put(b"abc")
    assert cs.delete(h)
    assert not cs.has(h)
    assert not cs.delete(h)
    with pytest.raises(FileNotFoundError):
        cs.get(h)


def test_corruption_detected_and_named(tmp_path):
    cs = ChunkStore(str(tmp_path / "c"), memory_bytes=0)
    h = cs.put(b"x" * 5000)
    p = cs.path(h)
    os.chmod(p, 0o644)
    with open(p, "r+b") as f:
        f.seek(100)
        f.write(b"y")
    with pytest.raises(CorruptChunkError) as ei:
        cs.get(h)
    assert ei.value.errno == 5
    assert h in str(ei.value)
    assert ei.value.chunk_hash == h
    assert not cs.verify(h)


def test_pins_block_delete(tmp_path):
    cs = ChunkStore(str(tmp_path / "c"))
    h = cs.put(b"pinned", pin=True)
    assert not cs.delete_if_unpinned(h)
    cs.unpin(h)
    assert cs.delete_if_unpinned(h)


def test_make_durable_and_temporaries(tmp_path):
    cs = ChunkStore(str(tmp_path / "c"))
    cs.put(b"a")
    cs.make_durable()
    open(tmp_path / "c" / "ab" / ".tmp-junk", "wb").close()
    assert cs.remove_temporaries() == 1
    assert len(list(cs)) == 1


def test_put_many_spreads_a_batch_and_keeps_its_order(tmp_path):
    before = set(threading.enumerate())
    cs = ChunkStore(str(tmp_path / "c"), io_threads=3)
    try:
        contents = [os.urandom(1000 + i) for i in range(10)] + [b"dup", b"dup"]
        hashes = cs.put_many(contents)
        assert hashes == [blake3.blake3(c).hexdigest() for c in contents]
        assert [cs.get(h) for h in hashes] == contents
        assert cs.chunks_written == 11          # the duplicate is stored once
        assert all(cs.pinned(h) for h in hashes)
        helpers = [t for t in threading.enumerate() if t not in before]
        assert helpers and all(t.name.startswith("chunk-io") for t in helpers)
    finally:
        cs.close()
    assert not any(t.is_alive() for t in helpers)   # close() joined them


def test_put_many_failure_leaves_nothing_pinned(tmp_path):
    cs = ChunkStore(str(tmp_path / "c"), io_threads=2)
    try:
        good = [os.urandom(500) for _ in range(3)]
        with pytest.raises(TypeError):
            cs.put_many(good + [object()])     # the second half fails after storing one
        assert not any(cs.pinned(blake3.blake3(c).hexdigest()) for c in good)
    finally:
        cs.close()
    with pytest.raises(Exception, match="closed"):
        cs.put_many([b"a", b"b"])


def test_memory_cache_is_bounded_in_bytes_and_counts_hits(tmp_path):
    """The memory LRU holds at most ``memory_bytes``; lookups of the read path count as hits or misses."""
    cs = ChunkStore(str(tmp_path / "c"), memory_bytes=3000)
    blobs = [bytes([i]) * 1000 for i in range(5)]
    hashes = [cs.put(b) for b in blobs]
    assert [cs.cached(h) is not None for h in hashes] == [False, False, True, True, True]
    assert cs.memory_bytes == 3000                  # what was stored last, within the bound
    cs.drop_cache()
    for h, b in zip(hashes, blobs):
        assert cs.get(h) == b                       # read from disk: a miss each
        assert cs.memory_bytes <= 3000
    s = cs.stats()
    assert (s.memory_hits, s.memory_misses, s.memory_bytes, s.memory_limit) == (0, 5, 3000, 3000)
    assert [cs.cached(h) is not None for h in hashes] == [False, False, True, True, True]
    assert cs.get(hashes[4]) == blobs[4] and cs.get(hashes[3]) == blobs[3]   # hits
    assert cs.get(hashes[0]) == blobs[0]            # evicted: a miss, and it evicts the LRU (2)
    s = cs.stats()
    assert (s.memory_hits, s.memory_misses) == (2, 6)
    assert s.memory_hit_ratio == 2 / 8
    assert cs.cached(hashes[2]) is None and cs.memory_bytes == 3000
    big = cs.put(b"z" * 3001)                       # larger than the bound: never kept
    assert cs.get(big) == b"z" * 3001
    assert cs.cached(big) is None and cs.memory_bytes <= 3000
    cs.delete(hashes[0])                            # deletion forgets it, and its bytes
    assert cs.cached(hashes[0]) is None and cs.memory_bytes == 2000
    cs.drop_cache()
    assert cs.memory_bytes == 0 and cs.stats().memory_bytes == 0


def test_a_chunk_just_stored_is_read_from_memory(tmp_path):
    """put hashed the bytes it stores, so it keeps them as a verified chunk: the read
    that follows a write (a build, a checkout) is a memory hit, with no disk read, even
    if the file were damaged meanwhile. A put that finds the chunk stored changes nothing."""
    cs = ChunkStore(str(tmp_path / "c"))
    data = bytearray(b"w" * 6000)                   # what sealed write buffers hand over
    h = cs.put(data)
    data[:1] = b"X"                                 # the caller's buffer is not what memory holds
    with open(cs.path(h), "r+b") as f:
        os.chmod(cs.path(h), 0o644)
        f.write(b"Y")                               # nor is the file read
    assert cs.get(h) == b"w" * 6000 and type(cs.cached(h)) is bytes
    assert (cs.stats().memory_hits, cs.stats().memory_misses) == (1, 0)
    cs.drop_cache()
    assert cs.put(b"w" * 6000) == h and cs.cached(h) is None   # dedup: not re-read to remember
    with pytest.raises(CorruptChunkError):
        cs.get(h)                                   # once dropped, the file is verified again


def test_memory_hits_skip_the_hash_but_every_disk_read_is_verified(tmp_path):
    """A chunk in memory was verified on its way in; once dropped, the damaged file is refused."""
    cs = ChunkStore(str(tmp_path / "c"))
    h = cs.put(b"q" * 5000)
    assert cs.get(h) == b"q" * 5000                 # read and verified, now in memory
    p = cs.path(h)
    os.chmod(p, 0o644)
    with open(p, "r+b") as f:
        f.write(b"X")
    assert cs.get(h) == b"q" * 5000                 # the verified copy, not the damaged file
    assert cs.get_nowait(h) == b"q" * 5000
    cs.drop_cache()
    with pytest.raises(CorruptChunkError):
        cs.get(h)
    with pytest.raises(CorruptChunkError):
        cs.get_into(h, memoryview(bytearray(5000)))
    assert cs.cached(h) is None                     # nothing unverified entered memory


def test_read_ahead_fills_memory_with_verified_chunks_only(tmp_path):
    cs = ChunkStore(str(tmp_path / "c"))
    good = cs.put(b"g" * 4000)
    bad = cs.put(b"b" * 4000)
    os.chmod(cs.path(bad), 0o644)
    with open(cs.path(bad), "r+b") as f:
        f.write(b"X")
    cs.drop_cache()
    cs.advise([good, bad, "0" * 64])                # a missing chunk is skipped
    assert cs.cached(good) == b"g" * 4000
    assert cs.cached(bad) is None
    assert cs.stats().memory_hits == cs.stats().memory_misses == 0   # read-ahead is not a lookup
    cs.close()
