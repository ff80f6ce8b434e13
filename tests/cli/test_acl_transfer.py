"""``ninep import`` reads POSIX ACLs from host files and ``ninep export`` writes them back.

The host filesystem (ext4 or tmpfs, as root here) keeps ACLs in the same
``system.posix_acl_*`` xattrs the store does, so both directions are byte
comparisons.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest

from cas import Store, acl
from cas.acl import GROUP, GROUP_OBJ, MASK, OTHER, USER, USER_OBJ, Entry

from .test_storage_commands import run


def A(*entries) -> bytes:
    return acl.encode(tuple(Entry(*e) for e in entries))


FILE_ACL = A((USER_OBJ, 6), (USER, 4, 4242), (USER, 6, 0xFFFFFFFE), (GROUP_OBJ, 4),
             (GROUP, 6, 4343), (MASK, 6), (OTHER, 0))
DIR_ACL = A((USER_OBJ, 7), (USER, 5, 4242), (GROUP_OBJ, 5), (MASK, 7), (OTHER, 5))


def _host_acls(path) -> dict:
    names = [n for n in os.listxattr(path) if n.startswith("system.posix_acl_")]
    return {n: os.getxattr(path, n) for n in names}


@pytest.fixture
def src(tmp_path):
    s = tmp_path / "src"
    (s / "d").mkdir(parents=True)
    (s / "d" / "plain").write_bytes(b"no acl")
    (s / "f").write_bytes(b"x")
    try:
        os.setxattr(s / "f", "system.posix_acl_access", FILE_ACL)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTSUP):
            pytest.skip(f"{tmp_path} does not support POSIX ACLs")
        raise
    os.setxattr(s / "d", "system.posix_acl_access", DIR_ACL)
    os.setxattr(s / "d", "system.posix_acl_default", DIR_ACL)
    # created after the default ACL: inherits one; then removed, so it has none
    (s / "d" / "inherited").write_bytes(b"")
    (s / "d" / "bare").write_bytes(b"")
    os.removexattr(s / "d" / "bare", "system.posix_acl_access")
    return s


def test_import_then_export_keeps_acls(capsys, tmp_path, src):
    store_dir = str(tmp_path / "store")
    assert run(capsys, "dataset", "create", "main", "--store", store_dir)[0] == 0
    assert run(capsys, "import", str(src), "main", "--store", store_dir)[0] == 0
    paths = [b"f", b"d", b"d/plain", b"d/inherited", b"d/bare"]
    store = Store.open(store_dir)
    try:
        vol = store.volume("main")
        for path in paths:
            host = src / os.fsdecode(path)
            a = vol.resolve(path)
            assert a.mode == os.stat(host).st_mode, path
            mine = {n.decode(): vol.getxattr(a.ino, n) for n in vol.listxattr(a.ino)
                    if n in acl.NAMES}
            assert mine == _host_acls(host), path
        assert acl.ACCESS in vol.listxattr(vol.resolve(b"d/inherited").ino)
        assert vol.listxattr(vol.resolve(b"d/bare").ino) == []
    finally:
        store.close()
    dest = tmp_path / "dest"
    assert run(capsys, "export", "main", str(dest), "--store", store_dir)[0] == 0
    for path in paths:
        host, out = src / os.fsdecode(path), dest / os.fsdecode(path)
        assert _host_acls(out) == _host_acls(host), path
        assert stat.S_IMODE(os.stat(out).st_mode) == stat.S_IMODE(os.stat(host).st_mode), path
    assert _host_acls(dest / "f")["system.posix_acl_access"] == FILE_ACL
    assert _host_acls(dest / "d") == {"system.posix_acl_access": DIR_ACL,
                                      "system.posix_acl_default": DIR_ACL}
