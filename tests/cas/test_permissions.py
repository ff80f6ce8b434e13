"""Store files are owner-only whatever the umask: no other local user reads file contents."""

import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from cas import Store
from cas import perms

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to uid 65534 needs root")


def _all_modes(root: str) -> dict[str, int]:
    out = {root: os.lstat(root).st_mode}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            out[p] = os.lstat(p).st_mode
    return out


def _fill(store: Store) -> None:
    store.create_dataset("main")
    vol = store.volume("main")
    f = vol.create(vol.root, b"secret", 0o600, 0, 0)
    vol.write(f.ino, 0, b"top secret " * 20_000)  # whole chunks and a partial one
    g = vol.create(vol.root, b"small", 0o600, 0, 0)
    vol.write(g.ino, 0, b"tiny secret")
    store.commit()


def test_store_created_under_umask_0_is_owner_only(tmp_path):
    path = str(tmp_path / "s")
    old = os.umask(0)
    try:
        with Store.open(path, create=True) as store:
            _fill(store)
            open_modes = _all_modes(path)  # the WAL exists now (committed, not checkpointed)
        closed_modes = _all_modes(path)
    finally:
        os.umask(old)
    assert any(p.endswith(".wal") for p in open_modes), sorted(open_modes)
    assert sum(1 for p in open_modes if len(os.path.basename(p)) == 64) >= 2  # chunk files
    for modes in (open_modes, closed_modes):
        loose = {p: oct(m) for p, m in modes.items() if m & 0o077}
        assert loose == {}, loose
    assert stat.S_IMODE(closed_modes[path]) == 0o700
    for p, m in closed_modes.items():
        if stat.S_ISDIR(m):
            assert stat.S_IMODE(m) == 0o700, p
        elif len(os.path.basename(p)) == 64:
            assert stat.S_IMODE(m) == 0o400, p  # chunk files: read-only to the owner too
        else:
            assert stat.S_IMODE(m) == 0o600, p
    assert perms.audit(path, deep=True) == []


def test_owner_keeps_access_under_a_restrictive_umask(tmp_path):
    """Modes are set explicitly: a umask of 0777 does not lock the server out of its own store."""
    path = str(tmp_path / "s")
    old = os.umask(0o777)
    try:
        with Store.open(path, create=True) as store:
            _fill(store)
    finally:
        os.umask(old)
    for p, m in _all_modes(path).items():
        assert m & 0o400, (p, oct(m))
    with Store.open(path) as store:
        vol = store.volume("main")
        store.chunks.drop_cache()
        assert vol.read(vol.lookup(vol.root, b"small").ino, 0, 100) == b"tiny secret"


@needs_root
def test_another_user_cannot_read_chunks():
    # Under a world-searchable directory (pytest's tmp_path is 0700 and would hide everything).
    base = tempfile.mkdtemp(prefix="ninep-perm-", dir="/tmp")
    try:
        os.chmod(base, 0o755)
        path = os.path.join(base, "s")
        with Store.open(path, create=True) as store:
            _fill(store)
            chunk = next(iter(store.chunks))
            chunk_path = store.chunks.path(chunk)

        def read_as_nobody(p):
            return subprocess.run(["cat", p], user=65534, group=65534, capture_output=True, text=True)

        for p in (chunk_path, os.path.join(path, "catalog.duckdb")):
            r = read_as_nobody(p)
            assert r.returncode != 0 and "Permission denied" in r.stderr, (p, r)
        # the chunk file's own mode refuses too, even where the directories let uid 65534 through
        for d in (path, os.path.join(path, "chunks"), os.path.dirname(chunk_path)):
            os.chmod(d, 0o711)
        r = read_as_nobody(chunk_path)
        assert r.returncode != 0 and "Permission denied" in r.stderr, r
        assert stat.S_IMODE(os.stat(chunk_path).st_mode) == 0o400
    finally:
        shutil.rmtree(base)
