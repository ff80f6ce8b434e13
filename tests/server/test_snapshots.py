"""/.snapshots through 9P, and scheduled snapshots, against a live server."""

from __future__ import annotations

import errno
import stat

import trio

from ninep_server import protocol as p
from ninep_server.config import parse_config

from .conftest import start_live
from .test_messages import expect_errno

O = p.OpenFlags


async def test_snapshot_directory_through_9p(live):
    async with live.connect() as c:
        await c.makedirs(b"docs")
        await c.write_file(b"docs/a", b"version one")
        await c.write_file(b"small", b"s")
        names = {e.name for e in await c.listdir(b"")}
        assert b".snapshots" in names
        st = await c.stat(b".snapshots")
        assert stat.S_ISDIR(st.mode) and stat.S_IMODE(st.mode) == 0o755 and st.uid == 0
        snapdir = await c.walk_path(b".snapshots")
        qid = await c.mkdir(snapdir, b"s1")
        assert qid.type & p.QidType.DIR
        # change the live tree after the snapshot
        await c.write_file(b"docs/a", b"version two, longer")
        await c.unlink(b"small")
        await c.write_file(b"new", b"n")
        assert await c.read_file(b".snapshots/s1/docs/a") == b"version one"
        assert await c.read_file(b".snapshots/s1/small") == b"s"
        assert not await c.exists(b".snapshots/s1/new")
        assert [e.name for e in await c.listdir(b".snapshots")] == [b"s1"]
        # distinct qids: the same file live and in the snapshot
        live_q = (await c.stat(b"docs/a")).qid
        snap_q = (await c.stat(b".snapshots/s1/docs/a")).qid
        assert live_q.path != snap_q.path and snap_q.version != 0
        # ".." from a snapshot root leads back to /.snapshots, then to the root
        fid = await c.walk_path(b".snapshots/s1")
        up = c.alloc_fid()
        qids = await c.walk(fid, up, [b"..", b".."])
        assert qids[-1].path == c.root_qid.path
        # every mutation inside is EROFS
        inside = await c.walk_path(b".snapshots/s1/docs")
        await expect_errno(errno.EROFS, c.lcreate(inside, b"x", O.RDWR, 0o644))
        await expect_errno(errno.EROFS, c.mkdir(await c.walk_path(b".snapshots/s1/docs"), b"d"))
        await expect_errno(errno.EROFS, c.unlinkat(await c.walk_path(b".snapshots/s1/docs"), b"a", 0))
        await expect_errno(errno.EROFS, c.lopen(await c.walk_path(b".snapshots/s1/docs/a"), O.RDWR))
        await expect_errno(errno.EROFS, c.setattr(await c.walk_path(b".snapshots/s1/docs/a"), mode=0o600))
        # the live root cannot hold a real .snapshots entry
        root = await c.walk_path(b"")
        await expect_errno(errno.EEXIST, c.lcreate(root, b".snapshots", O.RDWR, 0o644))
        # rmdir deletes it
        await c.unlinkat(await c.walk_path(b".snapshots"), b"s1", p.AT_REMOVEDIR)
        assert await c.listdir(b".snapshots") == []
        assert not await c.exists(b".snapshots/s1")
        await expect_errno(errno.EINVAL, c.mkdir(await c.walk_path(b".snapshots"), b"bad name"))
    async with live.connect(uid=1000) as user:
        await expect_errno(errno.EPERM, user.mkdir(await user.walk_path(b".snapshots"), b"mine"))


async def test_scheduled_snapshots_prune_only_their_own(tmp_path, nursery):
    config = parse_config(
        {
            "server": {"commit_interval": 0.05},
            "exports": {"main": {"schedule": [{"name": "fast", "every": "1s", "keep": 2}]}},
        }
    )
    live = await start_live(tmp_path, nursery, config)
    try:
        live.store.create_snapshot("main", "manual")
        await trio.sleep(3.6)
        names = [s.name for s in live.store.snapshots("main")]
        auto = [n for n in names if n.startswith("auto-fast-")]
        assert "manual" in names
        assert len(auto) == 2, names
        assert all(len(n) == len("auto-fast-20261124T230000Z") for n in auto)
    finally:
        await live.server.shutdown()
        live.store.close()
