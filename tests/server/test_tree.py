"""The declared tree interface: the live Volume, snapshot views and /.snapshots all satisfy
cas.Tree, and the read-only ones refuse every mutator with EROFS."""

from __future__ import annotations

import errno
import inspect

import pytest

from cas import ReadOnlyTree, SnapshotVolume, Store, Tree, Volume
from cas.tree import MUTATORS
from ninep_server.snapdir import SnapshotDirectory


@pytest.fixture
def trees(tmp_path):
    """A live volume with a file, a snapshot view of it, and its /.snapshots directory."""
    store = Store.open(str(tmp_path / "s"), create=True)
    store.create_dataset("main")
    vol = store.volume("main")
    f = vol.create(vol.root, b"f", 0o644, 0, 0)
    vol.write(f.ino, 0, b"data")
    store.create_snapshot("main", "s")
    snap = store.snapshot_volume("main", "s")
    snapdir = SnapshotDirectory(store, "main", vol.root)
    yield vol, snap, snapdir, f.ino
    store.close()


def _members() -> list[str]:
    return [n for n in dir(Tree) if not n.startswith("_")] + list(Tree.__annotations__)


def _params(fn) -> list[tuple[str, object, bool]]:
    """(name, kind, has a default) of each parameter but self."""
    return [(p.name, p.kind, p.default is not p.empty)
            for p in inspect.signature(fn).parameters.values() if p.name != "self"]


def test_the_protocol_names_what_the_handlers_call():
    assert set(_members()) == {
        "root", "read_only", "lookup", "getattr", "setattr", "create", "mkdir", "mknod",
        "symlink", "readlink", "link", "unlink", "rmdir", "rename", "readdir", "resolve", "open",
        "release", "read", "read_cached", "write", "write_nowait", "fsync", "getxattr",
        "listxattr", "access_acl", "setxattr", "removexattr", "statfs"}
    assert set(MUTATORS) <= set(_members())


def test_every_tree_satisfies_the_protocol(trees):
    for tree in trees[:3]:
        assert isinstance(tree, Tree), type(tree).__name__
        for name in _members():
            assert hasattr(tree, name), (type(tree).__name__, name)
            if callable(getattr(Tree, name, None)):
                assert _params(getattr(tree, name)) == _params(getattr(Tree, name)), \
                    (type(tree).__name__, name)


def test_read_only_is_one_piece(trees):
    vol, snap, snapdir, _ = trees
    assert not isinstance(vol, ReadOnlyTree) and not vol.read_only
    for tree in (snap, snapdir):
        assert isinstance(tree, ReadOnlyTree) and tree.read_only
        for name in MUTATORS:  # not overridden one by one
            assert getattr(type(tree), name) is getattr(ReadOnlyTree, name), name
    assert not issubclass(SnapshotVolume, Volume)


_CALLS = {
    "setattr": lambda t, ino: t.setattr(ino, mode=0o600),
    "create": lambda t, ino: t.create(t.root, b"g", 0o644, 0, 0),
    "mkdir": lambda t, ino: t.mkdir(t.root, b"g", 0o755, 0, 0),
    "mknod": lambda t, ino: t.mknod(t.root, b"g", 0o10644, 0, 0, 0),
    "symlink": lambda t, ino: t.symlink(t.root, b"g", b"f", 0, 0),
    "link": lambda t, ino: t.link(ino, t.root, b"g"),
    "unlink": lambda t, ino: t.unlink(t.root, b"f"),
    "rmdir": lambda t, ino: t.rmdir(t.root, b"f"),
    "rename": lambda t, ino: t.rename(t.root, b"f", t.root, b"g"),
    "write": lambda t, ino: t.write(ino, 0, b"x"),
    "write_nowait": lambda t, ino: t.write_nowait(ino, 0, b"x"),
    "setxattr": lambda t, ino: t.setxattr(ino, b"user.x", b"1", 0),
    "removexattr": lambda t, ino: t.removexattr(ino, b"user.x"),
}


def test_every_mutator_of_a_read_only_tree_is_erofs(trees):
    vol, snap, snapdir, ino = trees
    assert set(_CALLS) == set(MUTATORS)
    for tree in (snap, snapdir):
        for name, call in _CALLS.items():
            with pytest.raises(OSError) as exc:
                call(tree, ino)
            assert exc.value.errno == errno.EROFS, (type(tree).__name__, name)
    assert snap.read(ino, 0, 10) == b"data"
    assert vol.read(ino, 0, 10) == b"data"


def test_the_snapshot_directory_keeps_its_errnos(trees):
    """What the synthetic directory answered through its old catch-all, call by call."""
    _, _, snapdir, _ = trees
    for call in (lambda: snapdir.resolve(b"/s"), lambda: snapdir.read_cached(snapdir.root, 0, 1),
                 lambda: snapdir.fsync(snapdir.root)):
        with pytest.raises(OSError) as exc:
            call()
        assert exc.value.errno == errno.EROFS
    for call, code in ((lambda: snapdir.read(snapdir.root, 0, 1), errno.EISDIR),
                       (lambda: snapdir.readlink(snapdir.root), errno.EINVAL),
                       (lambda: snapdir.getxattr(snapdir.root, b"user.x"), errno.ENODATA),
                       (lambda: snapdir.lookup(snapdir.root, b"s"), errno.EXDEV),
                       (lambda: snapdir.lookup(snapdir.root, b"nope"), errno.ENOENT),
                       (lambda: snapdir.getattr(snapdir.root + 1), errno.ESTALE)):
        with pytest.raises(OSError) as exc:
            call()
        assert exc.value.errno == code
    assert [e.name for e in snapdir.readdir(snapdir.root)] == [b"s"]
    assert snapdir.listxattr(snapdir.root) == [] and snapdir.release(snapdir.root) is None
