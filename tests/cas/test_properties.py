"""Dataset properties in the catalog, and the quota on the live tree's logical bytes."""

from __future__ import annotations

import errno
import stat

import pytest

from cas import FsError, Store

REG = stat.S_IFREG | 0o644


@pytest.fixture
def store(tmp_path):
    s = Store.open(str(tmp_path / "s"), create=True)
    s.create_dataset("main")
    yield s
    s.close()


def edquot(fn, *args, **kwargs):
    with pytest.raises(FsError) as info:
        fn(*args, **kwargs)
    assert info.value.errno == errno.EDQUOT


def test_quota_limits_logical_bytes_and_frees_on_delete(store, tmp_path):
    vol = store.volume("main")
    a = vol.create(vol.root, b"a", REG, 0, 0).ino
    vol.write(a, 0, b"x" * 6000)
    assert store.set_dataset_properties("main", {"quota": 10_000})["quota"] == 10_000
    b = vol.create(vol.root, b"b", REG, 0, 0).ino
    vol.write(b, 0, b"y" * 4000)  # exactly at the quota
    edquot(vol.write, b, 4000, b"z")
    edquot(vol.setattr, b, size=5000)  # truncate up counts too
    vol.write(a, 0, b"o" * 6000)  # overwriting in place costs nothing
    vol.setattr(a, size=1000)  # shrinking frees room
    vol.write(b, 4000, b"z" * 5000)
    assert vol.logical_bytes() == 10_000
    st = vol.statfs()
    assert st.blocks == 10_000 // st.bsize and st.bfree == 0
    vol.unlink(vol.root, b"b")  # deleting frees its bytes
    assert vol.logical_bytes() == 1000
    vol.write(a, 1000, b"n" * 8000)
    # the quota and the accounting survive a reopen
    path = store.path
    store.close()
    with Store.open(path) as again:
        v2 = again.volume("main")
        assert v2.quota == 10_000 and v2.logical_bytes() == 9000
        edquot(v2.write, v2.lookup(v2.root, b"a").ino, 9000, b"q" * 1001)
        again.set_dataset_properties("main", {"quota": 0})  # 0 lifts it
        v2.write(v2.lookup(v2.root, b"a").ino, 9000, b"q" * 1001)


def test_hard_links_and_open_unlinked_files_count_once(store):
    vol = store.volume("main")
    f = vol.create(vol.root, b"f", REG, 0, 0).ino
    vol.write(f, 0, b"x" * 3000)
    vol.link(f, vol.root, b"g")
    assert vol.logical_bytes() == 3000
    vol.open(f)
    vol.unlink(vol.root, b"f")
    vol.unlink(vol.root, b"g")
    assert vol.logical_bytes() == 3000  # still open
    vol.release(f)
    assert vol.logical_bytes() == 0


def test_properties_validate_persist_and_go_with_the_dataset(store):
    assert store.dataset_properties("main") == {"read_only": False, "quota": 0, "schedule": [], "origin": None}
    sched = [{"name": "hourly", "every": "1h", "keep": 24}]
    store.set_dataset_properties("main", {"read_only": True, "schedule": sched})
    assert store.dataset_properties("main")["schedule"] == sched
    for bad in ({"color": "red"}, {"quota": -1}, {"quota": "big"}, {"read_only": "yes"}, {"schedule": "hourly"}):
        with pytest.raises(FsError) as info:
            store.set_dataset_properties("main", bad)
        assert info.value.errno == errno.EINVAL
    store.create_dataset("other")
    store.set_dataset_properties("other", {"quota": 5})
    store.delete_dataset("other")
    store.create_dataset("other2")  # may reuse the id: must not inherit anything
    assert store.dataset_properties("other2")["quota"] == 0
    with pytest.raises(FsError) as info:
        store.dataset_properties("gone")
    assert info.value.errno == errno.ENOENT
