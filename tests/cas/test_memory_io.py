"""I/O served from memory: read_cached, the kernel read-ahead that feeds it, write_nowait."""

import ctypes
import mmap
import os
import resource
from contextlib import contextmanager

import pytest

from cas import CorruptChunkError
from cas.reads import READAHEAD_CHUNKS

CS = 128 * 1024


def _joined(got):
    """The bytes of what read_cached returned (a read across chunks is a tuple of pieces)."""
    return b"".join(got) if type(got) is tuple else got


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
    for idx, (h, _, _) in env.vol.cache.file(ino).extents.items():
        fd = os.open(env.store.chunks.path(h), os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long]
_libc.mlock.argtypes = _libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


@contextmanager
def _resident(*paths):
    """Hold files in the kernel's page cache while the block runs.

    Each file is mapped and mlock'ed, so no reclaim (memory pressure, a
    hypervisor's balloon) can evict its pages; then read once normally, which
    clears the read-ahead markers a fault may have left (an RWF_NOWAIT read
    stops short at a marked page).
    """
    need = sum(os.stat(p).st_size + mmap.PAGESIZE for p in paths)
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft != resource.RLIM_INFINITY and soft < need:  # mlock may lock up to the hard limit
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
    maps = []
    try:
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
                if addr in (None, ctypes.c_void_p(-1).value):
                    raise OSError(ctypes.get_errno(), "mmap")
                maps.append((addr, size))
                if _libc.mlock(addr, size) != 0:
                    raise OSError(ctypes.get_errno(), "mlock")
                os.pread(fd, size, 0)
            finally:
                os.close(fd)
        yield
    finally:
        for addr, size in maps:
            _libc.munmap(addr, size)  # also unlocks
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (soft, hard))


def test_read_cached_serves_the_page_cache_and_declines_the_disk(env):
    ino, data = _big_file(env)
    vol = env.vol
    # just written: the chunk files are in the page cache (held there: nothing may reclaim
    # them meanwhile), verified on the way
    with _resident(*(env.store.chunks.path(h) for h, _, _ in vol.cache.file(ino).extents.values())):
        assert _joined(vol.read_cached(ino, 0, 4096)) == data[:4096]
        across = vol.read_cached(ino, CS - 10, 20)
    assert type(across) is tuple and [len(x) for x in across] == [10, 10]   # two pieces, not joined
    assert b"".join(across) == data[CS - 10:CS + 10]
    env.store.chunks.drop_cache()
    _evict(env, ino)
    assert vol.read_cached(ino, 0, 4096) is None   # would wait for the disk
    assert vol.read(ino, 0, 4096) == data[:4096]
    # a partial read goes through the chunk cache: the rest of that chunk is served inline
    _evict(env, ino)
    assert _joined(vol.read_cached(ino, 4096, CS - 4096)) == data[4096:CS]
    assert vol.read_cached(ino, CS - 10, 20) is None  # crosses into a chunk only on disk


def test_read_cached_verifies_what_it_reads(env):
    ino, data = _big_file(env, chunks=2)
    vol = env.vol
    path, good = (env.store.chunks.path(h) for h, _, _ in vol.cache.file(ino).extents.values())
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.write(b"X")
    with _resident(path, good):  # read_cached reads only what the page cache holds
        with pytest.raises(CorruptChunkError):
            vol.read_cached(ino, 0, 10)
        assert _joined(vol.read_cached(ino, CS, 10)) == data[CS:CS + 10]


def test_sequential_reads_have_the_kernel_read_ahead(env):
    import time
    n = READAHEAD_CHUNKS
    ino, data = _big_file(env, chunks=n + 6)
    vol = env.vol
    _evict(env, ino)
    assert vol.read(ino, 3 * CS, 100) == data[3 * CS:3 * CS + 100]  # not sequential yet
    time.sleep(0.2)
    assert vol.read_cached(ino, 5 * CS, 10) is None                  # so nothing was read ahead
    assert vol.read(ino, 3 * CS + 100, CS - 100) == data[3 * CS + 100:4 * CS]  # sequential
    # the next READAHEAD_CHUNKS chunk files (4 .. n+3) come into the page cache by themselves
    last = n + 3
    deadline = time.monotonic() + 5
    while vol.read_cached(ino, last * CS, 10) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _joined(vol.read_cached(ino, 4 * CS, CS)) == data[4 * CS:5 * CS]
    assert _joined(vol.read_cached(ino, last * CS, 10)) == data[last * CS:last * CS + 10]
    assert vol.read_cached(ino, (last + 1) * CS, 10) is None          # beyond the window


def test_sequential_reads_served_inline_move_the_read_ahead_on(env):
    """A reader served from memory keeps the window ahead of it: no stall at the window's end."""
    import time
    from cas.reads import READAHEAD_REFRESH
    n = READAHEAD_CHUNKS
    ino, data = _big_file(env, chunks=n + 3 * READAHEAD_REFRESH)
    vol = env.vol
    chunks = env.store.chunks
    ext = vol.cache.file(ino).extents
    _evict(env, ino)

    def in_memory(idx):  # no lookup that could read the file or start the kernel's read-ahead
        return chunks.cached(ext[idx][0]) is not None

    def wait_for(idx):
        deadline = time.monotonic() + 10
        while not in_memory(idx) and time.monotonic() < deadline:
            time.sleep(0.02)
        return in_memory(idx)

    assert vol.read(ino, 0, 100) == data[:100]
    assert vol.read(ino, 100, CS - 100) == data[100:CS]   # sequential: chunks 1 .. n read ahead
    assert wait_for(n)
    chunks.wait_readahead(10)
    beyond = n + READAHEAD_REFRESH // 2                   # past the first window
    assert not in_memory(beyond)
    # inline reads on, through chunk READAHEAD_REFRESH: the window moves with them
    off = CS
    while off < (READAHEAD_REFRESH + 1) * CS:
        assert _joined(vol.read_cached(ino, off, CS // 2)) == data[off:off + CS // 2]
        off += CS // 2
    assert wait_for(beyond)
    assert _joined(vol.read_cached(ino, beyond * CS, 10)) == data[beyond * CS:beyond * CS + 10]


def test_read_ahead_is_announced_once_per_pass(env):
    """Overlapping windows announce each chunk once; a later pass announces it again."""
    import time
    chunks = env.store.chunks
    asked = []
    chunks.advise = lambda hs: asked.extend(hs)   # record what reaches the read-ahead thread
    chunks.prefetch(["a", "b", "c"])
    chunks.prefetch(["b", "c", "d"])
    deadline = time.monotonic() + 5
    while len(asked) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(asked) == ["a", "b", "c", "d"]   # two read-ahead threads: any order
    time.sleep(1.1)  # past the announcement memory: evicted data is read ahead again
    chunks.prefetch(["c", "d"])
    while len(asked) < 6 and time.monotonic() < deadline + 2:
        time.sleep(0.01)
    assert sorted(asked) == ["a", "b", "c", "c", "d", "d"]


def test_read_cached_sees_unflushed_writes_and_holes(env):
    vol = env.vol
    f = vol.create(vol.root, b"sparse", 0o644, 0, 0)
    vol.write(f.ino, 3 * CS + 5, b"tail")   # buffered, not yet a chunk
    assert _joined(vol.read_cached(f.ino, 0, 3 * CS + 9)) == bytes(3 * CS + 5) + b"tail"
    assert _joined(vol.read_cached(f.ino, 3 * CS + 9, 100)) == b""   # at EOF


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
    env.store.commits.dirty_limit = 100
    assert vol.write_nowait(g.ino, 0, b"y" * 200) is None
    env.store.commits.dirty_limit = 1 << 30
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
