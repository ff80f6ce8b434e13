"""Disk full: on a small tmpfs, writes fail with ENOSPC before the catalog is hurt."""

import errno
import os
import subprocess

import pytest

from cas import FsError, Store

MiB = 1 << 20


@pytest.fixture
def small_fs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], check=True)
    try:
        yield str(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_enospc_then_recover(small_fs):
    path = os.path.join(small_fs, "store")
    s = Store.open(path, create=True, reserve_bytes=12 * MiB, commit_interval=0.05)
    s.create_dataset("m")
    v = s.volume("m")
    written = []
    err = None
    for i in range(200):
        f = v.create(v.root, b"f%d" % i, 0o644, 0, 0)
        try:
            for k in range(4):
                v.write(f.ino, k * 256 * 1024, os.urandom(256 * 1024))
            v.fsync(f.ino)
        except FsError as e:
            err = e
            break
        written.append(f.ino)
    assert err is not None and err.errno == errno.ENOSPC
    assert len(written) > 10
    st = os.statvfs(small_fs)
    assert st.f_bavail * st.f_frsize > 0  # the reserve kept room for DuckDB
    # metadata operations and the commit still work while full
    s.commit()
    assert s.check() == []
    # free space: delete most files, commit (gc removes their chunks)
    names = [e.name for e in v.readdir(v.root)]
    for n in names[:-3]:
        v.unlink(v.root, n)
    s.commit()
    assert s.check() == []
    g = v.create(v.root, b"again", 0o644, 0, 0)
    data = os.urandom(3 * MiB)
    v.write(g.ino, 0, data)
    v.fsync(g.ino)
    s.close()
    with Store.open(path, reserve_bytes=12 * MiB) as s:
        assert s.check() == []
        v = s.volume("m")
        a = v.lookup(v.root, b"again")
        assert v.read(a.ino, 0, 4 * MiB) == data
        h = v.create(v.root, b"more", 0o644, 0, 0)
        v.write(h.ino, 0, b"still writable")
        v.fsync(h.ino)


def test_commit_failure_surfaces_at_fsync_and_retries(small_fs):
    """A commit that fails (chunk store full) raises at fsync; data stays queued."""
    path = os.path.join(small_fs, "store")
    s = Store.open(path, create=True, reserve_bytes=0)
    s.create_dataset("m")
    v = s.volume("m")
    f = v.create(v.root, b"f", 0o644, 0, 0)
    v.write(f.ino, 0, b"small but precious")
    # fill the filesystem behind the store's back
    filler = os.path.join(small_fs, "filler")
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * MiB)
                fh.flush()
        except OSError:
            pass
    try:
        with pytest.raises(FsError) as ei:
            v.fsync(f.ino)
        assert ei.value.errno == errno.ENOSPC
    finally:
        os.unlink(filler)
    v.fsync(f.ino)  # retried, now succeeds
    s.close()
    with Store.open(path) as s:
        v = s.volume("m")
        assert v.read(v.lookup(v.root, b"f").ino, 0, 100) == b"small but precious"
        assert s.check() == []
