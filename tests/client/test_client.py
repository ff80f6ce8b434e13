"""The async client against real 9P2000.L servers (diod and ninep)."""

from __future__ import annotations

import errno
import stat

import pytest
import trio

from ninep_server import protocol as p
from ninep_server.client import NinepError, connect


def _connect(server, **kw):
    kw.setdefault("uname", b"root")
    kw.setdefault("n_uname", 0)
    return connect(server.address, aname=server.aname, **kw)


async def test_version_negotiation_clamps_msize(server):
    async with _connect(server, msize=4 << 20) as c:
        assert c.version == p.VERSION_9P2000L
        limit = 65536 if server.kind == "diod" else p.MAX_MSIZE
        assert c.msize <= limit
    async with _connect(server, msize=16384) as c:
        assert c.msize == 16384


async def test_unknown_version_is_refused(server):
    async with _connect(server, negotiate=False) as c:
        if server.kind == "diod":  # diod answers Rlerror(EIO) rather than "unknown"
            with pytest.raises(NinepError):
                await c.negotiate(65536, b"9P3000.X")
        else:
            reply = await c.negotiate(65536, b"9P3000.X")
            assert reply.version == p.VERSION_UNKNOWN
        reply = await c.negotiate(65536, p.VERSION_9P2000L)
        assert reply.version == p.VERSION_9P2000L


async def test_attach_walk_open_read_write(server):
    async with _connect(server) as c:
        assert c.root_qid.type & p.QidType.DIR
        await c.makedirs(b"a/b/c")
        payload = bytes(range(256)) * 1000  # several msize-sized writes
        await c.write_file(b"a/b/c/file", payload)
        assert await c.read_file(b"a/b/c/file") == payload
        f = await c.open(b"a/b/c/file", p.OpenFlags.RDWR)
        assert not f.qid.type & p.QidType.DIR
        assert await c.write(f.fid, 10, b"XY") == 2
        assert await c.read(f.fid, 8, 6) == payload[8:10] + b"XY" + payload[12:14]
        await c.clunk(f.fid)
        st = await c.stat(b"a/b/c/file")
        assert stat.S_ISREG(st.mode) and st.size == len(payload)
        assert st.valid & p.GetattrMask.BASIC == p.GetattrMask.BASIC
        assert stat.S_ISDIR((await c.stat(b"a/b")).mode)


async def test_walk_missing_is_enoent(server):
    async with _connect(server) as c:
        with pytest.raises(NinepError) as info:
            await c.walk_path(b"no/such/file")
        assert info.value.errno == errno.ENOENT
        # A failing first name is an error; a later one is a partial walk.
        with pytest.raises(NinepError) as info:
            await c.walk(c.root_fid, c.alloc_fid(), [b"nope"])
        assert info.value.errno == errno.ENOENT
        await c.makedirs(b"x")
        newfid = c.alloc_fid()
        qids = await c.walk(c.root_fid, newfid, [b"x", b"nope"])
        assert len(qids) == 1 and qids[0].type & p.QidType.DIR
        if server.kind == "ninep":  # a partial walk must not create newfid (diod keeps it)
            with pytest.raises(NinepError):
                await c.getattr(newfid)


async def test_readdir_lists_every_entry(server):
    async with _connect(server) as c:
        await c.makedirs(b"d")
        names = {f"f{i:03d}".encode() for i in range(150)}
        for name in names:
            await c.write_file(b"d/" + name, name)
        entries = await c.listdir(b"d")
        assert {e.name for e in entries} == names
        with_dots = await c.listdir(b"d", with_dots=True)
        assert {b".", b".."} <= {e.name for e in with_dots}
        offsets = [e.offset for e in with_dots]
        assert len(set(offsets)) == len(offsets)


async def test_tags_are_reused_after_reply(server):
    async with _connect(server) as c:
        first = await c.start(p.Tgetattr(fid=c.root_fid, request_mask=p.GetattrMask.BASIC))
        await first.result()
        second = await c.start(p.Tgetattr(fid=c.root_fid, request_mask=p.GetattrMask.BASIC))
        await second.result()
        assert first.tag == second.tag


async def test_32_concurrent_requests_on_one_connection(server):
    async with _connect(server) as c:
        for i in range(32):
            await c.write_file(f"f{i}".encode(), f"content {i}".encode())
        fids = [await c.walk_path(f"f{i}") for i in range(32)]
        batch = await c.start_many([p.Tgetattr(fid=fid, request_mask=p.GetattrMask.ALL) for fid in fids])
        assert len({pd.tag for pd in batch}) == 32  # all 32 in flight at once, distinct tags
        for i, pd in reversed(list(enumerate(batch))):
            reply = await pd.result()
            assert reply.size == len(f"content {i}")
        results = {}

        async def read_one(i):
            results[i] = await c.read_file(f"f{i}")

        async with trio.open_nursery() as nursery:
            for i in range(32):
                nursery.start_soon(read_one, i)
        assert results == {i: f"content {i}".encode() for i in range(32)}


async def test_flush(server):
    async with _connect(server) as c:
        pending = await c.start(p.Tgetattr(fid=c.root_fid, request_mask=p.GetattrMask.ALL))
        await c.flush(pending)
        if pending.done:  # the server replied before it saw the flush: the reply stands
            assert isinstance(await pending.reply(), p.Rgetattr)
        # Flushing a tag that is not in use is answered too.
        await c.rpc(p.Tflush(oldtag=4321))
        # The connection remains usable and the tag is free again.
        again = await c.start(p.Tgetattr(fid=c.root_fid, request_mask=p.GetattrMask.ALL))
        assert isinstance(await again.result(), p.Rgetattr)


async def test_errors_carry_errno(server):
    async with _connect(server) as c:
        await c.write_file(b"plain", b"x")
        with pytest.raises(NinepError) as info:
            await c.makedirs(b"plain/sub")
        assert info.value.errno == errno.ENOTDIR
        dfid = await c.walk_path(b"")
        with pytest.raises(NinepError) as info:
            await c.mkdir(dfid, b"plain")
        assert info.value.errno == errno.EEXIST
        await c.clunk(dfid)
