"""A truncate racing a commit or buffer flush never brings old data back.

Commits and flushes store copies of chunk buffers outside the store lock and
install them afterwards. A file shortened in between must not get the old
chunk back past its new end: extending it again must read zeros.
"""

from __future__ import annotations

import stat
import threading

import pytest

from cas import Store, filedata
from cas.records import Inode

CS = 4096
SIZE = 10000  # chunks 0 and 1 stored whole, chunk 2 (1808 bytes) buffered


def _race(tmp_path, new: int, via: str):
    s = Store.open(str(tmp_path / "s"), create=True, chunk_size=CS)
    s.create_dataset("main")
    v = s.volume("main")
    try:
        ino = v.create(v.root, b"f", stat.S_IFREG | 0o644, 0, 0).ino
        v.write(ino, 0, b"A" * SIZE)
        v.write(ino, CS + 10, b"B" * 100)  # chunk 1 buffered too
        orig = v.changes.store_jobs
        once = [True]

        def patched(jobs):
            out = orig(jobs)
            if once[0]:
                once[0] = False
                t = threading.Thread(target=lambda: v.setattr(ino, size=new))
                t.start()
                t.join()
            return out

        v.changes.store_jobs = patched
        try:
            s.commit() if via == "commit" else v.flush_buffers()
        finally:
            v.changes.store_jobs = orig
        assert not once[0]
        assert v.getattr(ino).size == new
        v.setattr(ino, size=SIZE)
        expect = (b"A" * SIZE)[:new]
        if new > CS + 10:
            expect = expect[:CS + 10] + b"B" * min(100, new - CS - 10) + expect[CS + 110:]
        expect += bytes(SIZE - new)
        assert v.read(ino, 0, SIZE) == expect
        s.commit()
        assert v.read(ino, 0, SIZE) == expect
        assert s.check() == []
    finally:
        s.close()
    s = Store.open(str(tmp_path / "s"), chunk_size=CS)
    try:
        v = s.volume("main")
        assert v.read(ino, 0, SIZE) == expect
        assert s.check() == []
    finally:
        s.close()


@pytest.mark.parametrize("via", ["commit", "flush"])
@pytest.mark.parametrize("new", [0, 100, CS, CS + 50, 2 * CS + 7])
def test_truncate_during_store_phase(tmp_path, new, via):
    _race(tmp_path, new, via)


def _node() -> Inode:
    n = Inode(1, 0, stat.S_IFREG | 0o644, 0, 0, 1, 0, 3 * CS, 0, 0, 0, 0, 0, 1, 0, None)
    n.extents = {}
    return n


def test_install_rejects_chunks_older_than_a_cut():
    n = _node()
    n.wseq = 5
    filedata.truncate(n, 0, CS, None)          # cut everything at version 6
    n.size = 0
    assert filedata.install(n, 0, "h0", CS, 5)[0] is False
    assert filedata.install(n, 2, "h2", CS, 5)[0] is False
    n.size = 3 * CS                            # extend, then a later cut at a higher index
    filedata.truncate(n, 2 * CS, CS, None)
    n.size = 2 * CS
    assert filedata.install(n, 0, "h0", CS, 5)[0] is False   # the earlier cut still applies
    assert filedata.install(n, 0, "h0", CS, n.wseq + 1)[0] is True
    assert filedata.install(n, 1, "h1", CS, 6)[0] is True    # newer than the cut at index 0
    assert filedata.install(n, 2, "h2", CS, 6)[0] is False   # older than the cut at index 2
