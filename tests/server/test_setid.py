"""Set-user-ID and set-group-ID bits after writes and ownership changes.

The rules are Linux's (fs/attr.c, 6.1): a write by a user without
CAP_FSETID clears set-user-ID, and set-group-ID when the group may execute
or the writer is not in the file's group (``setattr_should_drop_suidgid``);
the v9fs client leaves this to the server for cache=none writes.
"""

from __future__ import annotations

import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ninep_server import protocol as p
from ninep_server.access import Credentials, mode_after_write
from ninep_server.config import parse_config

from .conftest import start_live

O = p.OpenFlags
SUID, SGID = stat.S_ISUID, stat.S_ISGID

# uid 5000 is in groups 5000 and 6000; uid 5001 only in 5001
GROUPS = {5000: [5000, 6000], 5001: [5001]}


@pytest.fixture
async def srv(tmp_path, nursery):
    config = parse_config({"server": {"commit_interval": 0.05}, "exports": {"main": {"groups": {str(k): v for k, v in GROUPS.items()}}}})
    live = await start_live(tmp_path, nursery, config)
    vol = live.store.volume("main")
    vol.setattr(vol.root, mode=stat.S_IFDIR | 0o777)
    yield live
    await live.server.shutdown()
    live.store.close()


async def _make(live, mode: int, gid: int = 6000) -> None:
    async with live.connect(uid=0) as root:
        await root.write_file(b"f", b"")
        fid = await root.walk_path(b"f")
        await root.setattr(fid, uid=5000, gid=gid)
        await root.setattr(fid, mode=mode)
        assert stat.S_IMODE((await root.stat(b"f")).mode) == mode


async def _write_as(live, uid: int, flags: int = O.WRONLY) -> int:
    async with live.connect(uid=uid) as c:
        f = await c.open(b"f", flags)
        await c.write(f.fid, 0, b"x")
        during = stat.S_IMODE((await c.getattr(f.fid)).mode)
        await c.clunk(f.fid)
        after = stat.S_IMODE((await c.stat(b"f")).mode)
        assert during == after
        return after


@pytest.mark.parametrize(
    "mode, writer, want",
    [
        (0o4777, 5001, 0o0777),  # set-user-ID: always cleared
        (0o2777, 5001, 0o0777),  # set-group-ID on a group-executable file: cleared
        (0o6777, 5001, 0o0777),
        (0o6777, 5000, 0o0777),  # the owner too
        (0o2767, 5000, 0o2767),  # not group-executable, writer in the group: kept
        (0o2767, 5001, 0o0767),  # not group-executable, writer not in the group: cleared
        (0o6767, 5000, 0o2767),
        (0o6777, 0, 0o6777),  # root keeps both (CAP_FSETID)
        (0o0777, 5001, 0o0777),
    ],
)
async def test_write_clears_setid(srv, mode, writer, want):
    await _make(srv, mode)
    assert await _write_as(srv, writer, O.RDWR if writer == 5001 else O.WRONLY) == want


async def test_a_failed_write_or_a_read_keeps_setid(srv):
    await _make(srv, 0o6777)
    async with srv.connect(uid=5001) as c:
        f = await c.open(b"f", O.RDONLY)
        await c.read(f.fid, 0, 10)
        await c.clunk(f.fid)
        assert stat.S_IMODE((await c.stat(b"f")).mode) == 0o6777


@given(
    mode=st.integers(0, 0o7777),
    uid=st.sampled_from([0, 5000, 5001]),
    gid=st.sampled_from([5000, 6000, 5001, 7000]),
)
def test_mode_after_write_model(mode, uid, gid):
    """The rule as Linux states it, for every permission mode."""
    groups = frozenset(GROUPS.get(uid, [uid]))
    cred = Credentials(uid, uid, groups)
    got = mode_after_write(stat.S_IFREG | mode, gid, cred)
    want = mode
    if uid != 0:
        want &= ~SUID
        if mode & SGID and (mode & stat.S_IXGRP or gid not in groups):
            want &= ~SGID
    assert got == stat.S_IFREG | want
    assert mode_after_write(stat.S_IFDIR | mode, gid, cred) == stat.S_IFDIR | mode
