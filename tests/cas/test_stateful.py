"""Hypothesis stateful test: Volume against a dict-based model.

Random create/mkdir/write/truncate/rename/link/unlink/rmdir/xattr sequences,
interleaved with commits, cache evictions and store reopen; after every step
the observable tree (names, types, sizes, nlink, content, xattrs) must match.
"""

import errno
import os
import uuid

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant, rule, run_state_machine_as_test

from cas import Store
from cas.inodes import INODE_COST

from .model import CHUNK, NAMES, TreeMachine


class VolumeMachine(TreeMachine):
    @rule(data=st.data(), name=NAMES, kind=st.sampled_from(["f", "d"]))
    def make(self, data, name, kind):
        d = data.draw(st.sampled_from(self.dirs()))
        code = errno.EEXIST if name in self.nodes[d].children else None
        fn = self.vol.create if kind == "f" else self.vol.mkdir
        if self.expect(code, fn, self.ino[d], name, 0o755, 1, 2):
            self.add_node(d, name, kind)

    # -- the comparison ----------------------------------------------------
    @invariant()
    def same_tree(self):
        vol = self.vol
        for d in self.dirs():
            node = self.nodes[d]
            ents = {e.name: e.ino for e in vol.readdir(self.ino[d])}
            assert set(ents) == set(node.children), (d, sorted(ents), sorted(node.children))
            a = vol.getattr(self.ino[d])
            assert a.nlink == node.nlink, ("dir nlink", d)
            assert sorted(vol.listxattr(self.ino[d])) == sorted(node.xattrs)
            for name, c in node.children.items():
                assert ents[name] == self.ino[c]
        for f in self.files():
            node = self.nodes[f]
            a = vol.getattr(self.ino[f])
            assert a.size == len(node.data)
            assert a.nlink == node.nlink
            assert vol.read(self.ino[f], 0, len(node.data) + 10) == bytes(node.data)
            assert {k: vol.getxattr(self.ino[f], k) for k in vol.listxattr(self.ino[f])} == node.xattrs


VolumeMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("CAS_STATEFUL_EXAMPLES", "60")), stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestVolumeStateful = VolumeMachine.TestCase


class TinyCacheMachine(VolumeMachine):
    """The same machine with a metadata cache of 3 records and about 5 rows: almost every
    operation evicts records (between operations) and rebuilds others from rows or the catalog."""

    def opened(self, store) -> None:
        store.commits.record_bytes = 3 * INODE_COST
        store.commits.row_bytes = 1000


def test_volume_stateful_with_a_tiny_metadata_cache():
    run_state_machine_as_test(TinyCacheMachine, settings=settings(
        max_examples=int(os.environ.get("CAS_STATEFUL_EXAMPLES", "60")), stateful_step_count=40,
        deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


class S3VolumeMachine(VolumeMachine):
    """The same machine on a store whose chunks are in a SeaweedFS bucket (a fresh prefix per
    example), with a local chunk cache of a few chunks so reads evict and download."""

    bucket = ""
    s3 = None

    def store_options(self) -> dict:
        return {"chunks": f"s3://{self.bucket}/{uuid.uuid4().hex[:12]}", "s3": self.s3,
                "chunk_cache_bytes": 4 * CHUNK}


def test_volume_stateful_on_s3(s3_bucket, s3_settings):
    """The Volume-vs-model test on an S3-backed store (fewer examples: every chunk is a request)."""
    S3VolumeMachine.bucket, S3VolumeMachine.s3 = s3_bucket, s3_settings
    run_state_machine_as_test(S3VolumeMachine, settings=settings(
        max_examples=int(os.environ.get("CAS_STATEFUL_S3_EXAMPLES", "30")), stateful_step_count=30,
        deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


def test_final_check_after_machine(tmp_path):
    """A store left by random operations passes check() after reopen."""
    s = Store.open(str(tmp_path / "s"), create=True, chunk_size=CHUNK)
    s.create_dataset("m")
    v = s.volume("m")
    f = v.create(v.root, b"a", 0o644, 0, 0)
    v.write(f.ino, 3 * CHUNK + 5, b"x" * 700)
    v.link(f.ino, v.root, b"b")
    v.setattr(f.ino, size=CHUNK + 1)
    s.close()
    with Store.open(str(tmp_path / "s")) as s:
        assert s.check() == []
