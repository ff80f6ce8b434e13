"""Every 9P2000.L message against a live in-process server, with error cases."""

from __future__ import annotations

import errno
import stat

import pytest
import trio

from ninep_server import protocol as p
from ninep_server.client import NinepError

O = p.OpenFlags


async def expect_errno(code: int, coro):
    with pytest.raises(NinepError) as info:
        await coro
    assert info.value.errno == code, f"expected {errno.errorcode[code]}, got {info.value}"


async def test_unix_socket_is_private_and_serves(live):
    import os

    path = live.unix[5:]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    async with live.connect(address=live.unix) as c:
        await c.write_file(b"via-unix", b"hello")
    async with live.connect() as c:
        assert await c.read_file(b"via-unix") == b"hello"


async def test_attach_errors(live):
    async with live.connect(attach=False) as c:
        await expect_errno(errno.ENOENT, c.attach(1, b"root", b"nosuchdataset", 0))
        await expect_errno(errno.ENOENT, c.auth(2, b"root", b"", 0))  # no auth required
        await c.attach(1, b"root", b"main", 0)
        await expect_errno(errno.EBADF, c.attach(1, b"root", b"main", 0))  # fid in use
        await c.attach(3, b"root", b"/main", 0)  # a leading slash is fine


async def test_requests_before_version_are_refused(live):
    async with live.connect(negotiate=False) as c:
        await expect_errno(errno.EPROTO, c.attach(1, b"root", b"", 0))


async def test_walk(live):
    async with live.connect() as c:
        await c.makedirs(b"a/b/c")
        await c.write_file(b"a/file", b"x")
        fid = c.alloc_fid()
        qids = await c.walk(c.root_fid, fid, [b"a", b"b", b"c"])
        assert len(qids) == 3 and all(q.type & p.QidType.DIR for q in qids)
        assert len({q.path for q in qids}) == 3
        # ".." goes up, and is clamped at the root of the export
        up = c.alloc_fid()
        qids2 = await c.walk(fid, up, [b"..", b"..", b"..", b"..", b".."])
        assert qids2[-1].path == c.root_qid.path
        # walking through a file
        await expect_errno(errno.ENOTDIR, c.walk(c.root_fid, c.alloc_fid(), [b"a", b"file", b"x"][1:]) if False else c.walk(await c.walk_path(b"a/file"), c.alloc_fid(), [b"x"]))
        # partial walk: newfid is not created
        newfid = c.alloc_fid()
        assert len(await c.walk(c.root_fid, newfid, [b"a", b"nope", b"x"])) == 1
        await expect_errno(errno.EBADF, c.getattr(newfid))
        # newfid in use, unknown fid, walking from an open fid
        await expect_errno(errno.EBADF, c.walk(c.root_fid, fid, [b"a"]))
        await expect_errno(errno.EBADF, c.walk(999, c.alloc_fid(), []))
        d = await c.open(b"a", p.OpenFlags.RDONLY)
        await expect_errno(errno.EBADF, c.walk(d.fid, d.fid, [b"file"]))  # an open fid in place
        assert len(await c.walk(d.fid, c.alloc_fid(), [b"file"])) == 1  # cloning is allowed, as in diod
        # over-long name
        await expect_errno(errno.ENAMETOOLONG, c.walk(c.root_fid, c.alloc_fid(), [b"x" * 256]))
        # clone with nwname 0, and walk to self (fid == newfid)
        clone = c.alloc_fid()
        assert await c.walk(fid, clone, []) == []
        assert await c.walk(clone, clone, [b".."]) != []


async def test_lopen_lcreate_read_write(live):
    async with live.connect() as c:
        dfid = await c.walk_path(b"")
        qid, iounit = await c.lcreate(dfid, b"new", O.RDWR, 0o640)
        assert iounit == 0 and qid.type == p.QidType.FILE
        assert await c.write(dfid, 0, b"hello world") == 11
        assert await c.read(dfid, 6, 100) == b"world"
        assert await c.read(dfid, 100, 10) == b""
        await c.clunk(dfid)
        st = await c.stat(b"new")
        assert stat.S_IMODE(st.mode) == 0o640 and st.size == 11
        # EEXIST on create, EISDIR on write-open of a directory, ELOOP on a symlink
        dfid = await c.walk_path(b"")
        await expect_errno(errno.EEXIST, c.lcreate(dfid, b"new", O.RDWR, 0o644))
        await expect_errno(errno.EINVAL, c.lcreate(dfid, b"a/b", O.RDWR, 0o644))
        await expect_errno(errno.EINVAL, c.lcreate(dfid, b"..", O.RDWR, 0o644))
        await expect_errno(errno.ENAMETOOLONG, c.lcreate(dfid, b"n" * 256, O.RDWR, 0o644))
        await expect_errno(errno.EISDIR, c.lopen(dfid, O.RDWR))
        await c.clunk(dfid)
        # O_TRUNC, O_APPEND
        f = await c.open(b"new", O.WRONLY | O.TRUNC)
        await c.clunk(f.fid)
        assert (await c.stat(b"new")).size == 0
        await c.write_file(b"log", b"one\n")
        f = await c.open(b"log", O.WRONLY | O.APPEND)
        await c.write(f.fid, 0, b"two\n")
        await c.clunk(f.fid)
        assert await c.read_file(b"log") == b"one\ntwo\n"
        # reading a write-only fid, writing a read-only fid, a fid opened twice
        f = await c.open(b"log", O.WRONLY)
        await expect_errno(errno.EBADF, c.read(f.fid, 0, 10))
        await expect_errno(errno.EBADF, c.lopen(f.fid, O.RDONLY))
        await c.clunk(f.fid)
        f = await c.open(b"log", O.RDONLY)
        await expect_errno(errno.EBADF, c.write(f.fid, 0, b"x"))
        await c.clunk(f.fid)
        # unopened fid
        fid = await c.walk_path(b"log")
        await expect_errno(errno.EBADF, c.read(fid, 0, 1))


async def test_read_never_exceeds_msize(live):
    async with live.connect(msize=8192) as c:
        await c.write_file(b"big", bytes(100_000))
        f = await c.open(b"big")
        reply = await c.rpc(p.Tread(fid=f.fid, offset=0, count=1 << 20))
        assert len(p.encode(reply)) <= 8192 and len(reply.data) == 8192 - 11


async def test_large_msize_accepted(live):
    async with live.connect(msize=1 << 20) as c:
        assert c.msize == 1 << 20
        data = bytes(range(256)) * 4096  # 1 MiB
        await c.write_file(b"m", data)
        assert await c.read_file(b"m") == data
    async with live.connect(msize=8 << 20) as c:
        assert c.msize == p.MAX_MSIZE


async def test_readdir_offsets_are_stable(live):
    async with live.connect() as c:
        await c.makedirs(b"d")
        for i in range(50):
            await c.write_file(f"d/f{i:02d}".encode(), b"")
        f = await c.open(b"d", O.RDONLY | O.DIRECTORY)
        first = await c.readdir(f.fid, 0, 300)
        assert first and first[0].name == b"." and first[1].name == b".."
        # Mutate the directory mid-listing: remove seen and unseen entries, add new ones.
        seen = {e.name for e in first}
        for i in range(50):
            name = f"f{i:02d}".encode()
            if name in seen and i % 2 == 0:
                await c.unlink(b"d/" + name)
        await c.write_file(b"d/zz-new", b"")
        rest, offset = [], first[-1].offset
        while batch := await c.readdir(f.fid, offset, 300):
            rest += batch
            offset = batch[-1].offset
        names = [e.name for e in first + rest]
        assert len(names) == len(set(names)), "an entry repeated"
        unseen_survivors = {f"f{i:02d}".encode() for i in range(50)} - seen
        assert unseen_survivors <= set(names), "an entry that was never removed vanished"
        # re-reading from a remembered offset gives the same continuation
        again = await c.readdir(f.fid, first[-1].offset, 300)
        assert [e.name for e in again] == [e.name for e in rest[: len(again)]]
        await expect_errno(errno.EINVAL, c.readdir(f.fid, 0, 5))  # not even "." fits


async def test_getattr_setattr(live):
    async with live.connect() as c:
        await c.write_file(b"f", b"12345")
        fid = await c.walk_path(b"f")
        st = await c.getattr(fid)
        assert st.valid & p.GetattrMask.BASIC == p.GetattrMask.BASIC
        assert st.size == 5 and st.nlink == 1 and stat.S_ISREG(st.mode)
        await c.setattr(fid, mode=0o600, uid=1000, gid=1000, size=2, atime=1_000_000_123, mtime=2_000_000_456)
        st = await c.getattr(fid)
        assert stat.S_IMODE(st.mode) == 0o600 and (st.uid, st.gid) == (1000, 1000) and st.size == 2
        assert (st.atime_sec, st.atime_nsec, st.mtime_sec, st.mtime_nsec) == (1, 123, 2, 456)
        before = st.ctime_sec * 10**9 + st.ctime_nsec
        await trio.sleep(0.01)
        await c.setattr(fid, mtime=True, atime=True)
        st = await c.getattr(fid)
        assert st.mtime_sec > 2 and st.ctime_sec * 10**9 + st.ctime_nsec > before
        dfid = await c.walk_path(b"")
        await expect_errno(errno.EISDIR, c.setattr(dfid, size=0))


async def test_qid_version_changes_with_content(live):
    async with live.connect() as c:
        await c.write_file(b"v", b"one")
        q1 = (await c.stat(b"v")).qid
        await c.write_file(b"v", b"two")
        q2 = (await c.stat(b"v")).qid
        assert q1.path == q2.path and q1.version != q2.version and q2.version != 0


async def test_statfs(live):
    async with live.connect() as c:
        fid = await c.walk_path(b"")
        s = await c.statfs(fid)
        assert s.type == 0x01021997 and s.namelen == 255 and s.bsize > 0 and s.blocks >= s.bfree


async def test_symlink_readlink_mknod_link(live):
    async with live.connect() as c:
        dfid = await c.walk_path(b"")
        q = await c.symlink(dfid, b"ln", b"target/with/../dots")
        assert q.type == p.QidType.SYMLINK
        assert await c.readlink(await c.walk_path(b"ln")) == b"target/with/../dots"
        await expect_errno(errno.EEXIST, c.symlink(dfid, b"ln", b"x"))
        await c.mknod(dfid, b"fifo", stat.S_IFIFO | 0o644)
        await c.mknod(dfid, b"sock", stat.S_IFSOCK | 0o644)
        await c.mknod(dfid, b"chr", stat.S_IFCHR | 0o644, 1, 3)
        st = await c.stat(b"chr")
        assert stat.S_ISCHR(st.mode) and st.rdev == (1 << 8 | 3)
        assert stat.S_ISFIFO((await c.stat(b"fifo")).mode)
        await c.write_file(b"orig", b"data")
        ofid = await c.walk_path(b"orig")
        await c.link(dfid, ofid, b"hard")
        assert (await c.stat(b"orig")).nlink == 2
        assert await c.read_file(b"hard") == b"data"
        await expect_errno(errno.EPERM, c.link(dfid, await c.walk_path(b""), b"dirlink"))
        await expect_errno(errno.EEXIST, c.link(dfid, ofid, b"hard"))


async def test_mkdir_unlinkat_remove(live):
    async with live.connect() as c:
        dfid = await c.walk_path(b"")
        await c.mkdir(dfid, b"d", 0o755)
        await c.write_file(b"d/f", b"")
        await expect_errno(errno.EEXIST, c.mkdir(dfid, b"d"))
        await expect_errno(errno.ENOTEMPTY, c.unlinkat(dfid, b"d", p.AT_REMOVEDIR))
        await expect_errno(errno.EISDIR, c.unlinkat(dfid, b"d", 0))
        d = await c.walk_path(b"d")
        await expect_errno(errno.ENOTDIR, c.unlinkat(d, b"f", p.AT_REMOVEDIR))
        await c.unlinkat(d, b"f", 0)
        await expect_errno(errno.ENOENT, c.unlinkat(d, b"f", 0))
        await c.unlinkat(dfid, b"d", p.AT_REMOVEDIR)
        # Tremove clunks the fid even when it fails
        await c.write_file(b"gone", b"")
        fid = await c.walk_path(b"gone")
        await c.remove(fid)
        assert not await c.exists(b"gone")
        await expect_errno(errno.EBADF, c.getattr(fid))


async def test_rename_and_renameat(live):
    async with live.connect() as c:
        await c.makedirs(b"a/sub")
        await c.makedirs(b"b")
        await c.write_file(b"a/f", b"F")
        a, b = await c.walk_path(b"a"), await c.walk_path(b"b")
        await c.renameat(a, b"f", b, b"g")
        assert await c.read_file(b"b/g") == b"F"
        await c.write_file(b"b/h", b"H")
        await c.renameat(b, b"g", b, b"h")  # over an existing file
        assert await c.read_file(b"b/h") == b"F"
        await expect_errno(errno.EINVAL, c.renameat(a, b"sub", await c.walk_path(b"a/sub"), b"inside"))
        await expect_errno(errno.EINVAL, c.renameat(b, b"h", b, b"x/y"))
        await expect_errno(errno.ENOENT, c.renameat(b, b"nope", b, b"x"))
        # Trename moves the fid's file and the fid follows it
        fid = await c.walk_path(b"b/h")
        await c.rename(fid, a, b"moved")
        assert await c.read_file(b"a/moved") == b"F"
        await c.lopen(fid, O.RDONLY)
        assert await c.read(fid, 0, 10) == b"F"


async def test_fsync(live):
    async with live.connect() as c:
        f = await c.create(b"durable", O.RDWR)
        await c.write(f.fid, 0, b"safe")
        await c.fsync(f.fid)
        await c.clunk(f.fid)


async def test_xattrs(live):
    async with live.connect() as c:
        await c.write_file(b"x", b"")
        fid = await c.walk_path(b"x")
        # set
        xfid = c.alloc_fid()
        await c.walk(fid, xfid, [])
        await c.xattrcreate(xfid, b"user.color", 4, 0)
        await c.write(xfid, 0, b"blue")
        await c.clunk(xfid)
        # get
        xfid = c.alloc_fid()
        size = await c.xattrwalk(fid, xfid, b"user.color")
        assert size == 4 and await c.read(xfid, 0, 100) == b"blue"
        await c.clunk(xfid)
        # list
        xfid = c.alloc_fid()
        size = await c.xattrwalk(fid, xfid, b"")
        assert await c.read(xfid, 0, size) == b"user.color\0"
        await c.clunk(xfid)
        # missing is ENODATA
        await expect_errno(errno.ENODATA, c.xattrwalk(fid, c.alloc_fid(), b"user.none"))
        # XATTR_CREATE on an existing name fails at clunk
        xfid = c.alloc_fid()
        await c.walk(fid, xfid, [])
        await c.xattrcreate(xfid, b"user.color", 1, p.XattrFlags.CREATE)
        await c.write(xfid, 0, b"r")
        await expect_errno(errno.EEXIST, c.clunk(xfid))
        # removexattr as Linux sends it: size 0 with XATTR_REPLACE
        xfid = c.alloc_fid()
        await c.walk(fid, xfid, [])
        await c.xattrcreate(xfid, b"user.color", 0, p.XattrFlags.REPLACE)
        await c.clunk(xfid)
        await expect_errno(errno.ENODATA, c.xattrwalk(fid, c.alloc_fid(), b"user.color"))
        # writing more than announced
        xfid = c.alloc_fid()
        await c.walk(fid, xfid, [])
        await c.xattrcreate(xfid, b"user.small", 2, 0)
        await expect_errno(errno.ERANGE, c.write(xfid, 0, b"toolong"))
        await expect_errno(errno.EINVAL, c.clunk(xfid))  # fewer bytes than announced
        await expect_errno(errno.ENODATA, c.xattrwalk(fid, c.alloc_fid(), b"user.small"))
        # namespaces
        xfid = c.alloc_fid()
        await c.walk(fid, xfid, [])
        await expect_errno(errno.EOPNOTSUPP, c.xattrcreate(xfid, b"bogus.ns", 1, 0))
        await expect_errno(errno.E2BIG, c.xattrcreate(xfid, b"user.big", 70000, 0))


async def test_locks_between_connections(live):
    async with live.connect() as c1, live.connect() as c2:
        await c1.write_file(b"lk", b"")
        f1 = await c1.open(b"lk", O.RDWR)
        f2 = await c2.open(b"lk", O.RDWR)
        W, R, U = p.LockType.WRLCK, p.LockType.RDLCK, p.LockType.UNLCK
        assert await c1.lock(f1.fid, W, 0, 10, proc_id=1) == p.LockStatus.SUCCESS
        assert await c2.lock(f2.fid, W, 5, 1, proc_id=1) == p.LockStatus.BLOCKED
        assert await c2.lock(f2.fid, R, 10, 0, proc_id=1) == p.LockStatus.SUCCESS  # beyond the range
        got = await c2.getlock(f2.fid, W, 0, 0, proc_id=1)
        assert got.type == W and (got.start, got.length) == (0, 10)
        # a blocking request is held until the holder releases
        granted_at = None

        async def waiter():
            nonlocal granted_at
            status = await c2.lock(f2.fid, W, 0, 5, flags=p.LockFlags.BLOCK, proc_id=1)
            assert status == p.LockStatus.SUCCESS
            granted_at = trio.current_time()

        async with trio.open_nursery() as n:
            n.start_soon(waiter)
            await trio.sleep(0.3)
            assert granted_at is None
            released_at = trio.current_time()
            assert await c1.lock(f1.fid, U, 0, 0, proc_id=1) == p.LockStatus.SUCCESS
        assert granted_at - released_at < 2
        # a blocked request is cancelled by Tflush
        pending = await c1.start(
            p.Tlock(fid=f1.fid, type=W, flags=p.LockFlags.BLOCK, start=0, length=5, proc_id=1, client_id=b"c1")
        )
        await trio.sleep(0.1)
        assert not pending.done
        await c1.flush(pending)
        assert not pending.done
        # session end releases the locks it held
    async with live.connect() as c3:
        f3 = await c3.open(b"lk", O.RDWR)
        assert await c3.lock(f3.fid, p.LockType.WRLCK, 0, 0, proc_id=9) == p.LockStatus.SUCCESS


async def test_two_clients_see_each_other(live):
    async with live.connect() as c1, live.connect(address=live.unix) as c2:
        await c1.write_file(b"shared", b"from one")
        assert await c2.read_file(b"shared") == b"from one"
        await c2.makedirs(b"made/by/two")
        assert {e.name for e in await c1.listdir(b"made/by")} == {b"two"}
        await c2.unlink(b"shared")
        assert not await c1.exists(b"shared")


async def test_open_unlinked_file_stays_usable(live):
    async with live.connect() as c:
        f = await c.create(b"tmp", O.RDWR)
        await c.write(f.fid, 0, b"before")
        await c.unlink(b"tmp")
        assert not await c.exists(b"tmp")
        await c.write(f.fid, 6, b"+after")
        assert await c.read(f.fid, 0, 100) == b"before+after"
        st = await c.getattr(f.fid)
        assert st.nlink == 0 and st.size == 12
        await c.setattr(f.fid, size=3)
        assert await c.read(f.fid, 0, 100) == b"bef"
        await c.clunk(f.fid)
    assert live.store.check() == []


async def test_unknown_message_type_gets_eopnotsupp(live):
    async with live.connect() as c:
        # 9P2000's Topen (112) is not part of 9P2000.L
        frame = (11).to_bytes(4, "little") + bytes([112]) + (7).to_bytes(2, "little") + (1).to_bytes(4, "little")
        pending = c._pending
        from ninep_server.client import PendingRequest

        req = PendingRequest(c, 7, p.Tclunk(fid=1))
        pending[7] = req
        await c._stream.send_all(frame)
        reply = await req.reply()
        assert isinstance(reply, p.Rlerror) and reply.ecode == errno.EOPNOTSUPP


async def test_version_resets_the_session(live):
    async with live.connect() as c:
        await c.write_file(b"f", b"")
        fid = await c.walk_path(b"f")
        await c.negotiate(65536)
        await expect_errno(errno.EBADF, c.getattr(fid))
        assert c.msize == 65536
