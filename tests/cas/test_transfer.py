"""Import and export: a lossless round trip of every file type, dedup, stats."""

import os
import shutil
import stat
import subprocess
import time

import pytest

from cas import FsError, Store
from cas.fsck import fsck
from cas.stats import collect_stats
from cas.transfer import export_tree, import_tree, scan_size

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="owners and device nodes need root")


def make_tree(root: str) -> None:
    """A tree with every file type and the metadata a round trip must keep."""
    os.makedirs(f"{root}/dir/sub")
    os.makedirs(f"{root}/empty")
    with open(f"{root}/file", "wb") as f:
        f.write(os.urandom(300_000))
    with open(f"{root}/dir/small", "wb") as f:
        f.write(b"hello\n")
    open(f"{root}/dir/zero-length", "wb").close()
    with open(f"{root}/sparse", "wb") as f:  # data, 5 MiB hole, data, trailing hole
        f.write(os.urandom(10_000))
        f.seek(5 << 20)
        f.write(b"middle")
        f.truncate(12 << 20)
    os.link(f"{root}/file", f"{root}/dir/sub/hardlink")
    os.symlink("../file", f"{root}/dir/symlink")
    os.symlink("/nonexistent/target\xe9", f"{root}/dangling")
    os.mkfifo(f"{root}/fifo", 0o640)
    os.mknod(f"{root}/chardev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(f"{root}/blockdev", 0o660 | stat.S_IFBLK, os.makedev(7, 99))
    os.mknod(f"{root}/socket", 0o755 | stat.S_IFSOCK)
    with open(os.fsencode(root) + b"/name-\xff\xfe", "wb") as f:
        f.write(b"non-utf8 name")
    os.setxattr(f"{root}/file", "user.colour", b"blue")
    os.setxattr(f"{root}/file", "trusted.secret", b"\x00\x01binary")
    os.setxattr(f"{root}/dir", "user.dirattr", b"d" * 1000)
    os.setxattr(f"{root}/dir/small", "security.label", b"lbl")
    os.chown(f"{root}/dir/small", 1234, 5678)
    os.chown(f"{root}/dir/symlink", 42, 43, follow_symlinks=False)
    os.chown(f"{root}/dir/sub", 1000, 100)
    os.chmod(f"{root}/dir/small", 0o4751)
    os.chmod(f"{root}/dir/sub", 0o2775)
    os.chmod(f"{root}/empty", 0o1777)
    # atimes in the future: under relatime, reading (ls, readlink, diff) leaves them alone
    future = time.time_ns() + 10 * 86400 * 10**9
    for i, path in enumerate(sorted(_walk(root))):
        os.utime(path, ns=(future + i * 7, 1_600_000_000_123_456_789 + i * 11),
                 follow_symlinks=False)


def _walk(root):
    root = os.fsencode(root)
    yield root
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            yield os.path.join(d, n)


def metadata(root) -> dict:
    """Path -> (type+mode, uid, gid, atime, mtime, size, rdev, link target, xattrs, links)."""
    root = os.fsencode(root)
    out = {}
    inodes = {}
    for path in _walk(root):
        st = os.lstat(path)
        rel = os.path.relpath(path, root)
        xattrs = {n: os.getxattr(path, n, follow_symlinks=False)
                  for n in os.listxattr(path, follow_symlinks=False)}
        target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
        group = inodes.setdefault(st.st_ino, rel) if st.st_nlink > 1 else None
        out[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_atime_ns, st.st_mtime_ns,
                    st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
                    st.st_rdev, target, xattrs, group)
    return out


def diff_r(a, b) -> list[str]:
    """``diff -r`` output, minus the lines it prints for special files it cannot compare."""
    r = subprocess.run(["diff", "-r", "--no-dereference", a, b], capture_output=True)
    lines = [ln for ln in r.stdout.decode("utf-8", "replace").splitlines()
             if not (ln.startswith("File ") and (" is a fifo while" in ln or " special file while" in ln
                                                   or " is a socket while" in ln))]
    assert r.returncode in (0, 1), r.stderr
    return lines


@needs_root
def test_round_trip_every_file_type(tmp_path):
    src, out = str(tmp_path / "src"), str(tmp_path / "out")
    make_tree(src)
    before = metadata(src)
    with Store.open(str(tmp_path / "s"), create=True) as store:
        r = import_tree(store, src, "main")
        assert (r.files, r.symlinks, r.hardlinks, r.specials) == (5, 2, 1, 4)
        assert r.warnings == []
        assert fsck(store).clean
    with Store.open(str(tmp_path / "s")) as store:  # from the catalog, not the cache
        e = export_tree(store, "main", out)
        assert e.warnings == [] and e.hardlinks == 1
    after = metadata(out)
    assert metadata(src) == before  # import read the source without touching atimes
    assert after.keys() == before.keys()
    for rel in before:
        assert after[rel] == before[rel], rel
    assert diff_r(src, out) == []
    # holes stay holes: 12 MiB apparent, only the data blocks allocated
    st = os.stat(f"{out}/sparse")
    assert st.st_size == 12 << 20 and st.st_blocks * 512 < 200_000


@needs_root
def test_import_into_path_and_export_subtree(tmp_path):
    src = str(tmp_path / "src")
    make_tree(src)
    with Store.open(str(tmp_path / "s"), create=True) as store:
        import_tree(store, src, "ds", "/a/b")
        vol = store.volume("ds")
        assert vol.resolve(b"/a/b/dir/small").size == 6
        export_tree(store, "ds", str(tmp_path / "out"), path="/a/b/dir")
        with pytest.raises(FsError):
            import_tree(store, src, "ds", "/a/b")  # names exist: EEXIST
        with pytest.raises(FsError):
            import_tree(store, src, "nope", create_dataset=False)
    assert diff_r(f"{src}/dir", str(tmp_path / "out")) == []
    strip = lambda m: {k: v[:-1] for k, v in m.items()}  # noqa: E731 (link partner is outside)
    assert strip(metadata(f"{src}/dir")) == strip(metadata(str(tmp_path / "out")))


def test_export_snapshot(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"before")
    with Store.open(str(tmp_path / "s"), create=True) as store:
        import_tree(store, str(src), "main")
        store.create_snapshot("main", "s1")
        vol = store.volume("main")
        f = vol.lookup(vol.root, b"f")
        vol.write(f.ino, 0, b"AFTER!")
        export_tree(store, "main", str(tmp_path / "snap"), snapshot="s1")
        export_tree(store, "main", str(tmp_path / "live"))
    assert (tmp_path / "snap" / "f").read_bytes() == b"before"
    assert (tmp_path / "live" / "f").read_bytes() == b"AFTER!"


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory):
    """256 MiB of random data in 64 files of 4 MiB (generated once per run)."""
    root = tmp_path_factory.mktemp("big") / "tree"
    for d in range(4):
        os.makedirs(root / f"d{d}")
        for i in range(16):
            with open(root / f"d{d}" / f"f{i}", "wb") as f:
                f.write(os.urandom(4 << 20))
    yield str(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_dedup_two_imports(tmp_path, big_tree):
    assert scan_size(big_tree) == 256 << 20
    with Store.open(str(tmp_path / "s"), create=True, cache_bytes=64 << 20) as store:
        import_tree(store, big_tree, "one")
        _, one = store.chunks.usage()
        assert one >= 256 << 20
        import_tree(store, big_tree, "two")
        _, two = store.chunks.usage()
        assert two - one <= one * 0.01, (one, two)
        st = collect_stats(store)
        assert abs(st.dedup_ratio - 2.0) < 0.01
        assert st.unique_bytes == 256 << 20 and st.referenced_bytes == 512 << 20
        assert st.logical_bytes == 512 << 20 and st.files == 128
        by = {d.name: d for d in st.datasets}
        assert by["one"].files == 64 and by["one"].directories == 5
        assert by["one"].unique_bytes == 256 << 20 and by["two"].chunks == 2048
        print(f"\none copy {one} bytes, two copies {two} bytes "
              f"(+{(two - one) / one:.4%}), dedup ratio {st.dedup_ratio}")


def test_stats_counts_and_snapshot_exclusive(tmp_path):
    with Store.open(str(tmp_path / "s"), create=True) as store:
        store.create_dataset("a")
        vol = store.volume("a")
        d = vol.mkdir(vol.root, b"d", 0o755, 0, 0)
        f = vol.create(d.ino, b"f", 0o644, 0, 0)
        vol.write(f.ino, 0, b"x" * 1000)
        vol.symlink(vol.root, b"l", b"d/f", 0, 0)
        g = vol.create(vol.root, b"g", 0o644, 0, 0)
        vol.write(g.ino, 0, b"x" * 1000)  # same content: dedup within the dataset
        vol.setattr(g.ino, size=1 << 20)  # a hole adds logical bytes only
        st = collect_stats(store)
        (a,) = st.datasets
        assert (a.files, a.directories, a.symlinks) == (2, 2, 1)
        assert a.logical_bytes == 1000 + (1 << 20)
        assert a.referenced_bytes == 2000 and a.unique_bytes == 1000 and a.chunks == 1
        assert a.dedup_ratio == 2.0 and a.snapshots == []
        store.create_snapshot("a", "s1")
        vol.write(f.ino, 0, b"y" * 1000)
        vol.unlink(vol.root, b"g")
        store.create_snapshot("a", "s2")
        vol.write(f.ino, 0, b"z" * 500)
        st = collect_stats(store)
        (a,) = st.datasets
        s1, s2 = a.snapshots
        assert (s1.name, s2.name) == ("s1", "s2") and st.snapshot_count == 2
        assert s1.exclusive_bytes == 1000   # "x"*1000: only s1 sees f and g with it
        assert s2.exclusive_bytes == 1000   # "y"*1000: only s2
        assert s1.referenced_bytes == 2000 and s2.referenced_bytes == 1000
