"""Resource bounds: one client cannot starve the others (issue 15, section 2).

Each test sets the bound it checks small and asserts behaviour: an errno, a
closed connection, a reply that does or does not arrive, a count of bytes.
None compares a duration with a threshold; ``fail_after`` only turns a hang
into a failure.
"""

from __future__ import annotations

import errno
import gc
import threading
import tracemalloc

import pytest
import trio

from ninep_server import protocol as p
from ninep_server.client import ConnectionClosed, NinepError
from ninep_server.config import ConfigError, ServerConfig

from .conftest import start_live, wait_for

O = p.OpenFlags
R, W, U = p.LockType.RDLCK, p.LockType.WRLCK, p.LockType.UNLCK
HANG = 30  # seconds after which a wait that should end is a failure


@pytest.fixture
async def bounded(tmp_path, nursery):
    """Start a live server with the given limits (small ones, for the test)."""
    started = []

    async def start(**limits):
        live = await start_live(tmp_path, nursery, ServerConfig(commit_interval=0.05, **limits))
        started.append(live)
        return live

    yield start
    for live in started:
        await live.server.shutdown()
        live.store.close()


def _port(live) -> int:
    return int(live.tcp.rsplit(":", 1)[1])


async def _raw(live) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", _port(live))


async def _closed_by_server(stream: trio.SocketStream) -> bool:
    """Read until the server closes the connection (True) or resets it."""
    with trio.fail_after(HANG):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
    return True


def _in_flight(live) -> list[int]:
    return [s["in_flight"] for s in live.server.status()["sessions"]]


# -- locks ---------------------------------------------------------------------


async def test_lock_cap_answers_enolck(bounded):
    live = await bounded(max_locks_per_connection=8)
    async with live.connect() as c, live.connect() as other:
        await c.write_file(b"f", b"")
        f = await c.open(b"f", O.RDWR)
        for i in range(8):
            assert await c.lock(f.fid, R, 2 * i, 1, proc_id=i % 3) == p.LockStatus.SUCCESS
        with pytest.raises(NinepError) as info:
            await c.lock(f.fid, R, 100, 1, proc_id=1)
        assert info.value.errno == errno.ENOLCK
        # growing a lock keeps the count; unlocking lowers it
        assert await c.lock(f.fid, R, 0, 3, proc_id=0) == p.LockStatus.SUCCESS
        assert await c.lock(f.fid, U, 0, 0, proc_id=0) == p.LockStatus.SUCCESS  # proc 0's three locks
        assert await c.lock(f.fid, R, 100, 1, proc_id=1) == p.LockStatus.SUCCESS
        # the cap is per connection: another one still gets its own locks
        g = await other.open(b"f", O.RDWR)
        for i in range(8):
            assert await other.lock(g.fid, R, 1000 + 2 * i, 1, proc_id=7) == p.LockStatus.SUCCESS
        got = await other.getlock(g.fid, W, 0, 0, proc_id=7)
        assert got.type == R and got.client_id == b"ninep-client"


async def test_waiting_locks_are_capped_and_never_block_the_connection(bounded):
    """More blocking Tlocks than the caps: the extra ones are answered BLOCKED.

    The holder's unlock comes after all of them on the same connection, so if
    waiting locks could hold every request slot the server would stop reading
    before the unlock: a deadlock. Here every request gets its reply.
    """
    live = await bounded(max_requests_per_connection=8, max_lock_waits_per_connection=4)
    assert live.server.config.lock_waits_per_connection == 4
    async with live.connect() as c, live.connect() as bystander:
        await c.write_file(b"f", b"")
        f = await c.open(b"f", O.RDWR)
        assert await c.lock(f.fid, W, 0, 0, proc_id=1) == p.LockStatus.SUCCESS
        waits = [
            p.Tlock(fid=f.fid, type=R, flags=p.LockFlags.BLOCK, start=0, length=0, proc_id=100 + i, client_id=b"c")
            for i in range(20)
        ]
        unlock = p.Tlock(fid=f.fid, type=U, flags=0, start=0, length=0, proc_id=1, client_id=b"ninep-client")
        pending = await c.start_many(waits)
        await wait_for(lambda: sum(x.done for x in pending) == 16, HANG)
        assert _in_flight(live) == [4, 0]  # the four waiting, nothing else
        assert await bystander.stat(b"f")  # other connections are unaffected
        assert await c.stat(b"f")  # and so is this one
        unlocked = await c.start(unlock)
        with trio.fail_after(HANG):
            assert (await unlocked.result()).status == p.LockStatus.SUCCESS
            statuses = [(await x.result()).status for x in pending]
        assert statuses.count(p.LockStatus.BLOCKED) == 16
        assert statuses.count(p.LockStatus.SUCCESS) == 4


async def test_request_cap_stops_reading_and_spares_other_connections(bounded):
    """At max_requests_per_connection the server stops reading that connection.

    Snapshot creations wait for the commit lock, which an admin call holds
    here; the connection pipelines more of them than the cap, then a Tgetattr.
    """
    live = await bounded(max_requests_per_connection=4)
    release = threading.Event()
    async with trio.open_nursery() as nursery:
        held = trio.Event()

        def hold(_ops):
            trio.from_thread.run_sync(held.set)
            release.wait()

        nursery.start_soon(live.server.admin.call, hold)
        await held.wait()
        try:
            async with live.connect() as c, live.connect() as bystander:
                snapdir = await c.walk_path(b".snapshots")
                mkdirs = await c.start_many([p.Tmkdir(dfid=snapdir, name=b"s%d" % i, mode=0o755, gid=0) for i in range(10)])
                after = await c.start(p.Tgetattr(fid=c.root_fid, request_mask=p.GetattrMask.ALL))
                await wait_for(lambda: max(_in_flight(live)) == 4, HANG)
                # the bystander is served while this connection is held back
                await bystander.write_file(b"while-held", b"ok")
                assert await bystander.read_file(b"while-held") == b"ok"
                assert max(_in_flight(live)) == 4  # never more than the cap
                assert not after.done and not any(m.done for m in mkdirs)
                release.set()
                with trio.fail_after(HANG):
                    assert isinstance(await after.result(), p.Rgetattr)
                    for m in mkdirs:
                        assert isinstance(await m.result(), p.Rmkdir)
        finally:
            release.set()
    assert len(live.store.snapshots("main")) == 10


async def test_tflush_holds_a_slot_and_still_answers(bounded):
    live = await bounded(max_requests_per_connection=2, max_lock_waits_per_connection=1)
    async with live.connect() as c, live.connect() as holder:
        await c.write_file(b"f", b"")
        h = await holder.open(b"f", O.RDWR)
        assert await holder.lock(h.fid, W, 0, 0) == p.LockStatus.SUCCESS
        f = await c.open(b"f", O.RDWR)
        waiting = await c.start(p.Tlock(fid=f.fid, type=W, flags=p.LockFlags.BLOCK, start=0, length=0, proc_id=5, client_id=b"c"))
        # many flushes of the same request in one write: each is answered
        flushes = await c.start_many([p.Tflush(oldtag=waiting.tag) for _ in range(50)])
        with trio.fail_after(HANG):
            for fl in flushes:
                assert isinstance(await fl.result(), p.Rflush)
        assert not waiting.done
        assert await c.stat(b"f")


# -- connections ---------------------------------------------------------------


async def test_connection_without_tversion_is_closed_after_the_handshake_timeout(bounded):
    live = await bounded(handshake_timeout=0.2)
    silent = await _raw(live)
    half = await _raw(live)
    frame = p.encode(p.Tversion(msize=8192, version=p.VERSION_9P2000L, tag=p.NOTAG))
    await half.send_all(frame[:5])  # half a frame, then nothing
    assert await _closed_by_server(silent)
    assert await _closed_by_server(half)
    # a client that negotiates and attaches in time stays, long past the timeout
    async with live.connect() as c:
        await trio.sleep(1.0)
        await c.write_file(b"still", b"here")


async def test_unix_socket_connections_wait_for_their_tversion_and_outlive_unmounts(bounded):
    """QEMU's socket chardevs (trans=fd) connect when the VM starts and send Tversion only
    when the guest mounts, and again after an unmount: no deadline closes them."""
    live = await bounded(handshake_timeout=0.2, idle_timeout=0.2)
    stream = await trio.open_unix_socket(live.unix.split(":", 1)[1])
    tcp = await _raw(live)
    assert await _closed_by_server(tcp)  # the same wait closes a TCP connection
    version = p.encode(p.Tversion(msize=8192, version=p.VERSION_9P2000L, tag=p.NOTAG))
    await stream.send_all(version)
    assert isinstance(p.decode(await stream.receive_some(4096)), p.Rversion)
    await trio.sleep(1.0)  # negotiated, no fid ("unmounted"), five idle timeouts
    await stream.send_all(version)  # the next mount through the same port
    assert isinstance(p.decode(await stream.receive_some(4096)), p.Rversion)
    await stream.aclose()


async def test_a_bad_tversion_does_not_reset_the_handshake_deadline(bounded):
    live = await bounded(handshake_timeout=0.2)
    s = await _raw(live)
    await s.send_all(p.encode(p.Tversion(msize=8192, version=b"9P2000.u", tag=p.NOTAG)))
    reply = p.decode(await s.receive_some(4096))
    assert reply.version == p.VERSION_UNKNOWN
    assert await _closed_by_server(s)


async def test_connection_holding_no_fid_is_closed_after_the_idle_timeout(bounded):
    live = await bounded(idle_timeout=0.2)
    s = await _raw(live)
    await s.send_all(p.encode(p.Tversion(msize=8192, version=p.VERSION_9P2000L, tag=p.NOTAG)))
    assert isinstance(p.decode(await s.receive_some(4096)), p.Rversion)
    assert await _closed_by_server(s)
    # one that holds a fid is not idle; once it clunks its last fid it is,
    # and requests that hold no fid do not keep it open
    async with live.connect() as c:
        await trio.sleep(1.0)
        await c.write_file(b"busy", b"yes")
        await c.clunk(c.root_fid)
        c.root_fid = None
        with trio.fail_after(HANG), pytest.raises((ConnectionClosed, trio.BrokenResourceError)):
            while True:
                with pytest.raises(NinepError) as info:
                    await c.rpc(p.Tgetattr(fid=999, request_mask=p.GetattrMask.ALL))
                if isinstance(info.value, ConnectionClosed):
                    raise info.value
                assert info.value.errno == errno.EBADF
                await trio.sleep(0.02)


async def test_silent_sockets_never_lock_out_a_client(bounded):
    live = await bounded(max_connections=3, max_handshakes=4)
    frame = p.encode(p.Tversion(msize=8192, version=p.VERSION_9P2000L, tag=p.NOTAG))
    sockets = []
    for i in range(40):
        s = await _raw(live)
        if i % 2:
            await s.send_all(frame[:7])
        sockets.append(s)
    # a real client still gets in: the oldest silent sockets make room
    async with live.connect() as a, live.connect() as b, live.connect() as c:
        for client in (a, b, c):
            await client.write_file(b"f", b"served")
        # max_connections counts negotiated sessions only, and is enforced
        refused = False
        try:
            async with live.connect():
                pass
        except* ConnectionClosed:
            refused = True
        assert refused
        assert live.server.admission.handshaking <= 4
        assert live.server.admission.served == 3
    for s in sockets[:30]:  # evicted, oldest first
        assert await _closed_by_server(s)
    for s in sockets:
        await s.aclose()
    async with live.connect() as d:  # places are given back
        assert await d.read_file(b"f") == b"served"


def test_config_validates_the_new_limits(config_from):
    cfg = config_from({"server": {"handshake_timeout": 5, "idle_timeout": 30.5, "max_handshakes": 8,
                                  "max_locks_per_connection": 100, "max_lock_waits_per_connection": 10}})
    assert (cfg.handshake_timeout, cfg.idle_timeout, cfg.max_handshakes) == (5.0, 30.5, 8)
    assert (cfg.max_locks_per_connection, cfg.lock_waits_per_connection) == (100, 10)
    with pytest.raises(ConfigError, match="below"):
        config_from({"server": {"max_requests_per_connection": 8, "max_lock_waits_per_connection": 8}})
    with pytest.raises(ConfigError, match="positive"):
        config_from({"server": {"handshake_timeout": 0}})
    assert ServerConfig(max_requests_per_connection=4).lock_waits_per_connection == 3


# -- fids ----------------------------------------------------------------------


async def test_memory_per_fid_does_not_depend_on_depth(bounded):
    live = await bounded()
    async with live.connect() as c:
        here = await c.walk_path(b"")
        at: dict[int, int] = {}
        for depth in range(1, 2001):
            await c.mkdir(here, b"d")
            await c.walk(here, here, [b"d"])
            if depth in (10, 2000):
                leaf = c.alloc_fid()
                await c.walk(here, leaf, [])
                await c.lcreate(leaf, b"leaf", O.RDWR, 0o644)
                await c.clunk(leaf)
                at[depth] = c.alloc_fid()
                await c.walk(here, at[depth], [])

        async def cost_per_fid(dirfid: int, n: int = 200) -> float:
            """Bytes the server keeps per fid walked to a file in ``dirfid``."""
            gc.collect()
            before = tracemalloc.take_snapshot()
            fids = []
            for _ in range(n):
                fids.append(c.alloc_fid())
                await c.walk(dirfid, fids[-1], [b"leaf"])
            gc.collect()
            after = tracemalloc.take_snapshot()
            server_side = [tracemalloc.Filter(True, "*/ninep_server/handlers.py"), tracemalloc.Filter(True, "*/ninep_server/fids.py")]
            grown = sum(d.size_diff for d in after.filter_traces(server_side).compare_to(before.filter_traces(server_side), "filename"))
            for fid in fids:
                await c.clunk(fid)
            return grown / n

        tracemalloc.start()
        try:
            shallow = await cost_per_fid(at[10])
            deep = await cost_per_fid(at[2000])
        finally:
            tracemalloc.stop()
        assert shallow > 0
        # Keeping the path would cost 2000 pointers (16 KB) more per deep fid.
        assert deep <= shallow * 1.25 + 16, (shallow, deep)


async def test_dotdot_follows_renames_and_clamps_at_the_export_root(live):
    async with live.connect() as c:
        await c.makedirs(b"a/b/c")
        await c.makedirs(b"x")
        cfid = await c.walk_path(b"a/b/c")
        root = await c.walk_path(b"")
        await c.renameat(await c.walk_path(b"a"), b"b", await c.walk_path(b"x"), b"b")
        x_qid = (await c.stat(b"x")).qid
        b_qid = (await c.stat(b"x/b")).qid
        up = c.alloc_fid()
        qids = await c.walk(cfid, up, [b"..", b".."])
        assert qids == [b_qid, x_qid]  # the tree as it is now, not the walk's history
        # the fid itself survived the rename of its parent
        newfile = c.alloc_fid()
        await c.walk(cfid, newfile, [])
        await c.lcreate(newfile, b"made-after", O.RDWR, 0o644)
        assert await c.exists(b"x/b/c/made-after")
        # at the export root ".." stays put
        root_qid = (await c.stat(b"")).qid
        assert await c.walk(root, c.alloc_fid(), [b"..", b"..", b"x"]) == [root_qid, root_qid, x_qid]


async def test_readdir_of_a_removed_directory_whose_parent_is_gone(live):
    """``..`` is looked up, not remembered: with no parent left it is the directory itself."""
    async with live.connect() as c:
        await c.makedirs(b"a/b")
        f = await c.open(b"a/b", O.RDONLY)
        await c.unlinkat(await c.walk_path(b"a"), b"b", p.AT_REMOVEDIR)
        await c.unlinkat(c.root_fid, b"a", p.AT_REMOVEDIR)
        assert [e.name for e in await c.readdir(f.fid, 0, 8192)] == [b".", b".."]
