"""bench.percall measures every request kind (reads included) against ninep, diod and the trio floor
(bench/floor.py) and reports each server's wall time and CPU per request (no timing assertions: the figures exist,
are consistent with each other, and the scratch directory goes)."""
from __future__ import annotations

import json

from tests.servers import diod_binary, require


def test_percall_reports_every_kind_for_every_server(tmp_path):
    require(diod_binary() is not None, "diod is not installed")
    from bench import percall

    out = tmp_path / "out"
    assert percall.main(["--requests", "400", "--reps", "2", "--out", str(out),
                         "--dir", str(tmp_path), "--name", "pc"]) == 0
    res = json.loads((out / "pc.json").read_text())
    assert set(res["figures"]) == set(percall.KINDS)
    for kind, by in res["figures"].items():
        assert set(by) == set(percall.SERVERS), kind
        for runs in by.values():
            assert len(runs) == 2
            for r in runs:
                assert r["wall_us"] > 0 and r["user_us"] >= 0 and r["sys_us"] >= 0, (kind, r)
    md = (out / "pc.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and "µs" not in line]
    assert len(rows) == len(percall.SERVERS) * len(percall.KINDS)
    assert all(row.count("|") == 7 for row in rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]   # scratch removed


def test_raw_client_gets_an_error_for_an_unknown_fid_and_attrs_for_the_root(tmp_path):
    """The raw client speaks the protocol for real: what bad_fid and getattr time are
    an Rlerror(EBADF) and an Rgetattr of a directory."""
    import errno
    import stat

    from bench.percall import ROOT_FID, UNKNOWN_FID, RawClient
    from bench.servers import Ninep
    from ninep_server import protocol as p

    srv = Ninep(tmp_path / "store", tmp_path)
    try:
        c = RawClient(srv)
        try:
            bad = c.rpc(p.Tgetattr(tag=1, fid=UNKNOWN_FID, request_mask=p.GetattrMask.ALL))
            good = c.rpc(p.Tgetattr(tag=1, fid=ROOT_FID, request_mask=p.GetattrMask.ALL))
        finally:
            c.close()
    finally:
        srv.stop()
    assert isinstance(bad, p.Rlerror) and bad.ecode == errno.EBADF
    assert isinstance(good, p.Rgetattr) and stat.S_ISDIR(good.mode)


def test_the_floor_answers_each_request_with_its_reply_and_tag(tmp_path):
    """bench/floor.py speaks enough 9P for the raw client: the handshake, a canned reply
    per request type carrying the request's tag, and Rlerror(EOPNOTSUPP) for the rest."""
    import errno

    from bench.percall import ROOT_FID, RawClient
    from bench.servers import Floor
    from ninep_server import protocol as p

    srv = Floor(tmp_path)
    try:
        c = RawClient(srv)           # Tversion and Tattach answered, or it raises
        try:
            got = c.rpc(p.Tgetattr(tag=7, fid=ROOT_FID, request_mask=p.GetattrMask.ALL))
            walk = c.rpc(p.Twalk(tag=9, fid=ROOT_FID, newfid=2, wnames=[]))
            other = c.rpc(p.Tstatfs(tag=11, fid=ROOT_FID))
        finally:
            c.close()
    finally:
        srv.stop()
    assert isinstance(got, p.Rgetattr) and got.tag == 7
    assert isinstance(walk, p.Rwalk) and walk.tag == 9
    assert isinstance(other, p.Rlerror) and other.tag == 11 and other.ecode == errno.EOPNOTSUPP


def test_the_read_measure_reads_the_file_it_wrote(tmp_path):
    """``read`` times real reads: the file the raw client writes through ninep is what
    its Treads return, at offsets that straddle chunks, and the floor's canned Rread
    is as long as the count asked for."""
    import os

    from bench import percall
    from bench.servers import Floor, Ninep
    from ninep_server import protocol as p

    content = os.urandom(3 * percall.READ_COUNT + 1000)
    frames = percall._frames("read")
    assert [p.decode(f).offset for f in frames[:3]] == [0, percall.READ_COUNT, 2 * percall.READ_COUNT]
    srv = Ninep(tmp_path / "store", tmp_path)
    try:
        writer = percall.RawClient(srv)
        writer.create_file(percall.READ_FILE, content)
        writer.close()
        c = percall.RawClient(srv)
        try:
            c.open_file(percall.READ_FILE)
            got = [c.rpc(p.decode(f)).data for f in frames[:4]]
        finally:
            c.close()
    finally:
        srv.stop()
    assert b"".join(got) == content
    floor = Floor(tmp_path)
    try:
        c = percall.RawClient(floor)
        try:
            c.open_file(percall.READ_FILE)
            reply = c.rpc(p.decode(frames[1]))
        finally:
            c.close()
    finally:
        floor.stop()
    assert isinstance(reply, p.Rread) and len(reply.data) == percall.READ_COUNT
