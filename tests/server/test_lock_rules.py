"""Which fids may take which locks: any open fid, any lock type, anywhere.

flock(LOCK_EX) on a read-only descriptor reaches the server as a write lock
on a fid opened O_RDONLY, and Linux grants flock on read-only mounts, so the
server grants both lock types on every open fid, on read-only exports and
inside snapshots alike (locks are advisory and change no data). Conflicts
are still enforced between connections there.
"""

from __future__ import annotations

import errno

import pytest

from ninep_server import protocol as p
from ninep_server.config import parse_config

from .conftest import start_live
from .test_messages import expect_errno

O = p.OpenFlags
W, R, U = p.LockType.WRLCK, p.LockType.RDLCK, p.LockType.UNLCK
OK, BLOCKED = p.LockStatus.SUCCESS, p.LockStatus.BLOCKED


async def _conflicts_across(c1, c2, path: bytes, flags1: int, flags2: int) -> None:
    """c1 takes W on an fid opened with flags1; c2 (flags2) is refused, then granted after unlock."""
    f1 = await c1.open(path, flags1)
    f2 = await c2.open(path, flags2)
    assert await c1.lock(f1.fid, W, proc_id=1) == OK
    assert await c2.lock(f2.fid, R, proc_id=2) == BLOCKED
    assert await c2.lock(f2.fid, W, proc_id=2) == BLOCKED
    held = await c2.getlock(f2.fid, W, proc_id=2)
    assert held.type == W and held.proc_id == 1
    assert await c1.lock(f1.fid, U, proc_id=1) == OK
    assert await c2.lock(f2.fid, R, proc_id=2) == OK
    assert await c1.lock(f1.fid, R, proc_id=1) == OK  # shared with shared
    assert await c1.lock(f1.fid, W, proc_id=1) == BLOCKED
    assert await c2.lock(f2.fid, U, proc_id=2) == OK
    assert await c1.lock(f1.fid, W, proc_id=1) == OK
    assert await c1.lock(f1.fid, U, proc_id=1) == OK
    await c1.clunk(f1.fid)
    await c2.clunk(f2.fid)


@pytest.mark.parametrize(
    "flags1, flags2",
    [(O.RDONLY, O.RDONLY), (O.WRONLY, O.WRONLY), (O.RDONLY, O.WRONLY), (O.RDWR, O.RDONLY)],
    ids=["ro-ro", "wo-wo", "ro-wo", "rw-ro"],
)
async def test_any_open_mode_takes_either_lock(live, flags1, flags2):
    """A write lock on a read-only fid and a read lock on a write-only fid are granted and conflict."""
    async with live.connect() as c1, live.connect() as c2:
        await c1.write_file(b"lk", b"data")
        await _conflicts_across(c1, c2, b"lk", flags1, flags2)
        assert await c1.read_file(b"lk") == b"data"


async def test_lock_on_unopened_fid_or_bad_type(live):
    async with live.connect() as c:
        await c.write_file(b"lk", b"")
        fid = await c.walk_path(b"lk")
        await expect_errno(errno.EBADF, c.lock(fid, W))
        await expect_errno(errno.EBADF, c.lock(fid, R))
        f = await c.open(b"lk", O.RDONLY)
        await expect_errno(errno.EINVAL, c.lock(f.fid, 7))


async def test_locks_on_a_read_only_export(tmp_path, nursery):
    """Both lock types are granted on a read-only export; writes stay EROFS."""
    config = parse_config({"server": {"commit_interval": 0.05}, "exports": {"ro": {"read_only": True}}})
    live = await start_live(tmp_path, nursery, config)
    live.store.create_dataset("ro")
    vol = live.store.volume("ro")
    vol.create(vol.root, b"lk", 0o100644, 0, 0)
    try:
        async with live.connect(aname=b"ro") as c1, live.connect(aname=b"ro") as c2:
            await expect_errno(errno.EROFS, c1.open(b"lk", O.RDWR))
            await _conflicts_across(c1, c2, b"lk", O.RDONLY, O.RDONLY)
            f = await c1.open(b"lk", O.RDONLY)
            await expect_errno(errno.EROFS, c1.setattr(f.fid, size=0))
    finally:
        await live.server.shutdown()
        live.store.close()


async def test_locks_inside_a_snapshot(live):
    """Locks are granted on snapshot files and conflict between connections there."""
    async with live.connect() as c1, live.connect() as c2:
        await c1.write_file(b"lk", b"old")
        await c1.mkdir(await c1.walk_path(b".snapshots"), b"s1")
        await c1.write_file(b"lk", b"new")
        path = b".snapshots/s1/lk"
        await expect_errno(errno.EROFS, c1.open(path, O.WRONLY))
        await _conflicts_across(c1, c2, path, O.RDONLY, O.RDONLY)
        # a lock in the snapshot is not a lock on the live file
        snap = await c1.open(path, O.RDONLY)
        assert await c1.lock(snap.fid, W, proc_id=1) == OK
        live_file = await c2.open(b"lk", O.RDWR)
        assert await c2.lock(live_file.fid, W, proc_id=2) == OK
        assert await c1.read_file(path) == b"old"
