"""Codec tests: round trips, byte-exact vectors from the spec, fuzzing."""

from __future__ import annotations

import typing
from dataclasses import fields

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ninep_server import protocol as p

# -- strategies built from the message annotations --------------------------------

_INT_BITS = {"B": 8, "H": 16, "I": 32, "Q": 64}
_names = st.binary(min_size=0, max_size=40)
_qids = st.builds(p.Qid, st.integers(0, 255), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1))


def _field_strategy(kind: str):
    if kind in _INT_BITS:
        return st.integers(0, 2 ** _INT_BITS[kind] - 1)
    if kind == "q":
        return st.integers(-(2**63), 2**63 - 1)
    return {
        "s": _names,
        "d": st.binary(max_size=300),
        "qid": _qids,
        "names": st.lists(_names, max_size=16),
        "qids": st.lists(_qids, max_size=16),
    }[kind]


def message_strategy(cls):
    hints = typing.get_type_hints(cls, include_extras=True)
    kwargs = {f.name: _field_strategy(hints[f.name].__metadata__[0]) for f in fields(cls) if f.name != "tag"}
    return st.builds(cls, **kwargs, tag=st.integers(0, 0xFFFF))


any_message = st.sampled_from(p.ALL_MESSAGES).flatmap(message_strategy)


def test_every_9p2000l_message_is_known():
    expected = {
        "version", "auth", "attach", "flush", "walk", "lopen", "lcreate", "read", "write", "clunk",
        "remove", "statfs", "symlink", "mknod", "rename", "renameat", "readlink", "getattr", "setattr",
        "xattrwalk", "xattrcreate", "readdir", "fsync", "lock", "getlock", "link", "mkdir", "unlinkat",
    }  # fmt: skip
    names = {c.__name__ for c in p.ALL_MESSAGES}
    for op in expected:
        assert f"T{op}" in names and f"R{op}" in names, op
    assert "Rlerror" in names
    for cls in p.ALL_MESSAGES:
        assert cls.TYPE.name == cls.__name__.upper()


@pytest.mark.parametrize("cls", p.ALL_MESSAGES, ids=lambda c: c.__name__)
@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip(cls, data):
    msg = data.draw(message_strategy(cls))
    frame = p.encode(msg)
    assert len(frame) == int.from_bytes(frame[:4], "little")
    assert p.decode(frame) == msg


@pytest.mark.parametrize("cls", p.ALL_MESSAGES, ids=lambda c: c.__name__)
@settings(max_examples=20, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_encode_parts_round_trip(cls, data):
    """head + payload is exactly encode()'s frame, and decodes back to the message."""
    msg = data.draw(message_strategy(cls))
    head, payload = p.encode_parts(msg)
    frame = head + payload
    assert frame == p.encode(msg)
    assert p.decode(frame) == msg


def test_encode_parts_leaves_the_data_uncopied():
    """A data blob comes back as the very object given (a view of a cached chunk stays a view)."""
    chunk = bytes(range(256)) * 512
    view = memoryview(chunk)[1000:66536]
    head, payload = p.encode_parts(p.Rread(data=view, tag=7))
    assert payload is view
    assert len(head) == 11 and int.from_bytes(head[:4], "little") == 11 + len(view)
    assert p.decode(head + payload) == p.Rread(data=chunk[1000:66536], tag=7)
    dirents = p.encode_dirents([p.Dirent(p.Qid(0, 1, 2), 3, p.DT_REG, b"name")])
    head, payload = p.encode_parts(p.Rreaddir(data=dirents, tag=1))
    assert payload is dirents
    head, payload = p.encode_parts(p.Rclunk(tag=1))   # no blob: the whole frame, nothing after
    assert payload == b"" and head == p.encode(p.Rclunk(tag=1))


@settings(max_examples=50)
@given(pieces=st.lists(st.binary(max_size=300), max_size=6))
def test_a_blob_of_pieces_encodes_as_the_joined_bytes(pieces):
    """A tuple of pieces (a read across chunks) is sent as they are, and makes the same
    frame as their bytes joined: encode_parts hands the tuple itself back, uncopied."""
    views = tuple(memoryview(b) for b in pieces)
    joined = p.Rread(data=b"".join(pieces), tag=5)
    head, payload = p.encode_parts(p.Rread(data=views, tag=5))
    assert payload is views
    assert head + b"".join(payload) == p.encode(joined)
    assert p.encode(p.Rread(data=views, tag=5)) == p.encode(joined)


@pytest.mark.parametrize("n", [0, 1, 2, p.MAX_WALK_NAMES, p.MAX_WALK_NAMES + 1])
def test_rwalk_is_packed_field_by_field_for_any_qid_count(n):
    """Rwalk's one-struct encoder writes nwqid then each qid (type, version, path), as the
    spec lays them out; more qids than a walk may have still encode (the general path)."""
    qids = [p.Qid(i % 256, i * 7, (1 << 64) - 1 - i) for i in range(n)]
    frame = p.encode(p.Rwalk(qids=qids, tag=9))
    body = n.to_bytes(2, "little") + b"".join(
        bytes([q.type]) + q.version.to_bytes(4, "little") + q.path.to_bytes(8, "little") for q in qids)
    assert frame == (7 + len(body)).to_bytes(4, "little") + bytes([int(p.MsgType.RWALK)]) + b"\x09\x00" + body
    if n <= p.MAX_WALK_NAMES:
        assert p.decode(frame) == p.Rwalk(qids=qids, tag=9)
    with pytest.raises(ValueError):
        p.encode(p.Rwalk(qids=[p.Qid(256, 0, 0)] * max(n, 1), tag=9))


# -- byte-exact vectors written from the 9P2000.L specification -------------------

H = bytes.fromhex
VECTORS = [
    (
        p.Tversion(msize=8192, version=b"9P2000.L", tag=p.NOTAG),
        H("15000000" "64" "ffff" "00200000" "0800") + b"9P2000.L",
    ),
    (p.Rlerror(ecode=2, tag=1), H("0b000000" "07" "0100" "02000000")),
    (
        p.Twalk(fid=1, newfid=3, wnames=[b"a", b"bb", b"ccc"], tag=2),
        H("1d000000" "6e" "0200" "01000000" "03000000" "0300" "0100" "61" "0200" "6262" "0300" "636363"),
    ),
    (
        p.Rreaddir(
            data=p.encode_dirents(
                [
                    p.Dirent(p.Qid(0x80, 0, 1), 1, p.DT_DIR, b"."),
                    p.Dirent(p.Qid(0, 5, 42), 2, p.DT_REG, b"f"),
                ]
            ),
            tag=5,
        ),
        H("3d000000" "29" "0500" "32000000")
        + H("80" "00000000" "0100000000000000" "0100000000000000" "04" "0100" "2e")
        + H("00" "05000000" "2a00000000000000" "0200000000000000" "08" "0100" "66"),
    ),
    (
        p.Tsetattr(fid=7, valid=p.SetattrValid.MODE, mode=0o100644, tag=4),
        H("43000000" "1a" "0400" "07000000" "01000000" "a4810000" "00000000" "00000000") + bytes(40),
    ),
    (
        p.Rgetattr(
            valid=p.GetattrMask.BASIC, qid=p.Qid(0, 1, 2), mode=0o100644, uid=1000, gid=1000, nlink=1,
            size=5, blksize=4096, blocks=8, atime_sec=1, mtime_sec=2, ctime_sec=3, tag=9,
        ),  # fmt: skip
        H("a0000000" "19" "0900" "ff07000000000000" "00" "01000000" "0200000000000000")
        + H("a4810000" "e8030000" "e8030000")
        + H("0100000000000000" "0000000000000000" "0500000000000000" "0010000000000000" "0800000000000000")
        + H("0100000000000000" "0000000000000000" "0200000000000000" "0000000000000000")
        + H("0300000000000000" "0000000000000000")
        + bytes(32),
    ),
    (
        p.Tlock(fid=9, type=p.LockType.WRLCK, flags=p.LockFlags.BLOCK, proc_id=1234, client_id=b"host", tag=5),
        H("2a000000" "34" "0500" "09000000" "01" "01000000" "0000000000000000" "0000000000000000" "d2040000")
        + H("0400")
        + b"host",
    ),
    (
        p.Txattrwalk(fid=1, newfid=2, name=b"user.x", tag=6),
        H("17000000" "1e" "0600" "01000000" "02000000" "0600") + b"user.x",
    ),
    (p.Rread(data=b"hi", tag=7), H("0d000000" "75" "0700" "02000000" "6869")),
    (
        p.Tlcreate(fid=3, name=b"new", flags=p.OpenFlags.RDWR | p.OpenFlags.CREATE, mode=0o644, gid=100, tag=8),
        H("1c000000" "0e" "0800" "03000000" "0300" "6e6577" "42000000" "a4010000" "64000000"),
    ),
    (
        p.Tattach(fid=0, afid=p.NOFID, uname=b"bob", aname=b"", n_uname=1000, tag=1),
        H("1a000000" "68" "0100" "00000000" "ffffffff" "0300" "626f62" "0000" "e8030000"),
    ),
    (p.Rwalk(qids=[p.Qid(0x80, 0, 7)], tag=2), H("16000000" "6f" "0200" "0100" "80" "00000000" "0700000000000000")),
    (p.Tunlinkat(dirfid=4, name=b"d", flags=p.AT_REMOVEDIR, tag=3), H("12000000" "4c" "0300" "04000000" "0100" "64" "00020000")),
]


@pytest.mark.parametrize("msg,frame", VECTORS, ids=[type(m).__name__ for m, _ in VECTORS])
def test_spec_vectors(msg, frame):
    assert p.encode(msg) == frame
    assert p.decode(frame) == msg


def test_dirents_round_trip():
    entries = [p.Dirent(p.Qid(0, 1, 2), 10, p.DT_REG, b"caf\xe9"), p.Dirent(p.Qid(0x80, 0, 3), 11, p.DT_DIR, b"x" * 255)]
    data = p.encode_dirents(entries)
    assert len(data) == sum(p.dirent_size(e.name) for e in entries)
    assert p.decode_dirents(data) == entries
    with pytest.raises(p.ProtocolError):
        p.decode_dirents(data[:-1])


# -- malformed frames -----------------------------------------------------------


def _err(frame) -> p.ProtocolError:
    with pytest.raises(p.ProtocolError) as info:
        p.decode(frame)
    return info.value


def test_size_field_disagrees():
    frame = bytearray(p.encode(p.Tclunk(fid=1, tag=3)))
    frame[0] += 1
    err = _err(bytes(frame))
    assert (err.tag, err.type) == (3, p.MsgType.TCLUNK)


def test_string_past_end():
    frame = bytearray(p.encode(p.Txattrwalk(fid=1, newfid=2, name=b"abc", tag=4)))
    frame[15] = 200  # the name's length
    err = _err(bytes(frame))
    assert "past the end" in err.reason and err.tag == 4


def test_too_many_walk_names():
    names = b"".join(b"\x01\x00a" for _ in range(17))
    body = (1).to_bytes(4, "little") + (2).to_bytes(4, "little") + (17).to_bytes(2, "little") + names
    frame = (7 + len(body)).to_bytes(4, "little") + bytes([p.MsgType.TWALK]) + (9).to_bytes(2, "little") + body
    err = _err(frame)
    assert "more than 16" in err.reason and (err.tag, err.type) == (9, p.MsgType.TWALK)


def test_trailing_bytes():
    frame = bytearray(p.encode(p.Tclunk(fid=1, tag=3)) + b"x")
    frame[0] += 1
    assert "trailing" in _err(bytes(frame)).reason


def test_unknown_type_keeps_tag():
    err = _err(H("07000000" "70" "2a00"))  # 112 is 9P2000's Topen: not in .L
    assert (err.tag, err.type) == (42, 112)


def test_short_header():
    err = _err(b"\x05\x00\x00")
    assert err.tag is None and err.type is None


def test_frame_buffer_splits_stream():
    frames = [p.encode(p.Tclunk(fid=i, tag=i)) for i in range(5)]
    buf = p.FrameBuffer(max_size=8192)
    stream = b"".join(frames)
    out = []
    for i in range(0, len(stream), 3):
        buf.feed(stream[i : i + 3])
        while (f := buf.next_frame()) is not None:
            out.append(f)
    assert out == frames and len(buf) == 0


def test_frame_buffer_rejects_oversized_and_undersized():
    buf = p.FrameBuffer(max_size=100)
    buf.feed((101).to_bytes(4, "little") + bytes([p.MsgType.TREAD]) + b"\x05\x00")
    with pytest.raises(p.ProtocolError) as info:
        buf.next_frame()
    assert info.value.tag == 5
    buf = p.FrameBuffer(max_size=100)
    buf.feed((3).to_bytes(4, "little"))
    with pytest.raises(p.ProtocolError):
        buf.next_frame()


# -- fuzzing ------------------------------------------------------------------------


def _check_frame(frame: bytes) -> None:
    try:
        msg = p.decode(frame)
    except p.ProtocolError:
        return
    assert p.encode(msg) == frame


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(frame):
    _check_frame(frame)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(frame=st.binary(max_size=200), type_=st.sampled_from([int(c.TYPE) for c in p.ALL_MESSAGES]))
def test_fuzz_random_bodies_with_valid_header(frame, type_):
    body = frame[7:]
    framed = (7 + len(body)).to_bytes(4, "little") + bytes([type_]) + frame[5:7].ljust(2, b"\0") + body
    _check_frame(framed)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(msg=any_message, data=st.data())
def test_fuzz_mutated_valid_frames(msg, data):
    frame = bytearray(p.encode(msg))
    how = data.draw(st.sampled_from(["truncate", "flip", "extend", "resize"]))
    if how == "truncate":
        frame = frame[: data.draw(st.integers(0, len(frame) - 1))]
    elif how == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(frame) - 1))
            frame[i] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "extend":
        frame += data.draw(st.binary(min_size=1, max_size=20))
    else:
        frame[0:4] = data.draw(st.integers(0, 2**32 - 1)).to_bytes(4, "little")
    _check_frame(bytes(frame))
