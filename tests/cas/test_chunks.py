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
    cs = ChunkStore(str(tmp_path / "c"), read_cache=0)
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
