"""Catalog copies in a SeaweedFS bucket: ship, restore after losing the store directory,
incomplete and damaged copies, retention."""

import errno
import os
import shutil
import stat

import obstore
import pytest

from cas import Store
from cas.catalogcopy import CatalogCopyError, copies, resolve_url, restore, ship
from cas.fsck import fsck

from .s3help import bucket, object_keys

MiB = 1 << 20


def _write(vol, name: bytes, data: bytes) -> None:
    f = vol.create(vol.root, name, 0o640, 7, 8)
    vol.write(f.ino, 0, data)
    vol.setxattr(f.ino, b"user.k", name + b"-x", 0)


def walk(tree) -> dict:
    """path -> (mode, uid, gid, size, mtime, xattrs, contents) of everything in ``tree``."""
    out = {}

    def visit(ino, path):
        a = tree.getattr(ino)
        xattrs = sorted((n, tree.getxattr(ino, n)) for n in tree.listxattr(ino))
        data = tree.read(ino, 0, a.size + 1) if stat.S_ISREG(a.mode) else None
        out[path] = (a.mode, a.uid, a.gid, a.size, a.mtime_ns, xattrs, data)
        if stat.S_ISDIR(a.mode):
            for e in tree.readdir(ino):
                visit(e.ino, path.rstrip(b"/") + b"/" + e.name)

    visit(tree.root, b"/")
    return out


@pytest.fixture
def filled(s3_env):
    """A store with two snapshots and live changes after them, all committed."""
    vol, store = s3_env.vol, s3_env.store
    _write(vol, b"a", os.urandom(2 * MiB + 17))
    _write(vol, b"\xffodd name", b"small")
    store.create_snapshot("main", "one")
    _write(vol, b"b", os.urandom(1000))
    vol.unlink(vol.root, b"a")
    store.create_snapshot("main", "two")
    _write(vol, b"c", b"live after two")
    store.commit()
    return s3_env


def _views(store) -> dict:
    return {"live": walk(store.volume("main")),
            **{s.name: walk(store.snapshot_volume("main", s.name)) for s in store.snapshots("main")}}


def test_restore_after_losing_the_store_directory(filled, s3_bucket, s3_settings, tmp_path):
    store = filled.store
    before = _views(store)
    info = ship(store, s3_settings)
    _write(filled.vol, b"lost", b"committed after the last copy")
    store.commit()
    store.close()
    shutil.rmtree(filled.path)                              # the disk is gone

    url = f"s3://{s3_bucket}/store/catalogs/{info.store_id}"
    assert resolve_url(f"s3://{s3_bucket}/store", settings=s3_settings) == url
    dest = str(tmp_path / "restored")
    got = restore(url, dest, s3_settings)
    assert got.name == info.name and got.generation == info.generation
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o700
    assert sorted(os.listdir(dest)) == ["FORMAT", "catalog.duckdb"]
    with Store.open(dest, s3=s3_settings) as again:
        assert again.chunks.location == f"s3://{s3_bucket}/store"
        assert _views(again) == before                      # every snapshot and file, identical
        assert fsck(again).clean
        assert not any(e.name == b"lost" for e in again.volume("main").readdir(
            again.volume("main").root))                      # what came after the copy is lost
        filled.store = again                                 # the fixture closes it


def test_a_copy_without_its_manifest_is_ignored(filled, s3_bucket, s3_settings, tmp_path):
    first = ship(filled.store, s3_settings)
    second = ship(filled.store, s3_settings)
    client = bucket(s3_bucket, s3_settings)
    obstore.delete(client, f"store/catalogs/{second.store_id}/{second.name}/manifest.json")
    url = f"s3://{s3_bucket}/store/catalogs/{first.store_id}"
    assert copies(url, s3_settings) == [first.name]
    got = restore(url, str(tmp_path / "r"), s3_settings)
    assert got.name == first.name


def test_a_damaged_copy_file_is_refused(filled, s3_bucket, s3_settings, tmp_path):
    info = ship(filled.store, s3_settings)
    client = bucket(s3_bucket, s3_settings)
    key = f"store/catalogs/{info.store_id}/{info.name}/extents.parquet"
    data = bytearray(bytes(obstore.get(client, key).bytes()))
    data[len(data) // 2] ^= 1
    obstore.put(client, key, bytes(data))
    dest = tmp_path / "r"
    with pytest.raises(CatalogCopyError) as exc:
        restore(f"s3://{s3_bucket}/store/catalogs/{info.store_id}", str(dest), s3_settings)
    assert exc.value.errno == errno.EIO
    assert "extents.parquet is damaged" in str(exc.value)
    assert not os.path.exists(dest / "FORMAT") and not os.path.exists(dest / "catalog.duckdb")


def test_retention_keeps_the_newest_copies(filled, s3_bucket, s3_settings):
    names = [ship(filled.store, s3_settings, keep=3).name for _ in range(5)]
    url = f"s3://{s3_bucket}/store/catalogs/{_sid(filled)}"
    assert copies(url, s3_settings) == names[-3:]
    left = {k.split("/")[3] for k in object_keys(bucket(s3_bucket, s3_settings), "store/catalogs/")}
    assert left == set(names[-3:])                         # no file of a pruned copy remains


def _sid(env) -> str:
    from cas.catalogcopy import store_id
    return store_id(env.store)


def test_a_store_with_local_chunks_ships_nothing(env):
    with pytest.raises(OSError) as exc:
        ship(env.store)
    assert exc.value.errno == errno.EINVAL


def test_restore_refuses_a_non_empty_directory(filled, s3_bucket, s3_settings, tmp_path):
    info = ship(filled.store, s3_settings)
    dest = tmp_path / "busy"
    dest.mkdir()
    (dest / "x").write_text("mine")
    with pytest.raises(OSError) as exc:
        restore(f"s3://{s3_bucket}/store/catalogs/{info.store_id}", str(dest), s3_settings)
    assert exc.value.errno == errno.EEXIST
    assert os.listdir(dest) == ["x"]


def test_copy_references_name_the_chunks_a_copy_needs_after_the_files_are_gone(
        filled, s3_settings):
    from cas.catalogcopy import copy_references

    store, vol = filled.store, filled.vol
    ship(store, s3_settings)
    before = store.catalog.all_hashes()
    for s in store.snapshots("main"):
        store.delete_snapshot("main", s.name)
    for e in vol.readdir(vol.root):
        vol.unlink(vol.root, e.name)
    store.commit()
    assert store.catalog.all_hashes() == set()            # gc would free every chunk...
    assert copy_references(store, s3_settings) == before  # ...that the copy still needs


def test_gc_keeps_the_chunks_of_the_catalog_copies(filled, s3_bucket, s3_settings, tmp_path):
    """Files deleted after the last copy: gc frees nothing the copy names, so the copy restores
    with every chunk; once a newer copy is the only one kept, gc frees them."""
    from cas.gc import collect

    store, vol = filled.store, filled.vol
    before = _views(store)
    info = ship(store, s3_settings, keep=1)
    for s in store.snapshots("main"):
        store.delete_snapshot("main", s.name)
    for e in vol.readdir(vol.root):
        vol.unlink(vol.root, e.name)
    assert collect(store).chunks_freed == 0
    dest = str(tmp_path / "r")
    restore(f"s3://{s3_bucket}/store/catalogs/{info.store_id}", dest, s3_settings)
    with Store.open(dest, s3=s3_settings) as again:
        assert fsck(again).clean and _views(again) == before
    ship(store, s3_settings, keep=1)                      # prunes the old copy
    assert collect(store).chunks_freed > 0


def test_a_restored_store_has_the_format_line_of_a_store_on_object_storage():
    from cas.catalogcopy import FORMAT_LINE
    from cas.store import FORMAT_NAME, STORE_FORMAT_REMOTE

    assert FORMAT_LINE == f"{FORMAT_NAME} {STORE_FORMAT_REMOTE}\n"


def test_paths_with_quotes(s3_bucket, s3_settings, tmp_path):
    with Store.open(str(tmp_path / "it's"), create=True, chunks=f"s3://{s3_bucket}/q",
                    s3=s3_settings) as store:
        store.create_dataset("main")
        _write(store.volume("main"), b"f", b"quoted")
        store.commit()
        info = ship(store, s3_settings)
    dest = str(tmp_path / "re'stored")
    restore(f"s3://{s3_bucket}/q/catalogs/{info.store_id}", dest, s3_settings)
    with Store.open(dest, s3=s3_settings) as again:
        vol = again.volume("main")
        assert vol.read(vol.lookup(vol.root, b"f").ino, 0, 100) == b"quoted"
