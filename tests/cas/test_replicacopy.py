"""A replica's working copies against SeaweedFS (cas/replicacopy.py): restore and open a copy
read-only, its chunk set, the replica's own pool membership (role replica, id kept across
runs), the working-directory lock; and registry records of format 1 and 2."""

import json
import os

import pytest

from cas import Store, StoreLockedError
from cas.catalogcopy import resolve_url, ship
from cas.errors import StoreFormatError
from cas.pool import ROLE_REPLICA, ROLE_STORE, Member
from cas.replicacopy import WorkingCopies, chunk_location

MiB = 1 << 20


@pytest.fixture
def primary(s3_bucket, tmp_path):
    """A store in the bucket with a snapshot and a shipped copy: (store path, copies URL)."""
    path = str(tmp_path / "primary")
    with Store.open(path, create=True, chunks=f"s3://{s3_bucket}/rc") as store:
        store.create_dataset("main")
        vol = store.volume("main")
        f = vol.create(vol.root, b"a", 0o644, 0, 0)
        vol.write(f.ino, 0, os.urandom(2 * MiB + 5))
        store.create_snapshot("main", "one")
        info = ship(store)
        sid = store.pool.store_id
    return path, resolve_url(f"s3://{s3_bucket}/rc"), sid, info.name


def test_checkout_serves_the_copy_read_only_and_publishes_its_chunks(primary, tmp_path):
    path, url, sid, name = primary
    assert url.endswith(f"/rc/catalogs/{sid}")
    work = str(tmp_path / "work")
    with WorkingCopies(work, url) as copies:
        assert copies.pool.store_id != sid and copies.pool.role == ROLE_REPLICA
        assert copies.newest() == name
        store = copies.checkout(name)
        try:
            assert store.replica and store.pool is None
            with pytest.raises(StoreFormatError, match="replica's working copy"):
                Store.open(store.path)           # not as a store: it holds the primary's id
            snap = store.snapshot_volume("main", "one")
            assert snap.getattr(snap.lookup(snap.root, b"a").ino).size == 2 * MiB + 5
            want = {r[0] for r in store.catalog.query("SELECT DISTINCT hash FROM extents")}
            assert copies.hashes(name) == want and len(want) == 3
            copies.publish(copies.hashes(name))
            me = copies.pool.member(copies.pool.store_id)
            assert me.role == ROLE_REPLICA and me.count == 3 and me.format == 2
            assert {m.id: m.role for m in copies.pool.members()} == {
                sid: ROLE_STORE, copies.pool.store_id: ROLE_REPLICA}
        finally:
            copies.discard(store)
        assert not os.path.exists(store.path)
        with pytest.raises(StoreLockedError):
            WorkingCopies(work, url).__enter__()
        first_id = copies.pool.store_id
    with WorkingCopies(work, url) as again:                     # the id survives a restart
        assert again.pool.store_id == first_id
        assert os.listdir(os.path.join(work, "copies")) == []


def test_chunk_location_of_a_copies_url():
    assert chunk_location("s3://b/p/q/catalogs/abc") == "s3://b/p/q"
    with pytest.raises(ValueError):
        chunk_location("s3://b/p")


def test_registry_records_of_format_1_read_as_stores_and_unknown_formats_are_refused():
    v1 = {"format": 1, "id": "a" * 32, "host": "h", "path": "/p", "created": 1.0}
    assert Member.parse(json.dumps(v1).encode(), "k").role == ROLE_STORE
    v2 = dict(v1, format=2, role=ROLE_REPLICA)
    assert Member.parse(json.dumps(v2).encode(), "k").role == ROLE_REPLICA
    with pytest.raises(StoreFormatError) as exc:
        Member.parse(json.dumps(dict(v1, format=3)).encode(), "k")
    assert "format 3" in str(exc.value)
