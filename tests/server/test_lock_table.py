"""The lock table and its interval sets against byte-by-byte models."""

from __future__ import annotations

import errno
import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cas import FsError
from ninep_server.intervals import IntervalSet
from ninep_server.locks import INF, LockTable, lock_range
from ninep_server.protocol import LockType

R, W, U = LockType.RDLCK, LockType.WRLCK, LockType.UNLCK
_serial = itertools.count()


@dataclass(eq=False)
class Span:
    start: int
    end: int
    serial: int = field(default_factory=_serial.__next__)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40), st.integers(0, 15), st.integers(0, 50), st.integers(0, 20))))
def test_interval_set_matches_a_list(ops):
    tree: IntervalSet[Span] = IntervalSet()
    model: list[Span] = []
    for add, start, length, qstart, qlen in ops:
        if add or not model:
            span = Span(start, start + length)
            tree.add(span)
            model.append(span)
        else:
            span = model.pop(start % len(model))
            tree.remove(span)
        want = sorted((s for s in model if s.start <= qstart + qlen and s.end >= qstart), key=lambda s: (s.start, s.serial))
        assert list(tree.overlapping(qstart, qstart + qlen)) == want
        assert len(tree) == len(model)
        assert list(tree) == sorted(model, key=lambda s: (s.start, s.serial))
    with pytest.raises(KeyError):
        tree.remove(Span(0, 0))


# A byte-level model of POSIX locks over bytes 0..TAIL, where TAIL stands for
# every byte from there to the end of the file: no finite range reaches it.
MAX_START, MAX_LENGTH = 20, 6
TAIL = MAX_START + MAX_LENGTH
OWNERS = [(1, b"a", 1), (1, b"a", 2), (2, b"a", 1), (3, b"b", 7)]


def _bytes(start: int, end: int) -> range:
    return range(start, min(end, TAIL) + 1)


def _model_conflict(model, owner, type_, start, end) -> bool:
    for other, held in model.items():
        if other == owner:
            continue
        for b in _bytes(start, end):
            t = held.get(b)
            if t is not None and (t == W or type_ == W):
                return True
    return False


def _runs(held: dict[int, int]) -> list[tuple[int, int, int]]:
    """Maximal runs of one type: what a canonical (merged) lock list holds."""
    runs = []
    for b in sorted(held):
        if runs and runs[-1][1] == b - 1 and runs[-1][2] == held[b]:
            runs[-1] = (runs[-1][0], b, held[b])
        else:
            runs.append((b, b, held[b]))
    return runs


ops_strategy = st.lists(
    st.tuples(
        st.integers(0, len(OWNERS) - 1),
        st.sampled_from([R, W, U]),
        st.integers(0, MAX_START),
        st.integers(0, MAX_LENGTH),  # 0 means to the end
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops_strategy, st.lists(st.integers(1, 3), max_size=3))
def test_lock_table_matches_the_byte_model(ops, ended):
    table = LockTable(max_per_session=10_000)
    key = ("main", 5)
    model: dict = {o: {} for o in OWNERS}
    for i, (who, type_, start, length) in enumerate(ops):
        owner = OWNERS[who]
        s, e = lock_range(start, length)
        e_model = TAIL if e == INF else e
        conflict = type_ != U and _model_conflict(model, owner, type_, s, e_model)
        found = table.conflict(key, owner, type_, s, e) if type_ != U else None
        assert (found is not None) == conflict
        if found is not None:
            assert found.owner != owner and (found.type == W or type_ == W)
            assert found.start <= e and found.end >= s
        assert table.try_lock(key, owner, type_, s, e) == (not conflict)
        if not conflict:
            for b in _bytes(s, e_model):
                if type_ == U:
                    model[owner].pop(b, None)
                else:
                    model[owner][b] = type_
        if i == len(ops) // 2:
            for sid in ended:  # a session ends halfway through
                table.release_session(sid)
                for o in OWNERS:
                    if o[0] == sid:
                        model[o] = {}
        # Every owner's locks are exactly the merged runs of the model.
        for o in OWNERS:
            got = [(h.start, min(h.end, TAIL), h.type) for h in table.held(key) if h.owner == o]
            assert got == _runs(model[o]), o
        for sid in {o[0] for o in OWNERS}:
            assert table.count(sid) == sum(len(_runs(model[o])) for o in OWNERS if o[0] == sid)


def test_the_cap_refuses_new_locks_with_enolck_and_counts_splits_and_merges():
    table = LockTable(max_per_session=3)
    key = ("main", 1)
    owner = (1, b"c", 1)
    for i in range(3):
        assert table.try_lock(key, owner, R, 10 * i, 10 * i + 2)  # [0,2] [10,12] [20,22]
    with pytest.raises(FsError) as info:
        table.try_lock(key, owner, R, 100, 101)
    assert info.value.errno == errno.ENOLCK
    with pytest.raises(FsError) as info:  # unlocking the middle would split [0,2] in two
        table.try_lock(key, owner, U, 1, 1)
    assert info.value.errno == errno.ENOLCK
    assert table.try_lock(key, owner, U, 0, 0)  # trimming an end keeps the count
    assert table.try_lock(key, owner, W, 1, 2)  # so does converting
    assert table.try_lock(key, owner, R, 11, 21)  # merging [10,12] and [20,22] lowers it
    assert [(h.start, h.end, h.type) for h in table.held(key)] == [(1, 2, W), (10, 22, R)]
    assert table.count(1) == 2
    assert table.try_lock(key, owner, U, 0, 0)  # nothing held there: nothing changes
    assert table.try_lock(key, owner, U, 0, INF)
    assert table.count(1) == 0 and table.held(key) == []
    with pytest.raises(FsError) as info:  # a lock's owner name is bounded too
        table.try_lock(key, (1, b"x" * 256, 1), R, 500, 500)
    assert info.value.errno == errno.EINVAL
    # another session has its own allowance
    other = LockTable(max_per_session=3)
    for sid in (1, 2):
        for i in range(3):
            assert other.try_lock(key, (sid, b"c", 1), R, 10 * i, 10 * i + 1)
