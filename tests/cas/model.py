"""A dict model of a file tree and the hypothesis rules both stateful tests share.

:class:`TreeMachine` drives a real Volume (a fresh store with a tiny chunk
size, so small writes cross chunk boundaries) and mirrors every operation in
``nodes``: writes, truncates, unlinks, rmdirs, hard links, renames and xattrs,
each with the errno POSIX gives, plus commits, cache evictions and reopening
the store. Subclasses add how nodes are made and what is compared.
"""

import errno
import shutil
import tempfile

import hypothesis.strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from cas import FsError, Store

CHUNK = 256
NAMES = st.sampled_from([b"a", b"b", b"c", b"\xe9", b"caf\xe9", "café".encode()])
XNAMES = st.sampled_from([b"user.x", b"user.y", b"trusted.t", b"security.s"])


class MNode:
    """One object of the model: a file ("f"), directory ("d") or symlink ("l")."""

    def __init__(self, kind, target=None):
        self.kind = kind
        self.data = bytearray()
        self.xattrs = {}
        self.children = {} if kind == "d" else None
        self.nlink = 2 if kind == "d" else 1
        self.target = target
        self.mode = 0o777 if kind == "l" else 0o755


class TreeMachine(RuleBasedStateMachine):
    """Volume "m" of a fresh store, and its model rooted at node 0."""

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="cas-model-")
        self.options = self.store_options()
        self.store = Store.open(self.dir + "/s", create=True, chunk_size=CHUNK, dirty_bytes=4 * CHUNK,
                                **self.options)
        self.opened(self.store)
        self.store.create_dataset("m")
        self.vol = self.store.volume("m")
        self.nodes = {0: MNode("d")}
        self.ino = {0: self.vol.root}
        self.next_id = 1

    def teardown(self):
        try:
            assert self.store.check() == []
            self.store.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def opened(self, store) -> None:
        """Called with the store after each open (a subclass may change its limits)."""

    def store_options(self) -> dict:
        """Extra Store.open options of a new store (a subclass puts its chunks elsewhere)."""
        return {}

    # -- helpers ---------------------------------------------------------
    def dirs(self):
        out, stack = [], [0]
        while stack:
            d = stack.pop()
            out.append(d)
            stack.extend(c for c in self.nodes[d].children.values() if self.nodes[c].kind == "d")
        return out

    def of_kind(self, kind):
        seen = set()
        for d in self.dirs():
            for c in self.nodes[d].children.values():
                if self.nodes[c].kind == kind:
                    seen.add(c)
        return sorted(seen)

    def files(self):
        return self.of_kind("f")

    def expect(self, code, fn, *args):
        """Call ``fn``; it must fail with errno ``code``, or succeed if ``code`` is None."""
        try:
            fn(*args)
        except FsError as e:
            assert e.errno == code, (fn.__name__, args, errno.errorcode.get(e.errno), code and errno.errorcode[code])
            return False
        assert code is None, (fn.__name__, args, "succeeded, expected", errno.errorcode[code])
        return True

    def is_ancestor(self, a, d):
        """True if directory a is d or an ancestor of d."""
        parents = {}
        for p in self.dirs():
            for c in self.nodes[p].children.values():
                parents[c] = p
        while True:
            if d == a:
                return True
            if d == 0:
                return False
            d = parents[d]

    def add_node(self, d, name, kind, target=None):
        """Record in the model that ``name`` was made in directory ``d``."""
        nid = self.next_id
        self.next_id += 1
        self.nodes[nid] = MNode(kind, target)
        self.nodes[d].children[name] = nid
        self.ino[nid] = self.vol.lookup(self.ino[d], name).ino
        if kind == "d":
            self.nodes[d].nlink += 1

    # -- rules -----------------------------------------------------------
    @precondition(lambda self: self.files())
    @rule(data=st.data(), off=st.integers(0, 5 * CHUNK), size=st.integers(0, 3 * CHUNK),
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
    @rule(data=st.data(), size=st.integers(0, 6 * CHUNK))
    def truncate(self, data, size):
        f = data.draw(st.sampled_from(self.files()))
        self.vol.setattr(self.ino[f], size=size)
        buf = self.nodes[f].data
        if size < len(buf):
            del buf[size:]
        else:
            buf.extend(bytes(size - len(buf)))

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

    @rule(data=st.data(), name=XNAMES, value=st.binary(max_size=20),
          flags=st.sampled_from([0, 1, 2]))
    def setxattr(self, data, name, value, flags):
        n = data.draw(st.sampled_from(self.dirs() + self.files()))
        xs = self.nodes[n].xattrs
        code = errno.EEXIST if flags == 1 and name in xs else (
            errno.ENODATA if flags == 2 and name not in xs else None)
        if self.expect(code, self.vol.setxattr, self.ino[n], name, value, flags):
            xs[name] = value

    @rule(data=st.data(), name=XNAMES)
    def removexattr(self, data, name):
        n = data.draw(st.sampled_from(self.dirs() + self.files()))
        xs = self.nodes[n].xattrs
        if self.expect(None if name in xs else errno.ENODATA, self.vol.removexattr, self.ino[n], name):
            del xs[name]

    @rule()
    def commit(self):
        self.store.commit()

    @rule()
    def evict(self):
        self.vol.evict_all()

    @rule()
    def evict_to_rows(self):
        """Clean records leave only their compact rows: the next use rebuilds them from those."""
        self.vol.evict_all(keep_rows=True)

    @rule()
    def reopen(self):
        self.store.close()
        self.store = Store.open(self.dir + "/s", dirty_bytes=4 * CHUNK, **self.options)
        self.opened(self.store)
        self.vol = self.store.volume("m")
