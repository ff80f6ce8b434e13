"""Extreme values in requests: a precise errno at request time, or stored exactly (issue 15).

Each test also checks that the store keeps committing afterwards: before
these checks one Tsetattr with a time before 1970 stopped every commit.
"""

from __future__ import annotations

import errno
import os

import pytest
import structlog
import trio

from ninep_server import protocol as p
from ninep_server.ratelimit import LogLimiter

from .test_messages import expect_errno

S = 1_000_000_000
O = p.OpenFlags


async def _committed(live) -> None:
    """The store still commits, and is consistent."""
    await live.server.commit()
    assert live.store.check() == []


async def test_times_before_1970_round_trip(live):
    # 1969-12-31T00:00:00.000000123Z, and the earliest/latest the catalog holds.
    cases = [(-86400, 123), (-1, 999_999_999), (-9223372037, 145224192), (9223372036, 854775807)]
    async with live.connect() as c:
        await c.write_file(b"old", b"x")
        async with c.fid(b"old") as fid:
            for sec, nsec in cases:
                await c.setattr(fid, atime=sec * S + nsec, mtime=sec * S + nsec)
                st = await c.getattr(fid)
                assert (st.atime_sec, st.atime_nsec) == (sec, nsec)
                assert (st.mtime_sec, st.mtime_nsec) == (sec, nsec)
            await c.setattr(fid, atime=-86400 * S + 5, mtime=-86400 * S + 7)
            await c.fsync(fid)
    await _committed(live)
    vol = live.store.volume("main")
    vol.evict_all()
    attr = vol.getattr(vol.lookup(vol.root, b"old").ino)
    assert (attr.atime_ns, attr.mtime_ns) == (-86400 * S + 5, -86400 * S + 7)


async def test_times_the_catalog_cannot_hold_are_einval(live):
    async with live.connect() as c:
        await c.write_file(b"f", b"x")
        async with c.fid(b"f") as fid:
            before = await c.getattr(fid)
            v = p.SetattrValid
            # One nanosecond past each end of the catalog's range, far past, bad nanoseconds.
            for sec, nsec in [(9223372036, 854775808), (-9223372037, 145224191), (2**63 - 1, 0),
                              (-(2**63), 0), (0, S), (0, 2**64 - 1), (-1, S)]:
                for valid in (v.ATIME | v.ATIME_SET, v.MTIME | v.MTIME_SET, v.ATIME | v.ATIME_SET | v.MTIME):
                    msg = p.Tsetattr(fid=fid, valid=valid, atime_sec=sec, atime_nsec=nsec,
                                     mtime_sec=sec, mtime_nsec=nsec)
                    await expect_errno(errno.EINVAL, c.rpc(msg))
            # Without *_SET the values are not used ("now"): accepted whatever they are.
            await c.rpc(p.Tsetattr(fid=fid, valid=v.MTIME, mtime_sec=2**63 - 1, mtime_nsec=2**64 - 1))
            after = await c.getattr(fid)
            assert after.mtime_sec >= before.mtime_sec and after.atime_sec == before.atime_sec
            await c.fsync(fid)
    await _committed(live)


async def test_size_beyond_the_maximum_is_efbig(live):
    limit = live.store.max_file_size
    async with live.connect() as c:
        await c.write_file(b"f", b"data")
        async with c.fid(b"f") as fid:
            for size in (limit + 1, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1):
                await expect_errno(errno.EFBIG, c.setattr(fid, size=size))
            assert (await c.getattr(fid)).size == 4
            await c.setattr(fid, size=limit)  # the maximum itself is a (sparse) file
            assert (await c.getattr(fid)).size == limit
            await c.setattr(fid, size=2)
            await c.fsync(fid)
        assert await c.read_file(b"f") == b"da"
    await _committed(live)


async def test_mknod_device_numbers(live):
    with structlog.testing.capture_logs() as logs:
        async with live.connect() as c:
            for i, (major, minor) in enumerate([(4096, 0), (0, 2**20), (2**32 - 1, 2**32 - 1), (2**31, 1)]):
                await expect_errno(errno.EINVAL, c.mknod(c.root_fid, b"dev%d" % i, 0o20644, major, minor))
            await c.mknod(c.root_fid, b"maxdev", 0o60600, 4095, 2**20 - 1)
            st = await c.stat(b"maxdev")
            assert st.rdev == os.makedev(4095, 2**20 - 1)
            assert not await c.exists(b"dev0")
    assert [e for e in logs if e["log_level"] == "error"] == []
    await _committed(live)


async def test_owner_minus_one_means_unchanged(live):
    async with live.connect() as c:
        await c.write_file(b"f", b"x")
        async with c.fid(b"f") as fid:
            await c.setattr(fid, uid=1234, gid=5678)
            await c.setattr(fid, uid=0xFFFFFFFF, gid=0xFFFFFFFF)
            st = await c.getattr(fid)
            assert (st.uid, st.gid) == (1234, 5678)
            await c.setattr(fid, gid=0xFFFFFFFE)  # any other u32 is a real id, stored as given
            assert (await c.getattr(fid)).gid == 0xFFFFFFFE
    await _committed(live)


@pytest.mark.parametrize("version", [b"9P2000.Lx", b"9P2000.L.u", b"9P2000.u", b"9P2000", b"9p2000.l", b""])
async def test_only_the_exact_version_is_accepted(live, version):
    async with live.connect(negotiate=False) as c:
        reply = await c.negotiate(8192, version)
        assert reply.version == p.VERSION_UNKNOWN
        assert reply.msize <= 8192
        await expect_errno(errno.EPROTO, c.attach(1, b"root", b"", 0))
        reply = await c.negotiate(8192)
        assert (reply.version, reply.msize) == (p.VERSION_9P2000L, 8192)
        await c.attach(1, b"root", b"", 0)


async def test_refused_version_never_offers_more_than_asked(live):
    async with live.connect(negotiate=False) as c:
        for msize in (0, 7, 4095, 65536):
            reply = await c.start(p.Tversion(msize=msize, version=b"9P2000.Lx"), tag=p.NOTAG)
            got = await reply.result()
            assert got.version == p.VERSION_UNKNOWN and got.msize <= msize
        got = await (await c.start(p.Tversion(msize=100, version=p.VERSION_9P2000L), tag=p.NOTAG)).result()
        assert got.version == p.VERSION_UNKNOWN and got.msize <= 100  # below the minimum msize


async def test_getlock_validates_the_type(live):
    async with live.connect() as c:
        await c.write_file(b"f", b"x")
        f = await c.open(b"f", O.RDWR)
        for bad in (3, 4, 127, 255):
            await expect_errno(errno.EINVAL, c.getlock(f.fid, bad))
        got = await c.getlock(f.fid, p.LockType.WRLCK, 2**64 - 1, 2**64 - 1)
        assert got.type == p.LockType.UNLCK
        await c.clunk(f.fid)


async def test_attach_with_nofid_is_refused(live):
    async with live.connect(attach=False) as c:
        await expect_errno(errno.EBADF, c.attach(p.NOFID, b"root", b"", 0))
        await c.attach(1, b"root", b"", 0)
        # and NOFID was not attached by the failed request
        await expect_errno(errno.EBADF, c.rpc(p.Tclunk(fid=p.NOFID)))


async def test_nofid_never_names_a_new_fid(live):
    """Twalk and Txattrwalk refuse NOFID as their newfid: it means "no fid"."""
    async with live.connect() as c:
        await c.write_file(b"f", b"x")
        await expect_errno(errno.EBADF, c.rpc(p.Twalk(fid=c.root_fid, newfid=p.NOFID, wnames=[b"f"])))
        await expect_errno(errno.EBADF, c.rpc(p.Twalk(fid=c.root_fid, newfid=p.NOFID, wnames=[])))
        await expect_errno(errno.EBADF, c.rpc(p.Txattrwalk(fid=c.root_fid, newfid=p.NOFID, name=b"")))
        await expect_errno(errno.EBADF, c.rpc(p.Tclunk(fid=p.NOFID)))
        assert await c.read_file(b"f") == b"x"


@pytest.mark.parametrize("flags", [0x1, 0x100, 0x200 | 0x1, 2**32 - 1])
async def test_unlinkat_with_unknown_flags_is_einval(live, flags):
    async with live.connect() as c:
        await c.write_file(b"f", b"x")
        await c.mkdir(c.root_fid, b"d", 0o755)
        for name in (b"f", b"d"):
            await expect_errno(errno.EINVAL, c.rpc(p.Tunlinkat(dirfid=c.root_fid, name=name, flags=flags)))
        await expect_errno(errno.EINVAL, c.rpc(p.Tunlinkat(dirfid=c.root_fid, name=b".snapshots", flags=flags)))
        assert {b"d", b"f"} <= {e.name for e in await c.listdir(b"")}
        await c.rpc(p.Tunlinkat(dirfid=c.root_fid, name=b"f", flags=0))
        await c.rpc(p.Tunlinkat(dirfid=c.root_fid, name=b"d", flags=p.AT_REMOVEDIR))
    await _committed(live)


def test_log_limiter_lets_a_burst_through_then_a_rate():
    now = [0.0]
    lim = LogLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [lim.allow() for _ in range(5)] == [0, 0, 0, None, None]
    now[0] += 0.5  # one token back
    assert lim.allow() == 2  # and it reports the two lines dropped meanwhile
    assert lim.allow() is None
    now[0] += 100
    assert [lim.allow() for _ in range(4)] == [1, 0, 0, None]


async def test_refused_frames_are_logged_at_a_bounded_rate(live):
    bad = p.encode(p.Tgetattr(fid=1, request_mask=0, tag=5))[:-3]
    bad = len(bad).to_bytes(4, "little") + bad[4:]  # a Tgetattr cut short: Rlerror EINVAL
    port = int(live.tcp.rsplit(":", 1)[1])
    with structlog.testing.capture_logs() as logs:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        started = trio.current_time()
        await stream.send_all(p.encode(p.Tversion(msize=8192, version=p.VERSION_9P2000L, tag=p.NOTAG)))
        await stream.send_all(bad * 300)
        frames = p.FrameBuffer(1 << 20)
        replies = []
        with trio.fail_after(30):
            while len(replies) < 301:
                frames.feed(await stream.receive_some(65536))
                while (frame := frames.next_frame()) is not None:
                    replies.append(p.decode(frame))
        elapsed = trio.current_time() - started
        await stream.aclose()
    assert all(r.ecode == errno.EINVAL for r in replies[1:])
    lines = [e for e in logs if e["event"] == "bad request"]
    limiter = live.server.refusal_log
    assert 1 <= len(lines) <= limiter.burst + limiter.rate * (elapsed + 1)


async def test_connections_closed_for_protocol_violations_are_logged_at_a_bounded_rate(live):
    """A client reconnecting and sending garbage cannot flood the log either."""
    port = int(live.tcp.rsplit(":", 1)[1])
    garbage = (7).to_bytes(4, "little") + bytes([237, 1, 0])  # unknown message type 237
    with structlog.testing.capture_logs() as logs:
        started = trio.current_time()
        for _ in range(100):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(p.encode(p.Tversion(msize=8192, version=p.VERSION_9P2000L, tag=p.NOTAG)))
            await stream.send_all(garbage)
            with trio.fail_after(30):
                while await stream.receive_some(65536):  # Rversion, then the server closes
                    pass
            await stream.aclose()
        elapsed = trio.current_time() - started
    lines = [e for e in logs if e["event"] == "closing connection: protocol violation"]
    limiter = live.server.refusal_log
    assert 1 <= len(lines) <= limiter.burst + limiter.rate * (elapsed + 1)
