"""POSIX permissions for the attached uid, export options, name rules."""

from __future__ import annotations

import errno
import stat


from ninep_server import protocol as p
from ninep_server.config import parse_config

from .conftest import start_live
from .test_messages import expect_errno

O = p.OpenFlags


async def test_mode_bits_for_other_users(live):
    async with live.connect(uid=0) as root:
        await root.makedirs(b"private")
        fid = await root.walk_path(b"private")
        await root.setattr(fid, mode=0o700)
        await root.write_file(b"ro", b"secret")
        await root.setattr(await root.walk_path(b"ro"), mode=0o644)
        await root.makedirs(b"pub")
        await root.setattr(await root.walk_path(b"pub"), mode=0o777)
    async with live.connect(uid=1000) as user:
        private = await user.walk_path(b"private")  # the walk into it is allowed, not through it
        await expect_errno(errno.EACCES, user.walk(private, user.alloc_fid(), [b"x"]))
        await expect_errno(errno.EACCES, user.open(b"ro", O.WRONLY))
        assert await user.read_file(b"ro") == b"secret"
        dfid = await user.walk_path(b"")
        await expect_errno(errno.EACCES, user.lcreate(dfid, b"mine", O.RDWR, 0o644))
        await expect_errno(errno.EACCES, user.mkdir(dfid, b"dir"))
        await expect_errno(errno.EACCES, user.unlinkat(dfid, b"ro", 0))
        await expect_errno(errno.EPERM, user.setattr(await user.walk_path(b"ro"), mode=0o777))
        await expect_errno(errno.EPERM, user.setattr(await user.walk_path(b"ro"), uid=1000))
        # in a world-writable directory the user creates files it owns
        await user.write_file(b"pub/mine", b"x")
        st = await user.stat(b"pub/mine")
        assert st.uid == 1000
        await user.setattr(await user.walk_path(b"pub/mine"), mode=0o600)
        await expect_errno(errno.EPERM, user.setattr(await user.walk_path(b"pub/mine"), uid=0))
    async with live.connect(uid=1001) as other:
        await expect_errno(errno.EACCES, other.open(b"pub/mine"))


async def test_sticky_directory(live):
    async with live.connect(uid=0) as root:
        await root.makedirs(b"tmp")
        await root.setattr(await root.walk_path(b"tmp"), mode=0o1777)
    async with live.connect(uid=1000) as a:
        await a.write_file(b"tmp/a-file", b"")
    async with live.connect(uid=1001) as b:
        dfid = await b.walk_path(b"tmp")
        await expect_errno(errno.EPERM, b.unlinkat(dfid, b"a-file", 0))
        await expect_errno(errno.EPERM, b.renameat(dfid, b"a-file", dfid, b"stolen"))
        await b.write_file(b"tmp/b-file", b"")
        await b.unlinkat(dfid, b"b-file", 0)
    async with live.connect(uid=1000) as a:
        await a.unlink(b"tmp/a-file")


async def test_setgid_directory_inheritance(live):
    async with live.connect(uid=0) as root:
        await root.makedirs(b"team")
        fid = await root.walk_path(b"team")
        await root.setattr(fid, mode=0o2777, gid=4242)
    async with live.connect(uid=1000) as user:
        await user.write_file(b"team/f", b"")
        assert (await user.stat(b"team/f")).gid == 4242
        dfid = await user.walk_path(b"team")
        await user.mkdir(dfid, b"sub", 0o755)
        st = await user.stat(b"team/sub")
        assert st.gid == 4242 and st.mode & stat.S_ISGID


async def test_reserved_and_invalid_names(live):
    async with live.connect() as c:
        root = await c.walk_path(b"")
        for bad in (b".", b"..", b"a/b", b"nul\0byte", b""):
            await expect_errno(errno.EINVAL, c.mkdir(root, bad))
        await expect_errno(errno.EEXIST, c.mkdir(root, b".snapshots"))
        await c.makedirs(b"sub")
        sub = await c.walk_path(b"sub")
        await c.mkdir(sub, b".snapshots")  # only the export root reserves it
        await c.write_file(b"name-\xff\xfe-not-utf8", b"bytes")
        names = {e.name for e in await c.listdir(b"")}
        assert b"name-\xff\xfe-not-utf8" in names


async def test_dotdot_never_escapes_the_export(live):
    async with live.connect() as c:
        fid = c.alloc_fid()
        qids = await c.walk(c.root_fid, fid, [b".."] * 16)
        assert all(q.path == c.root_qid.path for q in qids)


async def test_read_only_export_and_squash(tmp_path, nursery):
    config = parse_config(
        {
            "server": {"commit_interval": 0.05},
            "exports": {
                "main": {"squash": "all", "anon_uid": 4000, "anon_gid": 4000},
                "ro": {"read_only": True},
                "local": {"allow": ["10.99.0.0/16"]},
                "rootsq": {"squash": "root", "anon_uid": 5000, "anon_gid": 5000},
            },
        }
    )
    live = await start_live(tmp_path, nursery, config)
    for name in ("ro", "local", "rootsq"):
        live.store.create_dataset(name)
    for name in ("main", "rootsq"):  # squashed clients need a world-writable root
        vol = live.store.volume(name)
        vol.setattr(vol.root, mode=stat.S_IFDIR | 0o777)
    try:
        async with live.connect(uid=0) as c:
            await c.write_file(b"squashed", b"")
            st = await c.stat(b"squashed")
            assert (st.uid, st.gid) == (4000, 4000)
        async with live.connect(uid=0, aname=b"rootsq") as c:
            await c.write_file(b"f", b"")
            assert (await c.stat(b"f")).uid == 5000
        async with live.connect(uid=1000, aname=b"rootsq") as c:
            await c.write_file(b"g", b"")
            assert (await c.stat(b"g")).uid == 1000  # only root is squashed
        async with live.connect(uid=0, aname=b"ro") as c:
            root = await c.walk_path(b"")
            await expect_errno(errno.EROFS, c.mkdir(root, b"x"))
            await expect_errno(errno.EROFS, c.lcreate(root, b"x", O.RDWR, 0o644))
            await expect_errno(errno.EROFS, c.setattr(await c.walk_path(b""), mode=0o700))
            assert [e.name for e in await c.listdir(b"")] == [b".snapshots"]
        async with live.connect(uid=0, attach=False) as c:
            await expect_errno(errno.EACCES, c.attach(1, b"root", b"local", 0))
    finally:
        await live.server.shutdown()
        live.store.close()
