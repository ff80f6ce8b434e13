"""Export never changes a destination that existed, sets setuid/setgid only when owners
are restored, and reaches host directories only through held descriptors."""

import errno
import os
import stat

import pytest

from cas import FsError, Store
from cas.hostdirs import open_host_dir
from cas.transfer import export_tree, import_tree

SUID_SGID = stat.S_ISUID | stat.S_ISGID
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="owners other than our own need root")


@pytest.fixture
def store(tmp_path):
    with Store.open(str(tmp_path / "s"), create=True) as s:
        s.create_dataset("main")
        vol = s.volume("main")
        vol.setattr(vol.root, uid=1234, gid=1234)
        vol.setattr(vol.root, mode=0o6777)
        f = vol.create(vol.root, b"suid", 0o755, 1234, 1234)
        vol.write(f.ino, 0, b"#!/bin/sh\n")
        vol.setattr(f.ino, mode=0o4755)
        d = vol.mkdir(vol.root, b"sgid", 0o755, 1234, 1234)
        vol.setattr(d.ino, mode=0o2775)
        vol.mknod(d.ino, b"fifo", stat.S_IFIFO | 0o2640, 0, 1234, 1234)
        vol.link(f.ino, d.ino, b"hardlink")
        s.commit()
        yield s


def _walk(root):
    yield root
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            yield os.path.join(d, n)


@pytest.mark.parametrize("preserve", [False, True])
def test_existing_destination_keeps_its_mode_and_owner(store, tmp_path, preserve):
    dest = tmp_path / "existing"
    dest.mkdir()
    os.chmod(dest, 0o710)
    os.chown(dest, os.geteuid(), os.getegid())
    before = os.stat(dest)
    export_tree(store, "main", str(dest), preserve_owner=preserve)
    after = os.stat(dest)
    # the dataset root is 06777 owned by 1234: none of that reaches a directory that existed
    assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid, before.st_gid)
    assert (dest / "suid").read_bytes() == b"#!/bin/sh\n"


def test_no_setuid_or_setgid_unless_owners_are_restored(store, tmp_path):
    out = tmp_path / "out"
    export_tree(store, "main", str(out), preserve_owner=False)
    for p in _walk(str(out)):
        st = os.lstat(p)
        assert not st.st_mode & SUID_SGID, (p, oct(st.st_mode))
        assert st.st_uid == os.geteuid(), p
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o777  # the export made it: the root's mode, less 6000
    assert stat.S_IMODE(os.stat(out / "suid").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(out / "sgid").st_mode) == 0o775
    assert os.stat(out / "sgid" / "hardlink").st_ino == os.stat(out / "suid").st_ino


@needs_root
def test_setuid_and_owners_come_back_when_asked_for_as_root(store, tmp_path):
    out = tmp_path / "out"
    export_tree(store, "main", str(out), preserve_owner=True)
    st = os.stat(out)
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o6777, 1234)
    assert stat.S_IMODE(os.stat(out / "suid").st_mode) == 0o4755
    assert stat.S_IMODE(os.lstat(out / "sgid" / "fifo").st_mode) == 0o2640
    assert os.lstat(out / "sgid" / "fifo").st_uid == 1234


def test_host_directories_are_never_reached_through_a_symlink(store, tmp_path):
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "link")
    # beneath a root, no component may be a symlink: the walk refuses, it does not follow
    # (what a component swapped after realpath ran looks like)
    with pytest.raises(FsError) as exc:
        import cas.hostdirs as hd
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            hd.open_dir_at(fd, b"link")
        finally:
            os.close(fd)
    assert exc.value.errno == errno.ELOOP
    with pytest.raises(FsError) as exc:
        open_host_dir(str(root / "link" / "x"), roots=[str(root)], create=True)
    assert exc.value.errno == errno.EACCES  # it resolves outside the root
    held = open_host_dir(str(root / "real" / "new"), roots=[str(root)], create=True)
    try:
        assert held.created
        # renaming the path away and planting a symlink does not move what is held
        os.rename(root / "real", root / "moved")
        os.symlink(outside, root / "real")
        os.mkdir(b"made-later", dir_fd=held.fd)
    finally:
        held.close()
    assert os.listdir(outside) == [] and os.listdir(root / "moved" / "new") == ["made-later"]
    with pytest.raises(FsError) as exc:
        import_tree(store, str(root / "nope"), "other")
    assert exc.value.errno == errno.ENOENT
