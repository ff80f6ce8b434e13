"""Snapshot send and receive between two real stores (DuckDB catalogs, chunk files)."""

from __future__ import annotations

import errno
import io
import os
import stat

import pytest

from cas import FsError, Store
from cas.fsck import fsck
from cas.receive import STAGE_PREFIX, receive_snapshot
from cas.send import read_have, send_snapshot, write_have
from cas.sendstream import Chunk, Decoder, Encoder, Header, Rows, StreamError

CHUNK = 256


def open_store(path, chunk_size=CHUNK):
    return Store.open(str(path), create=True, chunk_size=chunk_size)


@pytest.fixture
def pair(tmp_path):
    a = open_store(tmp_path / "a")
    a.create_dataset("main")
    b = open_store(tmp_path / "b")
    yield a, b
    for s in (a, b):
        if not s._closed:
            assert s.check() == []
            s.close()


def mkfile(vol, parent, name, data=b"", mode=0o644):
    at = vol.create(parent, name, mode, 1000, 100)
    if data:
        vol.write(at.ino, 0, data)
    return at.ino


def build(vol):
    """A tree with every kind of object the stream must carry."""
    r = vol.root
    mkfile(vol, r, b"small", b"tiny")                                 # shorter than a chunk
    big = mkfile(vol, r, b"big", bytes(range(256)) * 9 + b"tail")     # 10 chunks, last partial
    mkfile(vol, r, b"empty")
    sparse = mkfile(vol, r, b"sparse")
    vol.write(sparse, 7 * CHUNK + 3, b"data after a hole")
    vol.setattr(sparse, size=20 * CHUNK)                              # trailing hole
    d = vol.mkdir(r, b"dir", 0o750, 1000, 100).ino
    sub = vol.mkdir(d, b"sub", 0o700, 0, 0).ino
    vol.link(big, sub, b"big-link")                                   # hard link across dirs
    vol.link(big, r, b"big-link2")
    bad = mkfile(vol, d, b"caf\xe9-\xff\xfe", b"latin-1 name")       # not UTF-8
    vol.setxattr(bad, b"user.note", b"\x00\xffbinary", 0)
    vol.setxattr(big, b"user.a", b"1", 0)
    vol.setxattr(big, b"trusted.b", b"x" * 1000, 0)
    vol.setxattr(d, b"user.dirattr", b"d", 0)
    link = vol.symlink(r, b"link", b"dir/sub/big-link", 0, 0).ino
    vol.setxattr(link, b"user.onlink", b"l", 0)
    vol.symlink(d, b"dangling-\xff", b"/nowhere/\xfe", 0, 0)
    vol.mknod(r, b"fifo", stat.S_IFIFO | 0o600, 0, 0, 0)
    vol.mknod(r, b"chardev", stat.S_IFCHR | 0o600, os.makedev(1, 3), 0, 0)
    vol.setattr(big, mtime_ns=-5_000_000_000, atime_ns=1)             # before 1970
    for i in range(40):                                               # several row batches' worth
        mkfile(vol, sub, b"f%03d" % i, b"%d" % i * (i + 1))
    return big


def walk(tree) -> dict:
    """Everything observable through a Tree, by path; inodes as link groups."""
    out = {}
    first_path: dict[int, bytes] = {}

    def visit(ino, path):
        a = tree.getattr(ino)
        fmt = stat.S_IFMT(a.mode)
        group = first_path.setdefault(ino, path)
        rec = dict(mode=a.mode, uid=a.uid, gid=a.gid, nlink=a.nlink, rdev=a.rdev, size=a.size,
                   blocks=a.blocks, atime=a.atime_ns, mtime=a.mtime_ns, ctime=a.ctime_ns,
                   btime=a.btime_ns, dver=a.data_version, group=group,
                   xattrs=sorted((n, tree.getxattr(ino, n)) for n in tree.listxattr(ino)))
        if fmt == stat.S_IFREG:
            if a.size <= 1 << 20:
                rec["data"] = tree.read(ino, 0, a.size + 1)
            else:  # a huge sparse file: its start and its end (blocks counts the rest)
                rec["data"] = (tree.read(ino, 0, 1 << 16), tree.read(ino, a.size - (1 << 16), 1 << 17))
        elif fmt == stat.S_IFLNK:
            rec["target"] = tree.readlink(ino)
        out[path] = rec
        if fmt == stat.S_IFDIR:
            for e in tree.readdir(ino):
                visit(e.ino, path.rstrip(b"/") + b"/" + e.name)

    visit(tree.root, b"/")
    return out


def send(store, spec, since=None, have=None) -> bytes:
    ds, snap = spec.split("@")
    buf = io.BytesIO()
    send_snapshot(store, ds, snap, buf, since=since, have=have)
    return buf.getvalue()


def receive(store, dataset, stream: bytes, **kw):
    return receive_snapshot(store, dataset, io.BytesIO(stream), **kw)


def state(store) -> dict:
    """The receiver's catalog rows and chunk files, to show that nothing changed."""
    tables = [t for (t,) in store.catalog.query(
        "SELECT table_name FROM information_schema.tables ORDER BY 1")]
    rows = {t: sorted(map(repr, store.catalog.query(f"SELECT * FROM {t}"))) for t in tables}
    return {"rows": rows, "chunks": sorted(store.chunks),
            "staging": [n for n in os.listdir(store.path) if n.startswith(STAGE_PREFIX)]}


def same_snapshot(a, ads, asnap, b, bds, bsnap):
    assert walk(a.snapshot_volume(ads, asnap)) == walk(b.snapshot_volume(bds, bsnap))


# ------------------------------------------------------------------ round trips
def test_full_round_trip_carries_everything(pair):
    a, b = pair
    build(a.volume("main"))
    a.create_snapshot("main", "s1")
    stream = send(a, "main@s1")
    rep = receive(b, "copy", stream)
    assert rep.kind == "full" and rep.snapshot == "s1"
    same_snapshot(a, "main", "s1", b, "copy", "s1")
    # the received dataset's live tree is the snapshot, and the diff between them is empty
    assert b.diff("copy", "s1") == []
    assert walk(b.volume("copy")) == walk(b.snapshot_volume("copy", "s1"))
    # the GUID travelled with the snapshot
    guid = lambda s, ds: s.catalog.query(
        "SELECT g.guid FROM snapshots s JOIN datasets d ON d.id = s.dataset "
        "JOIN snapshot_guids g ON g.snapshot = s.id WHERE d.name = ?", [ds])
    assert guid(a, "main") == guid(b, "copy")
    # sparse holes stayed holes: the same extents, no chunk for a hole
    assert rep.chunks == len({h for (h,) in a.catalog.query("SELECT hash FROM extents")})
    assert fsck(b).clean


def test_full_stream_is_deterministic_and_verified_on_reopen(pair, tmp_path):
    a, b = pair
    build(a.volume("main"))
    a.create_snapshot("main", "s1")
    stream = send(a, "main@s1")
    assert send(a, "main@s1") == stream
    receive(b, "copy", stream)
    before = walk(b.snapshot_volume("copy", "s1"))
    b.close()
    b2 = Store.open(str(tmp_path / "b"))
    try:
        assert walk(b2.snapshot_volume("copy", "s1")) == before
        assert b2.check() == [] and fsck(b2).clean
        assert b2.scrub() == []
    finally:
        b2.close()


def change(vol, big):
    """A second generation: content, size, names, links, xattrs and types change."""
    r = vol.root
    vol.write(big, 3 * CHUNK + 5, b"CHANGED")                         # one chunk differs
    small = vol.lookup(r, b"small").ino
    vol.setattr(small, size=2)                                         # truncate
    vol.rename(r, b"empty", vol.lookup(r, b"dir").ino, b"moved-\xff")  # rename across dirs
    vol.unlink(r, b"big-link2")                                        # one link fewer
    vol.removexattr(big, b"user.a")
    vol.setxattr(big, b"user.new", b"n", 0)
    vol.unlink(r, b"link")
    vol.symlink(r, b"link", b"small", 0, 0)                            # symlink retargeted
    sub = vol.resolve(b"/dir/sub").ino
    for i in range(0, 40, 3):
        vol.unlink(sub, b"f%03d" % i)
    d2 = vol.mkdir(r, b"new-dir", 0o755, 0, 0).ino
    mkfile(vol, d2, b"fresh", b"F" * (3 * CHUNK))
    vol.link(big, d2, b"big-link3")


def test_incremental_round_trip_matches_source_and_its_diff(pair):
    a, b = pair
    va = a.volume("main")
    big = build(va)
    a.create_snapshot("main", "s1")
    receive(b, "copy", send(a, "main@s1"))
    change(va, big)
    a.create_snapshot("main", "s2")
    full2 = send(a, "main@s2")
    inc = send(a, "main@s2", since="s1")
    rep = receive(b, "copy", inc)
    assert rep.kind == "incremental" and rep.base == "s1"
    same_snapshot(a, "main", "s2", b, "copy", "s2")
    same_snapshot(a, "main", "s1", b, "copy", "s1")   # the older snapshot is untouched
    assert b.diff("copy", "s2") == []
    assert a.diff("main", "s1", "s2") == b.diff("copy", "s1", "s2") != []
    # the incremental carries only the changed chunks: big's one changed chunk, the
    # truncated small file and the three chunks of "fresh" (all the same content: one)
    assert rep.chunks == 3, rep
    assert len(inc) < len(full2)
    # and a third generation, using the inode map kept from the first two
    va.write(va.resolve(b"/new-dir/fresh").ino, 0, b"again")
    a.create_snapshot("main", "s3")
    receive(b, "copy", send(a, "main@s3", since="s2"))
    same_snapshot(a, "main", "s3", b, "copy", "s3")
    assert fsck(b).clean


def test_incremental_skipping_a_snapshot_and_deleting_a_tree(pair):
    a, b = pair
    va = a.volume("main")
    build(va)
    a.create_snapshot("main", "s1")
    receive(b, "copy", send(a, "main@s1"))
    sub = va.resolve(b"/dir/sub").ino
    for e in va.readdir(sub):
        va.unlink(sub, e.name)
    va.rmdir(va.resolve(b"/dir").ino, b"sub")
    a.create_snapshot("main", "s2")
    va.write(va.lookup(va.root, b"small").ino, 0, b"s3 data")
    a.create_snapshot("main", "s3")
    receive(b, "copy", send(a, "main@s3", since="s1"))    # s2 is not needed
    same_snapshot(a, "main", "s3", b, "copy", "s3")
    assert [s.name for s in b.snapshots("copy")] == ["s1", "s3"]


def test_receive_updates_a_live_volume_in_use(pair):
    a, b = pair
    va = a.volume("main")
    f = mkfile(va, va.root, b"f", b"one")
    a.create_snapshot("main", "s1")
    receive(b, "copy", send(a, "main@s1"))
    live = b.volume("copy")
    assert live.read(live.resolve(b"/f").ino, 0, 10) == b"one"
    va.write(f, 0, b"two")
    a.create_snapshot("main", "s2")
    receive(b, "copy", send(a, "main@s2", since="s1"))
    assert live.read(live.resolve(b"/f").ino, 0, 10) == b"two"
    # and the received dataset stays writable
    live.write(live.resolve(b"/f").ino, 3, b"!")
    b.commit()
    assert b.diff("copy", "s2") == [type(b.diff("copy", "s2")[0])("M", b"/f", None)]


# ------------------------------------------------------------------ refusals
def test_truncated_streams_are_refused_and_change_nothing(pair):
    a, b = pair
    build(a.volume("main"))
    a.create_snapshot("main", "s1")
    stream = send(a, "main@s1")
    b.create_dataset("other")
    before = state(b)
    cuts = sorted({0, 5, 12, 40, len(stream) // 3, len(stream) // 2, len(stream) - 33,
                   len(stream) - 1})
    for cut in cuts:
        with pytest.raises(StreamError) as ei:
            receive(b, "copy", stream[:cut])
        assert ei.value.errno in (errno.EBADMSG,)
        assert "truncated" in str(ei.value) or cut < 12, (cut, str(ei.value))
        assert state(b) == before, cut
    assert "copy" not in b.datasets()


def test_flipped_bytes_are_refused_and_change_nothing(pair):
    a, b = pair
    build(a.volume("main"))
    a.create_snapshot("main", "s1")
    stream = send(a, "main@s1")
    before = state(b)
    n = len(stream)
    for pos in sorted({0, 9, 20, 60, 200} | {n * k // 23 for k in range(1, 23)} | {n - 40, n - 1}):
        bad = bytearray(stream)
        bad[pos] ^= 0x10
        with pytest.raises(FsError) as ei:
            receive(b, "copy", bytes(bad))
        assert ei.value.errno in (errno.EBADMSG, errno.EINVAL, errno.EPROTONOSUPPORT), \
            (pos, str(ei.value))
        assert state(b) == before, pos
    # the stream itself was fine all along
    receive(b, "copy", stream)
    same_snapshot(a, "main", "s1", b, "copy", "s1")


def test_chunk_not_matching_its_name_is_refused_and_removed(pair):
    """A stream whose checksum is right but one chunk's bytes are not its name's."""
    a, b = pair
    va = a.volume("main")
    mkfile(va, va.root, b"f", b"A" * 1000)
    a.create_snapshot("main", "s1")
    dec = Decoder()
    dec.feed(send(a, "main@s1"))
    enc = Encoder()
    parts = []
    for ev in dec.events():
        if isinstance(ev, Header):
            parts += enc.start(ev)
        elif isinstance(ev, Rows):
            parts += enc.rows(ev.table, ev.op, ev.batch)
        elif isinstance(ev, Chunk):
            parts += enc.chunk(ev.hash, ev.data[:-1] + b"B")
    parts += enc.end()
    before = state(b)
    with pytest.raises(StreamError, match="does not match its content") as ei:
        receive(b, "copy", b"".join(bytes(p) for p in parts))
    assert ei.value.errno == errno.EBADMSG
    assert state(b) == before   # the chunk stored under its true name was deleted again


def test_incremental_without_its_base_is_refused(pair):
    a, b = pair
    va = a.volume("main")
    mkfile(va, va.root, b"f", b"1")
    a.create_snapshot("main", "s1")
    a.create_snapshot("main", "s2")
    inc = send(a, "main@s2", since="s1")
    with pytest.raises(FsError) as ei:                   # no such dataset
        receive(b, "copy", inc)
    assert ei.value.errno == errno.ENOENT
    b.create_dataset("copy")
    b.create_snapshot("copy", "s1")                      # same name, another GUID
    before = state(b)
    with pytest.raises(FsError) as ei:
        receive(b, "copy", inc)
    assert ei.value.errno == errno.ENOENT and "base snapshot" in str(ei.value)
    assert state(b) == before


def test_incremental_needs_the_base_to_be_the_latest_snapshot(pair):
    a, b = pair
    va = a.volume("main")
    mkfile(va, va.root, b"f", b"1")
    a.create_snapshot("main", "s1")
    receive(b, "copy", send(a, "main@s1"))
    b.create_snapshot("copy", "local")
    a.create_snapshot("main", "s2")
    with pytest.raises(FsError) as ei:
        receive(b, "copy", send(a, "main@s2", since="s1"))
    assert ei.value.errno == errno.EEXIST and "newer" in str(ei.value)


def test_changed_receiver_needs_force(pair):
    a, b = pair
    va = a.volume("main")
    f = mkfile(va, va.root, b"f", b"1")
    a.create_snapshot("main", "s1")
    receive(b, "copy", send(a, "main@s1"))
    vb = b.volume("copy")
    mkfile(vb, vb.root, b"local-change", b"x")
    va.write(f, 0, b"2")
    a.create_snapshot("main", "s2")
    inc = send(a, "main@s2", since="s1")
    before_tree = walk(vb)
    with pytest.raises(FsError) as ei:
        receive(b, "copy", inc)
    assert ei.value.errno == errno.EBUSY and "--force" in str(ei.value)
    assert walk(b.volume("copy")) == before_tree
    rep = receive(b, "copy", inc, force=True)
    assert rep.rolled_back
    same_snapshot(a, "main", "s2", b, "copy", "s2")
    assert b.diff("copy", "s2") == []


def test_full_into_existing_dataset_and_same_snapshot_twice_are_refused(pair):
    a, b = pair
    a.create_snapshot("main", "s1")
    stream = send(a, "main@s1")
    receive(b, "copy", stream)
    with pytest.raises(FsError) as ei:
        receive(b, "copy", stream)
    assert ei.value.errno == errno.EEXIST


def test_other_chunk_size_is_refused(tmp_path, pair):
    a, _ = pair
    a.create_snapshot("main", "s1")
    c = open_store(tmp_path / "c", chunk_size=512)
    try:
        with pytest.raises(FsError) as ei:
            receive(c, "copy", send(a, "main@s1"))
        assert ei.value.errno == errno.EINVAL and "chunk size" in str(ei.value)
    finally:
        c.close()


def test_not_a_stream_and_other_versions(pair):
    _, b = pair
    with pytest.raises(StreamError, match="bad magic"):
        receive(b, "copy", b"garbage that is not a stream at all")
    with pytest.raises(StreamError) as ei:
        receive(b, "copy", b"ninepsnd\x00\x00\x00\x02")
    assert ei.value.errno == errno.EPROTONOSUPPORT and "version 2" in str(ei.value)
    with pytest.raises(StreamError, match="truncated"):
        receive(b, "copy", b"")


def test_decoder_refuses_oversized_records():
    d = Decoder()
    d.feed(b"ninepsnd\x00\x00\x00\x01" + b"H" + (1 << 40).to_bytes(8, "big"))
    with pytest.raises(StreamError, match="more than"):
        list(d.events())


# ------------------------------------------------------------------ negotiation
def test_have_list_means_no_chunk_crosses_twice(pair):
    a, b = pair
    build(a.volume("main"))
    a.create_snapshot("main", "s1")
    receive(b, "copy", send(a, "main@s1"))
    out = io.BytesIO()
    info = write_have(b, "copy2", out)
    assert info["snapshots"] == 0 and info["chunks"] > 0
    have = read_have(out.getvalue().decode().splitlines())
    buf = io.BytesIO()
    rep = send_snapshot(a, "main", "s1", buf, have=have)
    assert rep.chunks == 0 and rep.chunks_skipped == info["chunks"]
    r2 = receive(b, "copy2", buf.getvalue())
    assert r2.chunks == 0
    same_snapshot(a, "main", "s1", b, "copy2", "s1")


def test_have_lists_snapshots_and_checks_the_base(pair):
    a, b = pair
    va = a.volume("main")
    mkfile(va, va.root, b"f", b"1" * 600)
    a.create_snapshot("main", "s1")
    a.create_snapshot("main", "s2")
    out = io.BytesIO()
    write_have(b, "copy", out, chunks=False)
    with pytest.raises(FsError) as ei:
        send_snapshot(a, "main", "s2", io.BytesIO(), since="s1",
                      have=read_have(out.getvalue().decode().splitlines()))
    assert ei.value.errno == errno.EINVAL and "does not have" in str(ei.value)
    receive(b, "copy", send(a, "main@s1"))
    out = io.BytesIO()
    write_have(b, "copy", out)
    have = read_have(out.getvalue().decode().splitlines())
    guid = a.catalog.query("SELECT g.guid FROM snapshots s JOIN snapshot_guids g "
                           "ON g.snapshot = s.id WHERE s.name = 's1'")[0][0]
    assert have.snapshots == {guid: "s1"}
    with pytest.raises(FsError):
        read_have(["not a have list"])


# ------------------------------------------------------------------ format
def test_old_catalog_gets_snapshot_guids(tmp_path):
    s = open_store(tmp_path / "old")
    s.create_dataset("main")
    s.create_snapshot("main", "a")
    s.create_snapshot("main", "b")
    with s.catalog.transaction() as db:
        db.execute("DROP TABLE snapshot_guids")  # as made before this version
        db.execute("INSERT INTO snapshots VALUES (99, 1, 'by-old-code', 1, 0)")
    s.close()
    s = Store.open(str(tmp_path / "old"))
    try:
        guids = dict(s.catalog.query("SELECT snapshot, guid FROM snapshot_guids"))
        assert sorted(guids) == [1, 2, 99]
        assert len(set(guids.values())) == 3 and all(len(g) == 36 for g in guids.values())
        s.create_snapshot("main", "c")
        s.delete_snapshot("main", "a")
        assert s.catalog.query("SELECT count(DISTINCT guid) FROM snapshot_guids")[0][0] == 3
    finally:
        s.close()


def test_stale_staging_directory_is_removed(pair):
    a, b = pair
    a.create_snapshot("main", "s1")
    os.mkdir(os.path.join(b.path, STAGE_PREFIX + "crashed"), 0o700)
    receive(b, "copy", send(a, "main@s1"))
    assert not [n for n in os.listdir(b.path) if n.startswith(STAGE_PREFIX)]


def test_deleting_a_received_dataset_forgets_its_inode_map(pair):
    a, b = pair
    mkfile(a.volume("main"), a.volume("main").root, b"f", b"1")
    a.create_snapshot("main", "s1")
    receive(b, "copy", send(a, "main@s1"))
    ds = b.dataset_row("copy")[0]
    assert b.catalog.query("SELECT count(*) FROM received_inodes WHERE dataset = ?", [ds])[0][0] == 2
    b.delete_dataset("copy")
    assert b.catalog.query("SELECT count(*) FROM received_inodes")[0][0] == 0
    assert b.catalog.query("SELECT count(*) FROM snapshot_guids")[0][0] == 0


# ------------------------------------------------------------------ a model run
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_NAMES = st.sampled_from([b"a", b"b", b"c\xff", b"d d", b"\xe9"])
_OPS = st.lists(st.one_of(
    st.tuples(st.just("write"), _NAMES, st.integers(0, 6 * CHUNK), st.binary(min_size=1, max_size=3 * CHUNK)),
    st.tuples(st.just("truncate"), _NAMES, st.sampled_from([0, 1, CHUNK, 5 * CHUNK + 7, 1 << 40])),
    st.tuples(st.just("unlink"), _NAMES),
    st.tuples(st.just("mkdir"), _NAMES),
    st.tuples(st.just("link"), _NAMES, _NAMES),
    st.tuples(st.just("rename"), _NAMES, _NAMES),
    st.tuples(st.just("xattr"), _NAMES, st.binary(max_size=20)),
    st.tuples(st.just("rmxattr"), _NAMES),
    st.tuples(st.just("owner"), _NAMES, st.sampled_from([0, 1000, 2**32 - 1, 2**63 - 1])),
    st.tuples(st.just("times"), _NAMES, st.sampled_from([-(2**62), -1, 0, 2**62])),
), max_size=12)


def _apply_op(vol, op) -> None:
    kind, name, *rest = op
    sub = vol.lookup(vol.root, b"sub").ino
    try:
        if kind == "write":
            try:
                ino = vol.lookup(sub, name).ino
            except FsError:
                ino = vol.create(sub, name, 0o644, 0, 0).ino
            vol.write(ino, rest[0], rest[1])
        elif kind == "truncate":
            vol.setattr(vol.lookup(sub, name).ino, size=rest[0])
        elif kind == "unlink":
            vol.unlink(sub, name)
        elif kind == "mkdir":
            vol.mkdir(vol.root, name, 0o755, 0, 0)
        elif kind == "link":
            vol.link(vol.lookup(sub, name).ino, vol.root, rest[0])
        elif kind == "rename":
            vol.rename(sub, name, vol.root, rest[0])
        elif kind == "xattr":
            vol.setxattr(vol.lookup(sub, name).ino, b"user.x", rest[0], 0)
        elif kind == "rmxattr":
            vol.removexattr(vol.lookup(sub, name).ino, b"user.x")
        elif kind == "owner":
            vol.setattr(vol.lookup(sub, name).ino, uid=rest[0], gid=rest[0])
        elif kind == "times":
            vol.setattr(vol.lookup(sub, name).ino, mtime_ns=rest[0], atime_ns=rest[0])
    except FsError:
        pass  # the operation does not apply to this tree (ENOENT, EEXIST, EISDIR...)


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(steps=st.lists(_OPS, min_size=1, max_size=4))
def test_model_incremental_chains_reproduce_every_snapshot(tmp_path_factory, steps):
    """Random changes, a snapshot after each step, each sent incrementally from the one
    before: every snapshot on the receiver equals the source's, and so do the diffs."""
    base = tmp_path_factory.mktemp("model")
    a, b = open_store(base / "a"), open_store(base / "b")
    try:
        a.create_dataset("main")
        va = a.volume("main")
        va.mkdir(va.root, b"sub", 0o755, 0, 0)
        a.create_snapshot("main", "g0")
        receive(b, "copy", send(a, "main@g0"))
        for i, ops in enumerate(steps, start=1):
            for op in ops:
                _apply_op(va, op)
            a.create_snapshot("main", f"g{i}")
            receive(b, "copy", send(a, f"main@g{i}", since=f"g{i - 1}"))
        for i in range(len(steps) + 1):
            same_snapshot(a, "main", f"g{i}", b, "copy", f"g{i}")
            if i:
                assert a.diff("main", f"g{i - 1}", f"g{i}") == b.diff("copy", f"g{i - 1}", f"g{i}")
        assert b.check() == []
    finally:
        a.close()
        b.close()
