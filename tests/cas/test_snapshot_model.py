"""Hypothesis stateful test: snapshots against a dict model.

Random operations on a live dataset (files smaller than a chunk, empty and
sparse files, symlinks, hard links, xattrs, chmod, truncates, renames,
unlinks) interleaved with snapshot create/delete, rollback, clone, commits,
gc, cache eviction and store reopen. After every step, the live tree must
match the model, every snapshot must show exactly the model's copy of the
state at its creation, every clone its own expected tree, and a deleted
snapshot's volume must raise ESTALE.

Run longer with CAS_SNAPSHOT_EXAMPLES=500 (default 30, ~30 s).
"""

import copy
import errno
import os
import stat

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import invariant, precondition, rule

from cas import FsError

from .model import NAMES, TreeMachine

SNAPS = st.sampled_from(["s1", "s2", "s3", "s4"])


def canon_model(nodes, root=0):
    """path -> observable state, plus the hard-link groups, of a model tree."""
    out, groups = {}, {}
    stack = [(b"", root)]
    while stack:
        path, nid = stack.pop()
        n = nodes[nid]
        out[path or b"/"] = (n.kind, n.mode, n.nlink, bytes(n.data) if n.kind == "f" else None,
                             n.target, tuple(sorted(n.xattrs.items())))
        if n.kind == "f":
            groups.setdefault(nid, []).append(path)
        if n.kind == "d":
            stack.extend((path + b"/" + name, c) for name, c in n.children.items())
    return out, sorted(tuple(sorted(g)) for g in groups.values() if len(g) > 1)


def canon_volume(vol):
    """The same view of a Volume (live, snapshot or clone), read through its API."""
    out, groups = {}, {}
    stack = [(b"", vol.root)]
    while stack:
        path, ino = stack.pop()
        a = vol.getattr(ino)
        fmt = stat.S_IFMT(a.mode)
        kind = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l"}[fmt]
        data = vol.read(ino, 0, a.size + 7) if kind == "f" else None
        if kind == "f":
            assert len(data) == a.size
            groups.setdefault(ino, []).append(path)
        target = vol.readlink(ino) if kind == "l" else None
        xs = () if kind == "l" else tuple(sorted((k, vol.getxattr(ino, k)) for k in vol.listxattr(ino)))
        out[path or b"/"] = (kind, stat.S_IMODE(a.mode), a.nlink, data, target, xs)
        if kind == "d":
            ents = []
            cookie = 0
            while True:  # page through readdir to exercise cookies
                page = vol.readdir(ino, cookie, 2)
                if not page:
                    break
                ents += page
                cookie = page[-1].cookie
            assert len({e.name for e in ents}) == len(ents)
            stack.extend((path + b"/" + e.name, e.ino) for e in ents)
    return out, sorted(tuple(sorted(g)) for g in groups.values() if len(g) > 1)


class SnapshotMachine(TreeMachine):
    def __init__(self):
        super().__init__()
        self.snaps = {}       # name -> (model copy, canonical tree)
        self.snapvols = {}    # name -> SnapshotVolume (kept across steps to exercise its cache)
        self.dead = []        # volumes of deleted snapshots
        self.clones = {}      # dataset -> expected canonical tree
        self.nclones = 0

    # -- live tree rules (the common ones are TreeMachine's) ---------------
    @rule(data=st.data(), name=NAMES, kind=st.sampled_from(["f", "f", "d", "l"]))
    def make(self, data, name, kind):
        d = data.draw(st.sampled_from(self.dirs()))
        parent = self.nodes[d]
        code = errno.EEXIST if name in parent.children else None
        target = b"../t" + bytes([65 + len(parent.children)])
        if kind == "f":
            ok = self.expect(code, self.vol.create, self.ino[d], name, 0o755, 1, 2)
        elif kind == "d":
            ok = self.expect(code, self.vol.mkdir, self.ino[d], name, 0o755, 1, 2)
        else:
            ok = self.expect(code, self.vol.symlink, self.ino[d], name, target, 1, 2)
        if ok:
            self.add_node(d, name, kind, target if kind == "l" else None)

    @rule(data=st.data(), mode=st.sampled_from([0o600, 0o644, 0o711]))
    def chmod(self, data, mode):
        n = data.draw(st.sampled_from(self.dirs() + self.files()))
        self.vol.setattr(self.ino[n], mode=mode)
        self.nodes[n].mode = mode

    # -- snapshots -------------------------------------------------------
    @rule(name=SNAPS)
    def snapshot(self, name):
        if name in self.snaps:
            self.expect(errno.EEXIST, self.store.create_snapshot, "m", name)
            return
        self.store.create_snapshot("m", name)
        state = copy.deepcopy((self.nodes, self.ino, self.next_id))
        self.snaps[name] = (state, canon_model(self.nodes))

    @rule(name=SNAPS)
    def delete_snapshot(self, name):
        if name not in self.snaps:
            self.expect(errno.ENOENT, self.store.delete_snapshot, "m", name)
            return
        vol = self.snapvols.pop(name, None) or self.store.snapshot_volume("m", name)
        self.store.delete_snapshot("m", name)
        del self.snaps[name]
        self.dead.append(vol)

    @rule(name=SNAPS)
    def rollback(self, name):
        if name not in self.snaps:
            self.expect(errno.ENOENT, self.store.rollback, "m", name)
            return
        self.store.rollback("m", name)
        self.nodes, self.ino, self.next_id = copy.deepcopy(self.snaps[name][0])

    @precondition(lambda self: self.snaps and len(self.clones) < 3)
    @rule(data=st.data())
    def clone(self, data):
        name = data.draw(st.sampled_from(sorted(self.snaps)))
        self.nclones += 1
        new = f"c{self.nclones}"
        self.store.clone("m", name, new)
        self.expect(errno.EEXIST, self.store.clone, "m", name, new)
        cv = self.store.volume(new)
        tree, groups = canon_volume(cv)
        assert (tree, groups) == self.snaps[name][1]
        # the clone is writable and independent of the snapshot and the live tree
        f = cv.create(cv.root, b"clone-only", 0o640, 0, 0)
        cv.write(f.ino, 3, b"z" * 5)
        tree = dict(tree)
        tree[b"/clone-only"] = ("f", 0o640, 1, bytes(3) + b"z" * 5, None, ())
        self.clones[new] = (tree, groups)

    @rule()
    def gc(self):
        self.store.gc()

    @rule()
    def evict(self):
        super().evict()
        for v in self.snapvols.values():
            v.evict_all()

    @rule()
    def reopen(self):
        super().reopen()
        self.snapvols.clear()

    # -- the comparison ----------------------------------------------------
    @invariant()
    def live_matches(self):
        assert canon_volume(self.vol) == canon_model(self.nodes)

    @invariant()
    def snapshots_unchanged(self):
        listed = self.store.snapshots("m")
        assert {s.name for s in listed} == set(self.snaps)
        assert [s.id for s in listed] == sorted(s.id for s in listed)
        for name, (_, expected) in self.snaps.items():
            vol = self.snapvols.get(name)
            if vol is None:
                vol = self.snapvols[name] = self.store.snapshot_volume("m", name)
            assert canon_volume(vol) == expected, name
        for vol in self.dead:
            try:
                vol.getattr(vol.root)
            except FsError as e:
                assert e.errno in (errno.ESTALE, errno.ENOENT)
            else:
                raise AssertionError("deleted snapshot still readable")

    @invariant()
    def clones_unchanged(self):
        for name, expected in self.clones.items():
            assert canon_volume(self.store.volume(name)) == expected, name


SnapshotMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("CAS_SNAPSHOT_EXAMPLES", "30")),
    stateful_step_count=int(os.environ.get("CAS_SNAPSHOT_STEPS", "35")), deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestSnapshotModel = SnapshotMachine.TestCase
