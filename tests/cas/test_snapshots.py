"""Snapshot API unit tests: real DuckDB catalogs and chunk files, no mocks."""

import errno
import stat

import pytest

from cas import DiffEntry, FsError, SnapshotInfo, Store, XATTR_CREATE

CHUNK = 256


@pytest.fixture
def store(tmp_path):
    s = Store.open(str(tmp_path / "s"), create=True, chunk_size=CHUNK)
    s.create_dataset("main")
    yield s
    if not s._closed:
        assert s.check() == []
        s.close()


def err(code, fn, *args, **kw):
    with pytest.raises(FsError) as ei:
        fn(*args, **kw)
    assert ei.value.errno == code, (errno.errorcode.get(ei.value.errno), errno.errorcode[code])


def mkfile(vol, name, data=b"", parent=None):
    a = vol.create(vol.root if parent is None else parent, name, 0o644, 0, 0)
    if data:
        vol.write(a.ino, 0, data)
    return a.ino


def cat(vol, path):
    a = vol.resolve(path)
    return vol.read(a.ino, 0, a.size + 10)


def names(vol, ino=None):
    return sorted(e.name for e in vol.readdir(vol.root if ino is None else ino))


def row_counts(store):
    return {t: store.catalog.query(f"SELECT count(*) FROM {t}")[0][0]
            for t in ("meta", "datasets", "snapshots", "inodes", "entries", "extents", "xattrs")}


# ---------------------------------------------------------------- create / list
BAD_NAMES = ["", "-a", ".a", "_a", "a/b", "a b", "a" * 65, "caf\u00e9", "a\n", "a@b", "..", "a:b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_snapshot_names(store, name):
    err(errno.EINVAL, store.create_snapshot, "main", name)


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_dataset_names(store, name):
    err(errno.EINVAL, store.create_dataset, name)


def test_good_names(store):
    for name in ["a", "A0", "9", "a.b-c_d", "x" * 64, "2026-11-25T00.00"]:
        store.create_snapshot("main", name)
    store.create_dataset("x" * 64)
    assert len(store.snapshots("main")) == 6


def test_create_returns_info_and_errors(store):
    info = store.create_snapshot("main", "one")
    assert isinstance(info, SnapshotInfo)
    assert (info.dataset, info.name) == ("main", "one") and info.id >= 1 and info.created_ns > 0
    err(errno.EEXIST, store.create_snapshot, "main", "one")
    err(errno.ENOENT, store.create_snapshot, "nope", "one")
    store.create_dataset("other")
    assert store.create_snapshot("other", "one").id != info.id  # names are per dataset
    assert store.snapshots("main") == [info]


def test_list_order_ids_never_reused(store):
    store.create_dataset("other")
    a = store.create_snapshot("main", "a")
    b = store.create_snapshot("other", "b")
    c = store.create_snapshot("main", "c")
    assert [s.name for s in store.snapshots()] == ["a", "b", "c"]
    assert [s.name for s in store.snapshots("main")] == ["a", "c"]
    assert a.gen < b.gen < c.gen
    store.delete_snapshot("main", "c")
    d = store.create_snapshot("main", "c")
    assert d.id > c.id
    err(errno.ENOENT, store.snapshots, "nope")
    path = store.path
    store.close()
    with Store.open(path) as s2:
        assert [(x.id, x.name) for x in s2.snapshots()] == [(a.id, "a"), (b.id, "b"), (d.id, "c")]
        assert s2.create_snapshot("main", "e").id > d.id


# ---------------------------------------------------------------- barrier and immutability
def test_snapshot_is_a_barrier_and_immutable(store):
    vol = store.volume("main")
    small = mkfile(vol, b"small", b"tiny")            # one partial chunk, never committed
    big = mkfile(vol, b"big", bytes(range(256)) * 3 + b"tail")
    sparse = vol.create(vol.root, b"sparse", 0o644, 0, 0).ino
    vol.write(sparse, 5 * CHUNK, b"end")
    mkfile(vol, b"empty")
    vol.symlink(vol.root, b"sym", b"small", 0, 0)
    vol.link(big, vol.root, b"big2")
    vol.setxattr(small, b"user.k", b"v1", XATTR_CREATE)
    store.create_snapshot("main", "s")
    # after the barrier: overwrite, truncate, rename, unlink, xattrs, chmod
    vol.write(small, 0, b"TI")
    vol.setattr(big, size=10)
    vol.write(sparse, 0, b"x")
    vol.rename(vol.root, b"small", vol.root, b"moved")
    vol.unlink(vol.root, b"big2")
    vol.unlink(vol.root, b"empty")
    vol.setxattr(small, b"user.k", b"v2")
    vol.setattr(small, mode=0o600)
    vol.mkdir(vol.root, b"newdir", 0o755, 0, 0)
    for step in ("memory", "commit", "reopen"):
        if step == "commit":
            store.commit()
        if step == "reopen":
            path = store.path
            store.close()
            store = Store.open(path, chunk_size=CHUNK)
        sv = store.snapshot_volume("main", "s")
        assert names(sv) == [b"big", b"big2", b"empty", b"small", b"sparse", b"sym"]
        assert cat(sv, b"small") == b"tiny"
        assert cat(sv, b"big2") == bytes(range(256)) * 3 + b"tail"
        assert sv.getattr(sv.resolve(b"big").ino).nlink == 2
        assert cat(sv, b"sparse") == bytes(5 * CHUNK) + b"end"
        assert cat(sv, b"empty") == b""
        assert sv.readlink(sv.resolve(b"sym", follow=False).ino) == b"small"
        assert cat(sv, b"sym") == b"tiny"
        a = sv.resolve(b"small")
        assert sv.getxattr(a.ino, b"user.k") == b"v1" and stat.S_IMODE(a.mode) == 0o644
    live = store.volume("main")
    assert cat(live, b"moved") == b"TIny" and cat(live, b"big")[:10] == bytes(range(10))
    store.close()


def test_snapshot_volume_reads_and_erofs(store):
    vol = store.volume("main")
    d = vol.mkdir(vol.root, b"d", 0o755, 0, 0).ino
    f = mkfile(vol, b"f", b"data", parent=d)
    vol.setxattr(f, b"user.a", b"1")
    for i in range(5):
        mkfile(vol, b"n%d" % i, parent=d)
    store.create_snapshot("main", "s")
    sv = store.snapshot_volume("main", "s")
    assert sv.read_only and len(sv.cache.inodes) == 0  # nothing loaded up front
    a = sv.lookup(d, b"f")
    assert a.ino == f and a.data_version > 0
    assert sv.getattr(f).data_version == a.data_version
    vol.write(f, 0, b"DATA")
    store.commit()
    sv.evict_all()
    assert sv.getattr(f).data_version == a.data_version  # stable while live changes
    assert sv.read(f, 0, 100) == b"data"
    assert sv.listxattr(f) == [b"user.a"] and sv.getxattr(f, b"user.a") == b"1"
    err(errno.ENODATA, sv.getxattr, f, b"user.none")
    err(errno.ENOENT, sv.lookup, d, b"none")
    page1 = sv.readdir(d, 0, 3)
    page2 = sv.readdir(d, page1[-1].cookie)
    assert [e.name for e in page1 + page2] == [b"f", b"n0", b"n1", b"n2", b"n3", b"n4"]
    assert sv.statfs().namelen == 255
    sv.open(f)
    sv.release(f)
    sv.fsync(f)
    mutations = [
        lambda: sv.create(d, b"x", 0o644, 0, 0), lambda: sv.mkdir(d, b"x", 0o755, 0, 0),
        lambda: sv.mknod(d, b"x", stat.S_IFIFO | 0o644, 0, 0, 0),
        lambda: sv.symlink(d, b"x", b"t", 0, 0), lambda: sv.link(f, d, b"x"),
        lambda: sv.unlink(d, b"f"), lambda: sv.rmdir(sv.root, b"d"),
        lambda: sv.rename(d, b"f", d, b"g"), lambda: sv.write(f, 0, b"x"),
        lambda: sv.setattr(f, mode=0o600), lambda: sv.setattr(f, size=0),
        lambda: sv.setxattr(f, b"user.a", b"2", 0), lambda: sv.removexattr(f, b"user.a"),
    ]
    for m in mutations:
        err(errno.EROFS, m)
    assert sv.read(f, 0, 100) == b"data"
    store.delete_snapshot("main", "s")
    err(errno.ESTALE, sv.getattr, f)
    err(errno.ESTALE, sv.read, f, 0, 4)
    err(errno.ESTALE, sv.readdir, d)
    sv.release(f)  # harmless after deletion
    err(errno.ENOENT, store.snapshot_volume, "main", "s")
    err(errno.ENOENT, store.snapshot_volume, "nope", "s")


def test_snapshot_sees_open_unlinked_file_after_crash_cleanup(store):
    """Orphan cleanup at open must not delete rows a snapshot sees."""
    vol = store.volume("main")
    f = mkfile(vol, b"f", b"keep me")
    store.create_snapshot("main", "s")
    vol.open(f)
    vol.unlink(vol.root, b"f")
    store.commit()  # the live row now has nlink 0: an orphan if the process dies
    path = store.path
    store.close()
    with Store.open(path) as s2:
        sv = s2.snapshot_volume("main", "s")
        assert cat(sv, b"f") == b"keep me"
        assert s2.check() == []
        s2.gc()
        assert cat(sv, b"f") == b"keep me"


# ---------------------------------------------------------------- delete
def test_delete_drops_rows_and_gc_keeps_referenced_chunks(store):
    vol = store.volume("main")
    f = mkfile(vol, b"f", b"A" * 300)
    store.create_snapshot("main", "s1")
    vol.write(f, 0, b"B" * 300)
    store.create_snapshot("main", "s2")
    vol.write(f, 0, b"C" * 300)
    vol.setxattr(f, b"user.x", b"1")
    store.commit()
    closed = lambda: store.catalog.query(  # noqa: E731
        "SELECT (SELECT count(*) FROM inodes WHERE died IS NOT NULL) + "
        "(SELECT count(*) FROM extents WHERE died IS NOT NULL)")[0][0]
    before = closed()
    n_chunks = len(list(store.chunks))
    err(errno.ENOENT, store.delete_snapshot, "main", "nope")
    err(errno.ENOENT, store.delete_snapshot, "nope", "s1")
    store.delete_snapshot("main", "s1")
    assert closed() < before
    assert len(list(store.chunks)) < n_chunks  # A's chunks were reclaimed
    store.gc()
    s2 = store.snapshot_volume("main", "s2")
    assert cat(s2, b"f") == b"B" * 300
    assert cat(vol, b"f") == b"C" * 300
    store.delete_snapshot("main", "s2")
    assert closed() == 0  # nothing but live rows remain
    store.gc()
    assert cat(vol, b"f") == b"C" * 300
    hashes = {r[0] for r in store.catalog.query("SELECT hash FROM extents")}
    assert set(store.chunks) == hashes


def test_delete_dataset_drops_its_snapshots(store):
    store.create_dataset("tmp")
    mkfile(store.volume("tmp"), b"f", b"x")
    store.create_snapshot("tmp", "s")
    sv = store.snapshot_volume("tmp", "s")
    store.delete_dataset("tmp")
    assert store.snapshots() == []
    err(errno.ESTALE, sv.getattr, sv.root)


# ---------------------------------------------------------------- rollback
def test_rollback_keeps_later_snapshots(store):
    vol = store.volume("main")
    f = mkfile(vol, b"f", b"one")
    vol.setxattr(f, b"user.v", b"1")
    store.create_snapshot("main", "s1")
    vol.write(f, 0, b"TWO!")
    vol.setxattr(f, b"user.v", b"2")
    g = mkfile(vol, b"g", b"later")
    vol.mkdir(vol.root, b"d", 0o755, 0, 0)
    store.create_snapshot("main", "s2")
    vol.unlink(vol.root, b"g")
    mkfile(vol, b"h", b"uncommitted")
    assert cat(vol, b"f") == b"TWO!"  # cached in the live volume
    store.rollback("main", "s1")
    assert names(vol) == [b"f"]                      # the same Volume object sees it at once
    assert cat(vol, b"f") == b"one" and vol.getxattr(f, b"user.v") == b"1"
    err(errno.ENOENT, vol.getattr, g)
    assert [s.name for s in store.snapshots("main")] == ["s1", "s2"]
    s2 = store.snapshot_volume("main", "s2")
    assert names(s2) == [b"d", b"f", b"g"] and cat(s2, b"f") == b"TWO!" and cat(s2, b"g") == b"later"
    # the rolled-back tree is writable and snapshots stay as they were
    vol.write(f, 3, b"+more")
    mkfile(vol, b"new", b"n")
    store.commit()
    assert cat(vol, b"f") == b"one+more"
    assert cat(store.snapshot_volume("main", "s1"), b"f") == b"one"
    store.rollback("main", "s2")
    assert names(vol) == [b"d", b"f", b"g"] and cat(vol, b"g") == b"later"
    assert store.check() == []
    err(errno.ENOENT, store.rollback, "main", "nope")
    err(errno.ENOENT, store.rollback, "nope", "s1")
    path = store.path
    store.close()
    with Store.open(path) as s:
        v = s.volume("main")
        assert cat(v, b"f") == b"TWO!" and s.check() == []


# ---------------------------------------------------------------- clone
def test_clone_is_writable_independent_and_shares_chunks(store):
    vol = store.volume("main")
    d = vol.mkdir(vol.root, b"d", 0o750, 3, 4).ino
    f = mkfile(vol, b"f", b"x" * 700, parent=d)
    vol.link(f, vol.root, b"hard")
    vol.symlink(vol.root, b"sym", b"d/f", 0, 0)
    vol.setxattr(d, b"user.d", b"dir")
    store.create_snapshot("main", "s")
    vol.write(f, 0, b"live")
    n_chunks = len(list(store.chunks))
    store.clone("main", "s", "copy")
    assert len(list(store.chunks)) == n_chunks  # chunks shared, not copied
    err(errno.EEXIST, store.clone, "main", "s", "copy")
    err(errno.EEXIST, store.clone, "main", "s", "main")
    err(errno.EINVAL, store.clone, "main", "s", "bad/name")
    err(errno.ENOENT, store.clone, "main", "nope", "c2")
    cv = store.volume("copy")
    assert "copy" in store.datasets()
    main_inos = {r[0] for r in store.catalog.query("SELECT ino FROM inodes i JOIN datasets d "
                                                   "ON d.id = i.dataset WHERE d.name = 'main'")}
    copy_inos = {r[0] for r in store.catalog.query("SELECT ino FROM inodes i JOIN datasets d "
                                                   "ON d.id = i.dataset WHERE d.name = 'copy'")}
    assert not main_inos & copy_inos and cv.root in copy_inos
    assert cat(cv, b"d/f") == b"x" * 700 and cat(cv, b"sym") == b"x" * 700
    a = cv.resolve(b"d")
    assert (stat.S_IMODE(a.mode), a.uid, a.gid, a.nlink) == (0o750, 3, 4, 2)
    assert cv.getxattr(a.ino, b"user.d") == b"dir"
    assert cv.resolve(b"hard").ino == cv.resolve(b"d/f").ino and cv.resolve(b"hard").nlink == 2
    assert cv.lookup(a.ino, b"..").ino == cv.root
    cv.write(cv.resolve(b"hard").ino, 0, b"clone")
    mkfile(cv, b"only-in-clone", b"c")
    store.commit()
    assert cat(cv, b"d/f")[:5] == b"clone"
    assert cat(vol, b"d/f")[:4] == b"live"
    assert cat(store.snapshot_volume("main", "s"), b"d/f") == b"x" * 700
    assert names(vol) == [b"d", b"hard", b"sym"]
    # snapshots of the clone work too, and deleting the origin's snapshot leaves the clone intact
    store.create_snapshot("copy", "c1")
    store.delete_snapshot("main", "s")
    store.gc()
    assert cat(cv, b"d/f")[:5] == b"clone" and cat(store.snapshot_volume("copy", "c1"), b"hard")[:5] == b"clone"
    path = store.path
    store.close()
    with Store.open(path) as s:
        assert cat(s.volume("copy"), b"d/f")[:5] == b"clone" and s.check() == []
        mkfile(s.volume("copy"), b"after-reopen")  # fresh inode numbers stay unique
        s.commit()
        assert s.check() == []


# ---------------------------------------------------------------- cost
def test_snapshot_of_unchanged_tree_adds_constant_rows(store):
    vol = store.volume("main")
    for i in range(10):
        d = vol.mkdir(vol.root, b"d%d" % i, 0o755, 0, 0).ino
        for j in range(100):
            mkfile(vol, b"f%d" % j, b"%d" % j, parent=d)
    store.commit()
    before = row_counts(store)
    store.create_snapshot("main", "a")
    after1 = row_counts(store)
    store.create_snapshot("main", "b")
    after2 = row_counts(store)
    added1 = {t: after1[t] - before[t] for t in before}
    added2 = {t: after2[t] - after1[t] for t in before}
    assert added1 == added2 == {"meta": 0, "datasets": 0, "snapshots": 1, "inodes": 0,
                                "entries": 0, "extents": 0, "xattrs": 0}
    # changing one file then costs a bounded number of rows, not O(tree)
    vol.write(vol.resolve(b"d3/f7").ino, 0, b"changed")
    store.commit()
    grown = row_counts(store)
    assert grown["inodes"] - after2["inodes"] == 1 and grown["extents"] - after2["extents"] == 1


# ---------------------------------------------------------------- diff
def diff_lines(entries):
    return [f"R {e.old_path.decode()} -> {e.path.decode()}" if e.kind == "R"
            else f"{e.kind} {e.path.decode()}" for e in entries]


def test_diff_scripted_change_set(store):
    vol = store.volume("main")
    for name, data in [(b"keep", b"same"), (b"gone", b"g"), (b"mod", b"v1"), (b"perm", b"p"),
                       (b"old", b"o"), (b"rm2", b"r"), (b"doc", b"text1"), (b"hl", b"h")]:
        mkfile(vol, name, data)
    d = vol.mkdir(vol.root, b"d", 0o755, 0, 0).ino
    mkfile(vol, b"x", b"x", parent=d)
    store.create_snapshot("main", "a")
    mkfile(vol, b"added", b"new")                                   # add
    vol.unlink(vol.root, b"gone")                                   # remove
    vol.write(vol.resolve(b"mod").ino, 0, b"v2")                    # modify content
    vol.setattr(vol.resolve(b"perm").ino, mode=0o600)               # chmod
    vol.rename(vol.root, b"old", vol.root, b"new")                  # rename
    vol.rename(vol.root, b"rm2", vol.root, b"rm3")                  # rename + modify
    vol.write(vol.resolve(b"rm3").ino, 1, b"2")
    mkfile(vol, b"doc.tmp", b"text2")                               # save-by-rename
    vol.rename(vol.root, b"doc.tmp", vol.root, b"doc")
    vol.link(vol.resolve(b"hl").ino, vol.root, b"hl2")              # hard link added
    expected = ["M /", "+ /added", "M /doc", "- /gone", "M /hl", "+ /hl2", "M /mod",
                "R /old -> /new", "M /perm", "R /rm2 -> /rm3", "M /rm3"]
    live = store.diff("main", "a")                                  # snapshot vs live
    assert diff_lines(live) == expected
    assert all(isinstance(e, DiffEntry) for e in live)
    store.create_snapshot("main", "b")
    assert diff_lines(store.diff("main", "a", "b")) == expected     # snapshot vs snapshot
    assert store.diff("main", "b") == []
    assert store.diff("main", "a", "a") == []
    back = diff_lines(store.diff("main", "b", "a"))
    assert back == ["M /", "- /added", "M /doc", "+ /gone", "M /hl", "- /hl2", "M /mod",
                    "R /new -> /old", "M /perm", "R /rm3 -> /rm2", "M /rm2"]
    err(errno.ENOENT, store.diff, "main", "nope")
    err(errno.ENOENT, store.diff, "main", "a", "nope")
    err(errno.ENOENT, store.diff, "nope", "a")


def test_diff_directory_rename_reports_only_the_directory(store):
    vol = store.volume("main")
    d = vol.mkdir(vol.root, b"d", 0o755, 0, 0).ino
    sub = vol.mkdir(d, b"sub", 0o755, 0, 0).ino
    mkfile(vol, b"x", b"x", parent=d)
    mkfile(vol, b"y", b"y", parent=sub)
    mkfile(vol, b"\xff\xfe", b"binary name")
    store.create_snapshot("main", "a")
    vol.rename(vol.root, b"d", vol.root, b"e")
    vol.write(vol.resolve(b"e/sub/y").ino, 0, b"Y")
    vol.unlink(vol.root, b"\xff\xfe")
    out = store.diff("main", "a")
    assert [(e.kind, e.path, e.old_path) for e in out] == [
        ("M", b"/", None), ("R", b"/e", b"/d"), ("M", b"/e/sub/y", None), ("-", b"/\xff\xfe", None)]


def test_snapshot_barrier_under_concurrent_writes(store):
    """A snapshot holds every write completed before the call and none started after it."""
    import threading
    import time

    vol = store.volume("main")
    f = mkfile(vol, b"log")
    rec = 10
    done = [0]
    stop = threading.Event()

    def writer():
        for i in range(200_000):  # 10-byte records: partial chunks, written during the commits
            vol.write(f, i * rec, b"%09d\n" % i)
            done[0] = i + 1
            if stop.is_set():
                break

    t = threading.Thread(target=writer)
    t.start()
    try:
        bounds = []
        time.sleep(0.2)  # let dirty data pile up, so the barrier's commit has work to do
        for k in range(6):
            time.sleep(0.05)
            before = done[0]
            store.create_snapshot("main", f"s{k}")
            bounds.append((before, done[0]))
    finally:
        stop.set()
        t.join()
    for k, (lo, hi) in enumerate(bounds):
        data = cat(store.snapshot_volume("main", f"s{k}"), b"log")
        n = len(data) // rec
        assert len(data) == n * rec and lo <= n <= hi, (k, lo, n, hi)
        assert data == b"".join(b"%09d\n" % i for i in range(n))
