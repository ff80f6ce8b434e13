"""I/O served from memory: read_cached and its read-ahead, write_nowait."""

import os

import pytest

from cas import CorruptChunkError

CS = 128 * 1024


def _big_file(env, chunks=12):
    vol = env.vol
    f = vol.create(vol.root, b"big", 0o644, 0, 0)
    data = os.urandom(chunks * CS - 1000)  # the last chunk is short
    vol.write(f.ino, 0, data)
    env.store.commit()
    env.store.chunks.drop_cache()
    return f.ino, data


def _evict(env, ino):
    """Drop the file's chunk files from the kernel's page cache (they are clean after a commit)."""
    for idx, (h, _, _) in env.vol._file(ino).extents.items():
        fd = os.open(env.store.chunks.path(h), os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def test_read_cached_serves_the_page_cache_and_declines_the_disk(env):
    ino, data = _big_file(env)
    vol = env.vol
    # just written: the chunk files are in the page cache, verified on the way
    assert vol.read_cached(ino, 0, 4096) == data[:4096]
    assert vol.read_cached(ino, CS - 10, 20) == data[CS - 10:CS + 10]
    env.store.chunks.drop_cache()
    _evict(env, ino)
    assert vol.read_cached(ino, 0, 4096) is None   # would wait for the disk
    assert vol.read(ino, 0, 4096) == data[:4096]
    # a partial read goes through the chunk cache: the rest of that chunk is served inline
    _evict(env, ino)
    assert vol.read_cached(ino, 4096, CS - 4096) == data[4096:CS]
    assert vol.read_cached(ino, CS - 10, 20) is None  # crosses into a chunk only on disk


def test_read_cached_verifies_what_it_reads(env):
    ino, data = _big_file(env, chunks=2)
    vol = env.vol
    first = vol.readahead_targets(ino, 0, 2)[0]
    path = env.store.chunks.path(first)
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.write(b"X")
    with pytest.raises(CorruptChunkError):
        vol.read_cached(ino, 0, 10)
    assert vol.read_cached(ino, CS, 10) == data[CS:CS + 10]


def test_readahead_targets_come_in_batches(env):
    ino, data = _big_file(env)
    vol = env.vol
    targets = vol.readahead_targets(ino, 0, 8)
    assert len(targets) == 8
    vol.prefetch(targets)
    assert vol.readahead_targets(ino, 0, 8) == []
    # every byte of the window is now served without I/O, and equals read()
    for off in range(0, 8 * CS - 65536, 65536 - 24):
        assert vol.read_cached(ino, off, 65536 - 24) == data[off:off + 65536 - 24]
    # one chunk missing at the far end of the window: not worth a batch yet
    assert vol.readahead_targets(ino, CS, 8) == []
    # half of the window missing: fetch it
    assert len(vol.readahead_targets(ino, 4 * CS, 8)) == 4
    # the next chunk itself missing: fetch at once, even if it is the only one
    env.store.chunks.drop_cache()
    vol.prefetch(vol.readahead_targets(ino, 0, 8)[1:])
    assert len(vol.readahead_targets(ino, 0, 8)) == 1
    # past the end of file there is nothing to fetch, and the short last chunk reads right
    assert vol.readahead_targets(ino, 12 * CS, 8) == []
    vol.prefetch(vol.readahead_targets(ino, 8 * CS, 8))
    assert vol.read_cached(ino, 11 * CS, CS) == data[11 * CS:]


def test_read_cached_sees_unflushed_writes_and_holes(env):
    vol = env.vol
    f = vol.create(vol.root, b"sparse", 0o644, 0, 0)
    vol.write(f.ino, 3 * CS + 5, b"tail")   # buffered, not yet a chunk
    assert vol.read_cached(f.ino, 0, 3 * CS + 9) == bytes(3 * CS + 5) + b"tail"
    assert vol.read_cached(f.ino, 3 * CS + 9, 100) == b""   # at EOF


def test_prefetch_skips_a_corrupt_chunk_and_the_read_reports_it(env):
    ino, data = _big_file(env, chunks=2)
    vol = env.vol
    first = vol.readahead_targets(ino, 0, 2)[0]
    path = env.store.chunks.path(first)
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.write(b"X")
    vol.prefetch(vol.readahead_targets(ino, 0, 2))  # no exception here
    assert first not in env.store.chunks.cached_hashes  # the corrupt chunk was not kept
    with pytest.raises(CorruptChunkError):
        vol.read(ino, 0, 10)
    assert vol.read(ino, CS, 10) == data[CS:CS + 10]


def test_write_nowait_only_fills_buffers(env):
    vol = env.vol
    f = vol.create(vol.root, b"w", 0o644, 0, 0)
    # partial chunks go into memory at once
    assert vol.write_nowait(f.ino, 0, b"a" * 65536) == 65536
    assert vol.write_nowait(f.ino, 65536, b"b" * 65536) == 65536
    assert vol.read(f.ino, 0, CS) == b"a" * 65536 + b"b" * 65536
    # a whole aligned chunk has to be stored: declined, nothing written
    assert vol.write_nowait(f.ino, CS, b"c" * CS) is None
    assert vol.getattr(f.ino).size == CS
    assert vol.write(f.ino, CS, b"c" * CS) == CS
    env.store.commit()
    # a partial overwrite of a stored chunk loads it first: declined
    assert vol.write_nowait(f.ino, 10, b"x") is None
    assert vol.read(f.ino, 10, 1) == b"a"
    # past the dirty limit: declined, so the caller's write() flushes
    g = vol.create(vol.root, b"g", 0o644, 0, 0)
    env.store._dirty_limit = 100
    assert vol.write_nowait(g.ino, 0, b"y" * 200) is None
    env.store._dirty_limit = 1 << 30
    assert vol.write_nowait(g.ino, 0, b"y" * 200) == 200
    env.reopen()
    assert env.vol.read(g.ino, 0, 300) == b"y" * 200
    assert env.vol.read(f.ino, 0, 2 * CS) == b"a" * 65536 + b"b" * 65536 + b"c" * CS


def test_write_nowait_errors_like_write(env):
    import errno
    vol = env.vol
    d = vol.mkdir(vol.root, b"d", 0o755, 0, 0)
    with pytest.raises(OSError) as exc:
        vol.write_nowait(d.ino, 0, b"x")
    assert exc.value.errno == errno.EISDIR
    f = vol.create(vol.root, b"f", 0o644, 0, 0)
    with pytest.raises(OSError) as exc:
        vol.write_nowait(f.ino, -1, b"x")
    assert exc.value.errno == errno.EINVAL
    env.store.create_snapshot("main", "s")
    snap = env.store.snapshot_volume("main", "s")
    with pytest.raises(OSError) as exc:
        snap.write_nowait(f.ino, 0, b"x")
    assert exc.value.errno == errno.EROFS
