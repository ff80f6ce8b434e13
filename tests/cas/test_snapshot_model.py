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
import shutil
import stat
import tempfile

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cas import FsError, Store

CHUNK = 256
NAMES = st.sampled_from([b"a", b"b", b"c", b"\xe9"])
XNAMES = st.sampled_from([b"user.x", b"user.y"])
SNAPS = st.sampled_from(["s1", "s2", "s3", "s4"])


class MNode:
    def __init__(self, kind, target=None):
        self.kind = kind          # "f", "d" or "l"
        self.data = bytearray()
        self.xattrs = {}
        self.children = {} if kind == "d" else None
        self.nlink = 2 if kind == "d" else 1
        self.target = target
        self.mode = 0o777 if kind == "l" else 0o755


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


class SnapshotMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="cas-snapmodel-")
        self.store = Store.open(self.dir + "/s", create=True, chunk_size=CHUNK, dirty_bytes=4 * CHUNK)
        self.store.create_dataset("m")
        self.vol = self.store.volume("m")
        self.nodes = {0: MNode("d")}
        self.ino = {0: self.vol.root}
        self.next_id = 1
        self.snaps = {}       # name -> (model copy, canonical tree)
        self.snapvols = {}    # name -> SnapshotVolume (kept across steps to exercise its cache)
        self.dead = []        # volumes of deleted snapshots
        self.clones = {}      # dataset -> expected canonical tree
        self.nclones = 0

    def teardown(self):
        try:
            assert self.store.check() == []
            self.store.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers ---------------------------------------------------------
    def walk(self):
        out, stack = [], [0]
        while stack:
            d = stack.pop()
            out.append(d)
            stack.extend(c for c in self.nodes[d].children.values() if self.nodes[c].kind == "d")
        return out

    def dirs(self):
        return self.walk()

    def of_kind(self, kind):
        seen = set()
        for d in self.walk():
            for c in self.nodes[d].children.values():
                if self.nodes[c].kind == kind:
                    seen.add(c)
        return sorted(seen)

    def files(self):
        return self.of_kind("f")

    def expect(self, code, fn, *args):
        try:
            fn(*args)
        except FsError as e:
            assert e.errno == code, (fn.__name__, args, errno.errorcode.get(e.errno), code)
            return False
        assert code is None, (fn.__name__, args, "succeeded, expected", errno.errorcode[code])
        return True

    def parents(self):
        out = {}
        for p in self.walk():
            for c in self.nodes[p].children.values():
                out[c] = p
        return out

    def is_ancestor(self, a, d):
        parents = self.parents()
        while True:
            if d == a:
                return True
            if d == 0:
                return False
            d = parents[d]

    # -- live tree rules -------------------------------------------------
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
            nid = self.next_id
            self.next_id += 1
            self.nodes[nid] = MNode(kind, target if kind == "l" else None)
            parent.children[name] = nid
            self.ino[nid] = self.vol.lookup(self.ino[d], name).ino
            if kind == "d":
                parent.nlink += 1

    @precondition(lambda self: self.files())
    @rule(data=st.data(), off=st.integers(0, 4 * CHUNK), size=st.integers(0, 2 * CHUNK + 3),
          byte=st.integers(0, 255))
    def write(self, data, off, size, byte):
        f = data.draw(st.sampled_from(self.files()))
        payload = bytes([byte]) * size if byte % 3 else data.draw(st.binary(min_size=size, max_size=size))
        assert self.vol.write(self.ino[f], off, payload) == size
        if size:
            buf = self.nodes[f].data
            if len(buf) < off:
                buf.extend(bytes(off - len(buf)))
            buf[off:off + size] = payload

    @precondition(lambda self: self.files())
    @rule(data=st.data(), size=st.integers(0, 5 * CHUNK))
    def truncate(self, data, size):
        f = data.draw(st.sampled_from(self.files()))
        self.vol.setattr(self.ino[f], size=size)
        buf = self.nodes[f].data
        if size < len(buf):
            del buf[size:]
        else:
            buf.extend(bytes(size - len(buf)))

    @rule(data=st.data(), mode=st.sampled_from([0o600, 0o644, 0o711]))
    def chmod(self, data, mode):
        n = data.draw(st.sampled_from(self.dirs() + self.files()))
        self.vol.setattr(self.ino[n], mode=mode)
        self.nodes[n].mode = mode

    @rule(data=st.data(), name=NAMES)
    def unlink(self, data, name):
        d = data.draw(st.sampled_from(self.dirs()))
        parent = self.nodes[d]
        c = parent.children.get(name)
        code = errno.ENOENT if c is None else (errno.EISDIR if self.nodes[c].kind == "d" else None)
        if self.expect(code, self.vol.unlink, self.ino[d], name):
            del parent.children[name]
            self.nodes[c].nlink -= 1

    @rule(data=st.data(), name=NAMES)
    def rmdir(self, data, name):
        d = data.draw(st.sampled_from(self.dirs()))
        parent = self.nodes[d]
        c = parent.children.get(name)
        if c is None:
            code = errno.ENOENT
        elif self.nodes[c].kind != "d":
            code = errno.ENOTDIR
        elif self.nodes[c].children:
            code = errno.ENOTEMPTY
        else:
            code = None
        if self.expect(code, self.vol.rmdir, self.ino[d], name):
            del parent.children[name]
            parent.nlink -= 1

    @precondition(lambda self: self.files())
    @rule(data=st.data(), name=NAMES)
    def link(self, data, name):
        f = data.draw(st.sampled_from(self.files()))
        d = data.draw(st.sampled_from(self.dirs()))
        code = errno.EEXIST if name in self.nodes[d].children else None
        if self.expect(code, self.vol.link, self.ino[f], self.ino[d], name):
            self.nodes[d].children[name] = f
            self.nodes[f].nlink += 1

    @rule(data=st.data(), old=NAMES, new=NAMES)
    def rename(self, data, old, new):
        sd = data.draw(st.sampled_from(self.dirs()))
        dd = data.draw(st.sampled_from(self.dirs()))
        sp, dp = self.nodes[sd], self.nodes[dd]
        src, dst = sp.children.get(old), dp.children.get(new)
        code = None
        if src is None:
            code = errno.ENOENT
        elif dst == src:
            code = None
        elif self.nodes[src].kind == "d" and self.is_ancestor(src, dd):
            code = errno.EINVAL
        elif dst is not None:
            sk, dk = self.nodes[src].kind, self.nodes[dst].kind
            if sk == "d" and dk != "d":
                code = errno.ENOTDIR
            elif sk != "d" and dk == "d":
                code = errno.EISDIR
            elif dk == "d" and self.nodes[dst].children:
                code = errno.ENOTEMPTY
        ok = self.expect(code, self.vol.rename, self.ino[sd], old, self.ino[dd], new)
        if not ok or dst == src:
            return
        if dst is not None:
            if self.nodes[dst].kind == "d":
                dp.nlink -= 1
            else:
                self.nodes[dst].nlink -= 1
        del sp.children[old]
        dp.children[new] = src
        if self.nodes[src].kind == "d":
            sp.nlink -= 1
            dp.nlink += 1

    @rule(data=st.data(), name=XNAMES, value=st.binary(max_size=12))
    def setxattr(self, data, name, value):
        n = data.draw(st.sampled_from(self.dirs() + self.files()))
        self.vol.setxattr(self.ino[n], name, value, 0)
        self.nodes[n].xattrs[name] = value

    @rule(data=st.data(), name=XNAMES)
    def removexattr(self, data, name):
        n = data.draw(st.sampled_from(self.dirs() + self.files()))
        xs = self.nodes[n].xattrs
        if self.expect(None if name in xs else errno.ENODATA, self.vol.removexattr, self.ino[n], name):
            del xs[name]

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
    def commit(self):
        self.store.commit()

    @rule()
    def gc(self):
        self.store.gc()

    @rule()
    def evict(self):
        self.vol.evict_all()
        for v in self.snapvols.values():
            v.evict_all()

    @rule()
    def reopen(self):
        self.store.close()
        self.store = Store.open(self.dir + "/s", dirty_bytes=4 * CHUNK)
        self.vol = self.store.volume("m")
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
