"""Hypothesis stateful test: S3Chunks against a dict model.

Random puts (single and batched, pinned or not), reads, deletions, a gc
sweep that spares pinned and referenced chunks, unpins, cache drops and
reopening, with a disk cache a few chunks big so reads evict; after every
step the bucket's listing, the pins and the cache bound must match the model.
"""

import uuid

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from cas.chunkbase import chunk_hash
from cas.s3chunks import S3Chunks

CONTENTS = [bytes([i]) * (300 + 97 * i) for i in range(8)]
CACHE_LIMIT = 3 * 1000
content = st.sampled_from(CONTENTS)


class BackendMachine(RuleBasedStateMachine):
    """One S3Chunks on a fresh prefix; ``model`` maps stored hashes to content."""

    bucket = ""
    settings = None
    tmp = None
    checks = 0

    def __init__(self):
        super().__init__()
        self.url = f"s3://{self.bucket}/m-{uuid.uuid4().hex[:10]}"
        self.cache_dir = str(self.tmp / uuid.uuid4().hex[:10])
        self.chunks = self._open(create=True)
        self.model: dict[str, bytes] = {}
        self.pins: dict[str, int] = {}
        self.referenced: set[str] = set()
        self.uploads = 0

    def _open(self, create: bool) -> S3Chunks:
        return S3Chunks(self.url, self.settings, self.cache_dir, CACHE_LIMIT, chunk_size=1 << 20,
                        create=create, io_threads=3, memory_bytes=2 * max(map(len, CONTENTS)))

    def teardown(self):
        self.chunks.close()

    def _stored(self, data: bytes, pin: bool) -> str:
        h = chunk_hash(data)
        if h not in self.model:
            self.uploads += 1
        self.model[h] = data
        if pin:
            self.pins[h] = self.pins.get(h, 0) + 1
        return h

    @rule(data=content, pin=st.booleans())
    def put(self, data, pin):
        assert self.chunks.put(data, pin=pin) == chunk_hash(data)
        self._stored(data, pin)

    @rule(batch=st.lists(content, max_size=6), pin=st.booleans())
    def put_many(self, batch, pin):
        got = self.chunks.put_many(batch, pin=pin)
        assert got == [self._stored(d, pin) for d in batch]

    @rule(data=content)
    def get(self, data):
        h = chunk_hash(data)
        if h in self.model:
            assert self.chunks.get(h) == data
        else:
            with pytest.raises(FileNotFoundError):
                self.chunks.get(h)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def get_into(self, data):
        h = data.draw(st.sampled_from(sorted(self.model)))
        buf = bytearray(len(self.model[h]))
        assert self.chunks.get_into(h, memoryview(buf)) == len(buf)
        assert bytes(buf) == self.model[h]

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def keep(self, data):
        """A catalog row starts naming this chunk."""
        self.referenced.add(data.draw(st.sampled_from(sorted(self.model))))

    @precondition(lambda self: self.pins)
    @rule(data=st.data())
    def unpin(self, data):
        h = data.draw(st.sampled_from(sorted(self.pins)))
        self.chunks.unpin(h)
        self.pins[h] -= 1
        if not self.pins[h]:
            del self.pins[h]

    @rule(data=content)
    def delete_if_unpinned(self, data):
        h = chunk_hash(data)
        expect = h in self.model and h not in self.pins
        assert self.chunks.delete_if_unpinned(h) is expect
        if expect:
            del self.model[h]
            self.referenced.discard(h)

    @rule()
    def gc(self):
        """Sweep what is neither referenced nor pinned."""
        for h in self.chunks.sizes():
            if h not in self.referenced:
                freed = self.chunks.delete_if_unpinned(h)
                assert freed is (h not in self.pins)
                if freed:
                    del self.model[h]

    @rule()
    def drop_cache(self):
        self.chunks.drop_cache()

    @rule()
    def reopen(self):
        self.chunks.close()
        self.chunks = self._open(create=False)
        self.pins.clear()                            # pins live in memory only
        self.uploads = 0

    @invariant()
    def matches_model(self):
        assert self.chunks.sizes() == {h: len(d) for h, d in self.model.items()}
        assert all(self.chunks.pinned(h) for h in self.pins)
        cache = self.chunks.cache
        assert cache.bytes <= CACHE_LIMIT
        assert set(cache.order()) <= set(self.model)
        assert self.chunks.stats().uploads == self.uploads   # a present chunk is never sent again
        BackendMachine.checks += 1


def test_s3_backend_against_a_model(tmp_path, s3_bucket, s3_settings):
    BackendMachine.bucket, BackendMachine.settings, BackendMachine.tmp = s3_bucket, s3_settings, tmp_path
    run_state_machine_as_test(BackendMachine, settings=settings(
        max_examples=30, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    assert BackendMachine.checks >= 100
