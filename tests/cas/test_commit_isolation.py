"""One inode's bad rows never stop the commit of the others (issue 15, section 1).

A value the catalog cannot hold is set aside at capture; a row that still
makes the transaction fail (the catalog's fault hook stands in for it) is
found by committing group by group. Either way the inode goes back to its
last committed state in memory, its fsync fails with EIO, every other inode
commits and fsyncs, and the store stays consistent across a reopen.
"""

from __future__ import annotations

import errno
import threading

import pytest
import structlog

from cas.fsck import fsck

S_IFREG = 0o100000


def _file(vol, parent, name, data):
    ino = vol.create(parent, name, S_IFREG | 0o644, 0, 0).ino
    vol.write(ino, 0, data)
    return ino


def _errors(logs):
    return [e for e in logs if e["log_level"] == "error"]


def test_out_of_range_value_sets_aside_one_inode(env):
    vol = env.vol
    a = vol.mkdir(vol.root, b"a", 0o40755, 0, 0).ino
    b = vol.mkdir(vol.root, b"b", 0o40755, 0, 0).ino
    bad = _file(vol, a, b"bad", b"v1")
    good = _file(vol, b, b"good", b"old")
    vol.fsync(bad)  # v1 of "bad" was fsynced: a later failed commit must not lose it
    committed = vol.getattr(bad)

    vol.write(bad, 0, b"v2-never-stored")
    vol.setattr(bad, mtime_ns=2**64)  # nothing in cas refuses it: the commit must cope
    vol.write(good, 0, b"new")
    fresh = _file(vol, b, b"fresh", b"fresh data")

    with structlog.testing.capture_logs() as logs:
        vol.fsync(good)  # the commit that sets "bad" aside; "good" is stored
        with pytest.raises(OSError) as exc:
            vol.fsync(bad)
    assert exc.value.errno == errno.EIO
    errors = _errors(logs)
    assert len(errors) == 1
    assert errors[0]["ino"] == bad and str(2**64) in errors[0]["value"]
    vol.fsync(fresh)

    # In memory, "bad" is what was committed: no client sees what was not stored.
    now = vol.getattr(bad)
    assert (now.mtime_ns, now.size) == (committed.mtime_ns, committed.size)
    assert vol.read(bad, 0, 100) == b"v1"
    # Until it changes again: then it commits and fsyncs normally.
    vol.write(bad, 0, b"v3")
    vol.fsync(bad)

    assert env.store.check() == []
    vol = env.reopen()
    assert vol.read(vol.lookup(b, b"good").ino, 0, 100) == b"new"
    assert vol.read(vol.lookup(b, b"fresh").ino, 0, 100) == b"fresh data"
    assert vol.read(vol.lookup(a, b"bad").ino, 0, 100) == b"v3"
    assert fsck(env.store).clean


def test_failing_transaction_isolates_the_group_of_the_bad_inode(env):
    vol = env.vol
    keep = vol.mkdir(vol.root, b"keep", 0o40755, 0, 0).ino
    moved = _file(vol, keep, b"moved", b"stays in keep")
    other = _file(vol, vol.root, b"other", b"o1")
    vol.fsync(other)
    vol.fsync(moved)

    # A new directory with two files, and an old file renamed into it: one group.
    new_dir = vol.mkdir(vol.root, b"new", 0o40755, 0, 0).ino
    poison = _file(vol, new_dir, b"poison", b"p")
    sibling = _file(vol, new_dir, b"sibling", b"s")
    vol.rename(keep, b"moved", new_dir, b"moved")
    vol.write(other, 0, b"o2")  # unrelated: must commit

    def fault(batch):
        if any(row[0] == poison for row in batch.inode_rows):
            raise ValueError(f"injected: inode {poison} cannot be stored")

    env.store.catalog.fault = fault
    results: dict[int, int] = {}

    def sync(ino):
        try:
            vol.fsync(ino)
            results[ino] = 0
        except OSError as exc:
            results[ino] = exc.errno

    with structlog.testing.capture_logs() as logs:
        threads = [threading.Thread(target=sync, args=(ino,)) for ino in (sibling, other, poison)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    env.store.catalog.fault = None
    assert results == {sibling: errno.EIO, other: 0, poison: errno.EIO}
    set_aside = [e for e in _errors(logs) if "inodes" in e]
    assert len(set_aside) == 1
    assert {new_dir, poison, sibling, moved, keep} <= set(set_aside[0]["inodes"])
    assert other not in set_aside[0]["inodes"]

    # The group is back to its committed state: no "new", "moved" still in "keep".
    with pytest.raises(OSError) as exc:
        vol.lookup(vol.root, b"new")
    assert exc.value.errno == errno.ENOENT
    assert vol.read(vol.lookup(keep, b"moved").ino, 0, 100) == b"stays in keep"
    assert vol.read(other, 0, 10) == b"o2"

    assert env.store.check() == []
    vol = env.reopen()
    assert vol.read(vol.lookup(vol.root, b"other").ino, 0, 10) == b"o2"
    assert [e.name for e in vol.readdir(vol.lookup(vol.root, b"keep").ino)] == [b"moved"]
    assert fsck(env.store).clean


def test_a_failure_of_every_batch_is_retried_not_set_aside(env):
    """A data error that even a batch without rows hits is not a row's fault: keep everything."""
    vol = env.vol
    a = _file(vol, vol.root, b"a", b"a1")
    d = vol.mkdir(vol.root, b"d", 0o40755, 0, 0).ino
    b = _file(vol, d, b"b", b"b1")

    def fault(batch):
        raise ValueError("injected: every commit fails")

    env.store.catalog.fault = fault
    with pytest.raises(OSError) as exc:
        vol.fsync(a)
    assert exc.value.errno == errno.EIO
    assert vol.read(a, 0, 10) == b"a1" and vol.read(b, 0, 10) == b"b1"  # nothing reverted
    env.store.catalog.fault = None
    vol.fsync(b)
    vol = env.reopen()
    assert vol.read(vol.lookup(vol.root, b"a").ino, 0, 10) == b"a1"
    assert vol.read(vol.lookup(vol.lookup(vol.root, b"d").ino, b"b").ino, 0, 10) == b"b1"
    assert fsck(env.store).clean
