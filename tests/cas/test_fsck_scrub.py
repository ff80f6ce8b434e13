"""fsck and scrub against injected damage: each is detected and named."""

import errno
import os

import pytest

from cas import CorruptChunkError, FsError, Store
from cas.fsck import fsck
from cas.scrub import scrub


@pytest.fixture
def tree(env):
    """/d/big (3 chunks), /d/link (hard link to big), /small (1 chunk); committed."""
    vol = env.vol
    d = vol.mkdir(vol.root, b"d", 0o755, 0, 0)
    big = vol.create(d.ino, b"big", 0o644, 0, 0)
    data = os.urandom(300 * 1024)
    vol.write(big.ino, 0, data)
    vol.link(big.ino, d.ino, b"link")
    small = vol.create(vol.root, b"small", 0o644, 0, 0)
    vol.write(small.ino, 0, b"tiny file")
    env.store.commit()
    return env, big.ino, small.ino, data


def _hash(store, ino, idx=0):
    return store.catalog.query("SELECT hash FROM extents WHERE ino = ? AND idx = ?", [ino, idx])[0][0]


def _chunk_file(store, h):
    path = store.chunks.path(h)
    os.chmod(path, 0o644)
    return path


def test_clean_store(tree):
    env = tree[0]
    report = fsck(env.store)
    assert report.clean and report.findings == [] and report.orphan_chunks == 0
    assert report.inodes == 4 and report.datasets == 1
    s = scrub(env.store, threads=2)
    assert s.clean and s.chunks == 4 and s.bytes == 300 * 1024 + 9


def test_deleted_chunk(tree):
    env, big, _, _ = tree
    h = _hash(env.store, big, 1)
    os.unlink(env.store.chunks.path(h))
    report = fsck(env.store)
    assert not report.clean
    (f,) = report.damage
    assert f.kind == "missing-chunk" and h in f.message
    assert "main:/d/big [chunk 1]" in f.message and "main:/d/link [chunk 1]" in f.message
    s = scrub(env.store)
    (d,) = s.damaged
    assert d.hash == h and d.problem == "missing"
    assert sorted(u.path for u in d.users) == ["/d/big", "/d/link"]
    env.vol.evict_all()
    env.store.chunks.drop_cache()   # the verified copy kept since the write is not the disk
    for _ in range(2):
        with pytest.raises(FsError) as ei:
            env.vol.read(big, 128 * 1024, 10)
        assert ei.value.errno == errno.EIO


def test_flipped_byte(tree):
    env, big, small, data = tree
    h = _hash(env.store, big, 2)
    path = _chunk_file(env.store, h)
    with open(path, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0x40]))
    s = scrub(env.store, threads=3)
    assert [d.hash for d in s.damaged] == [h]
    assert s.damaged[0].problem == "content does not match its hash"
    assert {(u.view, u.path, u.index) for u in s.damaged[0].users} == {
        ("main", "/d/big", 2), ("main", "/d/link", 2)}
    vol = env.reopen()  # no cached copy of the good content
    for _ in range(3):  # keeps failing, never returns wrong data
        with pytest.raises(CorruptChunkError):
            vol.read(big, 256 * 1024, 100)
    assert vol.read(big, 0, 256 * 1024) == data[:256 * 1024]
    assert vol.read(small, 0, 100) == b"tiny file"


def test_truncated_chunk(tree):
    env, big, _, _ = tree
    h = _hash(env.store, big, 0)
    path = _chunk_file(env.store, h)
    os.truncate(path, 1000)
    report = fsck(env.store)
    (f,) = report.damage
    assert f.kind == "chunk-size" and h in f.message and "has 1000 bytes" in f.message
    assert "/d/big" in f.message
    s = scrub(env.store)
    assert [d.hash for d in s.damaged] == [h]
    with pytest.raises(FsError) as ei:
        env.reopen().read(big, 0, 10)
    assert ei.value.errno == errno.EIO


def test_entry_pointing_at_missing_inode(tree):
    env, _, small, _ = tree
    env.store.catalog.db.execute("DELETE FROM inodes WHERE ino = ?", [small])
    env.store.catalog.db.execute("DELETE FROM extents WHERE ino = ?", [small])
    report = fsck(env.store, repair=True)
    kinds = {f.kind: f for f in report.damage}
    assert "dangling-entry" in kinds
    assert "'small'" in kinds["dangling-entry"].message and str(small) in kinds["dangling-entry"].message
    assert not kinds["dangling-entry"].fixable
    # its chunk became an orphan: repair collected it
    assert report.orphan_chunks == 1 and report.orphans_freed == 1


def test_nlink_repair(tree):
    env, big, small, _ = tree
    env.store.catalog.db.execute("UPDATE inodes SET nlink = 7 WHERE ino = ?", [small])
    env.store.catalog.db.execute("UPDATE inodes SET nlink = 1 WHERE ino = ?", [big])
    vol = env.reopen()
    report = fsck(env.store)
    msgs = sorted(f.message for f in report.damage)
    assert [f.kind for f in report.damage] == ["nlink", "nlink"]
    assert any(f"inode {small} in main: nlink 7, expected 1" == m for m in msgs)
    report = fsck(env.store, repair=True)
    assert report.clean and all(f.fixed for f in report.findings)
    assert vol.getattr(small).nlink == 1 and vol.getattr(big).nlink == 2
    assert fsck(env.store).findings == []
    env.reopen()
    assert fsck(env.store).findings == []


def test_orphan_chunk_is_garbage_not_damage(tree):
    env = tree[0]
    env.store.chunks.put(os.urandom(777))
    report = fsck(env.store)
    assert report.clean and report.orphan_chunks == 1 and report.orphan_bytes == 777
    report = fsck(env.store, repair=True)
    assert report.orphans_freed == 1
    assert fsck(env.store).orphan_chunks == 0


def test_directory_cycle(env):
    vol = env.vol
    a = vol.mkdir(vol.root, b"a", 0o755, 0, 0)
    b = vol.mkdir(a.ino, b"b", 0o755, 0, 0)
    env.store.commit()
    db = env.store.catalog.db
    # detach a from the root and hang it below b: a -> b -> a
    db.execute("UPDATE entries SET parent = ? WHERE child = ?", [b.ino, a.ino])
    report = fsck(env.store)
    kinds = [f.kind for f in report.damage]
    assert "cycle" in kinds
    cyc = next(f for f in report.damage if f.kind == "cycle")
    assert str(a.ino) in cyc.message and str(b.ino) in cyc.message


def test_extent_of_missing_inode_and_bad_snapshot_row(env):
    db = env.store.catalog.db
    db.execute("INSERT INTO extents VALUES (999, 0, 'ab', 10, 1, NULL)")
    db.execute("INSERT INTO snapshots VALUES (50, 77, 'ghost', 0, 0)")
    kinds = {f.kind for f in fsck(env.store).damage}
    assert {"extent-orphan", "missing-chunk", "snapshot"} <= kinds


def test_scrub_names_snapshot_users(env):
    vol, store = env.vol, env.store
    f = vol.create(vol.root, b"f", 0o644, 0, 0)
    vol.write(f.ino, 0, b"version one")
    store.create_snapshot("main", "s1")
    vol.write(f.ino, 0, b"version two")
    store.commit()
    old = store.catalog.query("SELECT hash FROM extents WHERE ino = ? AND died IS NOT NULL",
                              [f.ino])[0][0]
    with open(_chunk_file(store, old), "r+b") as fh:
        fh.write(b"V")
    s = scrub(store)
    (d,) = s.damaged
    assert [(u.view, u.path) for u in d.users] == [("main@s1", "/f")]
    assert fsck(store).clean  # the length is right: only scrub sees content damage
    store.chunks.drop_cache()  # verified copies in memory stay valid; the disk is what's damaged
    with pytest.raises(CorruptChunkError):
        store.snapshot_volume("main", "s1").read(f.ino, 0, 20)
    assert vol.read(f.ino, 0, 20) == b"version two"
