import errno
import stat

import pytest

from cas import XATTR_CREATE, XATTR_REPLACE, Attr, DirEntry, FsError, StatFs


def err(code):
    return pytest.raises(FsError, match="") if code is None else _Raises(code)


class _Raises:
    def __init__(self, code):
        self.code = code

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        assert et is not None, f"expected errno {errno.errorcode[self.code]}"
        assert issubclass(et, FsError), ev
        assert ev.errno == self.code, f"got {errno.errorcode.get(ev.errno)} want {errno.errorcode[self.code]}"
        return True


def names(vol, ino):
    return [e.name for e in vol.readdir(ino)]


# ---------------------------------------------------------------- create etc.
def test_create_lookup_getattr(vol):
    a = vol.create(vol.root, b"f", 0o640, 10, 20)
    assert isinstance(a, Attr)
    assert stat.S_ISREG(a.mode) and a.mode & 0o7777 == 0o640
    assert (a.uid, a.gid, a.nlink, a.size, a.gen) == (10, 20, 1, 0, 0)
    assert a.atime_ns == a.mtime_ns == a.ctime_ns == a.btime_ns > 0
    assert vol.lookup(vol.root, b"f") == a
    assert vol.getattr(a.ino) == a
    with err(errno.EEXIST):
        vol.create(vol.root, b"f", 0o644, 0, 0)
    with err(errno.ENOENT):
        vol.lookup(vol.root, b"nope")
    with err(errno.ENOTDIR):
        vol.lookup(a.ino, b"x")
    with err(errno.ENOTDIR):
        vol.create(a.ino, b"x", 0o644, 0, 0)
    with err(errno.ENOENT):
        vol.getattr(999999)


def test_inode_numbers_unique_never_reused(env):
    vol = env.vol
    a = vol.create(vol.root, b"a", 0o644, 0, 0)
    vol.unlink(vol.root, b"a")
    b = vol.create(vol.root, b"a", 0o644, 0, 0)
    assert b.ino > a.ino
    env.store.create_dataset("other")
    other = env.store.volume("other")
    c = other.create(other.root, b"a", 0o644, 0, 0)
    assert c.ino not in (a.ino, b.ino, vol.root)
    with err(errno.ENOENT):
        vol.getattr(c.ino)  # inodes of another dataset are invisible
    env.reopen()
    d = env.vol.create(env.vol.root, b"d", 0o644, 0, 0)
    assert d.ino > c.ino


@pytest.mark.parametrize("bad,code", [
    (b"x" * 256, errno.ENAMETOOLONG), (b"a/b", errno.EINVAL), (b"a\0b", errno.EINVAL),
    (b".", errno.EINVAL), (b"..", errno.EINVAL), (b"", errno.EINVAL)])
def test_bad_names(vol, bad, code):
    r = vol.root
    f = vol.create(r, b"f", 0o644, 0, 0)
    with err(code):
        vol.create(r, bad, 0o644, 0, 0)
    with err(code):
        vol.mkdir(r, bad, 0o755, 0, 0)
    with err(code):
        vol.mknod(r, bad, stat.S_IFIFO | 0o644, 0, 0, 0)
    with err(code):
        vol.symlink(r, bad, b"t", 0, 0)
    with err(code):
        vol.link(f.ino, r, bad)
    with err(code):
        vol.rename(r, b"f", r, bad)
    assert vol.create(r, b"x" * 255, 0o644, 0, 0).size == 0


def test_lookup_name_too_long(vol):
    with err(errno.ENAMETOOLONG):
        vol.lookup(vol.root, b"x" * 256)


def test_mkdir_nlink_and_parent_times(vol):
    r = vol.root
    before = vol.getattr(r)
    d = vol.mkdir(r, b"d", 0o755, 0, 0)
    assert stat.S_ISDIR(d.mode) and d.nlink == 2
    after = vol.getattr(r)
    assert after.nlink == before.nlink + 1
    assert after.mtime_ns >= before.mtime_ns and after.ctime_ns >= before.ctime_ns
    assert after.mtime_ns > before.btime_ns or after.mtime_ns == before.mtime_ns
    vol.mkdir(d.ino, b"e", 0o700, 0, 0)
    assert vol.getattr(d.ino).nlink == 3
    assert vol.lookup(d.ino, b"..").ino == r
    assert vol.lookup(d.ino, b".").ino == d.ino
    assert vol.lookup(r, b"..").ino == r


def test_mknod_types(vol):
    r = vol.root
    for name, t, rdev in [(b"fifo", stat.S_IFIFO, 0), (b"sock", stat.S_IFSOCK, 0),
                          (b"chr", stat.S_IFCHR, 0x0501), (b"blk", stat.S_IFBLK, 0x0801)]:
        a = vol.mknod(r, name, t | 0o600, rdev, 1, 2)
        assert stat.S_IFMT(a.mode) == t and a.rdev == rdev
        assert vol.lookup(r, name).rdev == rdev
    with err(errno.EINVAL):
        vol.mknod(r, b"bad", stat.S_IFDIR | 0o755, 0, 0, 0)
    with err(errno.EEXIST):
        vol.mknod(r, b"fifo", stat.S_IFIFO | 0o600, 0, 0, 0)
    with err(errno.EINVAL):
        vol.read(vol.lookup(r, b"fifo").ino, 0, 10)


def test_symlink_readlink(vol):
    r = vol.root
    s = vol.symlink(r, b"l", b"target/x", 5, 6)
    assert stat.S_ISLNK(s.mode) and s.size == 8
    assert vol.readlink(s.ino) == b"target/x"
    f = vol.create(r, b"f", 0o644, 0, 0)
    with err(errno.EINVAL):
        vol.readlink(f.ino)
    with err(errno.ENAMETOOLONG):
        vol.symlink(r, b"long", b"x" * 4096, 0, 0)
    assert vol.readlink(vol.symlink(r, b"ok", b"x" * 4095, 0, 0).ino) == b"x" * 4095


def test_resolve_and_eloop(vol):
    r = vol.root
    d = vol.mkdir(r, b"d", 0o755, 0, 0)
    f = vol.create(d.ino, b"f", 0o644, 0, 0)
    vol.symlink(r, b"ld", b"d", 0, 0)
    vol.symlink(r, b"abs", b"/d/f", 0, 0)
    assert vol.resolve(b"/ld/f").ino == f.ino
    assert vol.resolve(b"abs").ino == f.ino
    assert stat.S_ISLNK(vol.resolve(b"abs", follow=False).mode)
    vol.symlink(r, b"loop1", b"loop2", 0, 0)
    vol.symlink(r, b"loop2", b"loop1", 0, 0)
    with err(errno.ELOOP):
        vol.resolve(b"loop1")
    with err(errno.ENOTDIR):
        vol.resolve(b"d/f/x")


def test_hard_links(vol):
    r = vol.root
    f = vol.create(r, b"f", 0o644, 0, 0)
    vol.write(f.ino, 0, b"data")
    d = vol.mkdir(r, b"d", 0o755, 0, 0)
    a = vol.link(f.ino, d.ino, b"g")
    assert a.nlink == 2 and a.ino == f.ino
    assert vol.lookup(d.ino, b"g").ino == f.ino
    with err(errno.EEXIST):
        vol.link(f.ino, r, b"f")
    with err(errno.EPERM):
        vol.link(d.ino, r, b"dl")
    vol.unlink(r, b"f")
    assert vol.getattr(f.ino).nlink == 1
    assert vol.read(f.ino, 0, 10) == b"data"
    vol.unlink(d.ino, b"g")
    with err(errno.ENOENT):
        vol.getattr(f.ino)


def test_unlink_rmdir_errors(vol):
    r = vol.root
    f = vol.create(r, b"f", 0o644, 0, 0)
    d = vol.mkdir(r, b"d", 0o755, 0, 0)
    vol.create(d.ino, b"x", 0o644, 0, 0)
    with err(errno.EISDIR):
        vol.unlink(r, b"d")
    with err(errno.ENOTDIR):
        vol.rmdir(r, b"f")
    with err(errno.ENOTEMPTY):
        vol.rmdir(r, b"d")
    with err(errno.ENOENT):
        vol.unlink(r, b"nope")
    with err(errno.ENOENT):
        vol.rmdir(r, b"nope")
    with err(errno.EINVAL):
        vol.rmdir(r, b".")
    with err(errno.ENOTDIR):
        vol.unlink(f.ino, b"x")
    vol.unlink(d.ino, b"x")
    nl = vol.getattr(r).nlink
    vol.rmdir(r, b"d")
    assert vol.getattr(r).nlink == nl - 1
    assert names(vol, r) == [b"f"]
    with err(errno.ENOENT):
        vol.create(d.ino, b"y", 0o644, 0, 0)


# --------------------------------------------------------------------- rename
def test_rename_same_dir_and_cross_dir(vol):
    r = vol.root
    f = vol.create(r, b"a", 0o644, 0, 0)
    vol.rename(r, b"a", r, b"b")
    assert names(vol, r) == [b"b"]
    d = vol.mkdir(r, b"d", 0o755, 0, 0)
    vol.rename(r, b"b", d.ino, b"c")
    assert vol.lookup(d.ino, b"c").ino == f.ino
    with err(errno.ENOENT):
        vol.lookup(r, b"b")
    with err(errno.ENOENT):
        vol.rename(r, b"b", r, b"z")


def test_rename_over_file(vol):
    r = vol.root
    a = vol.create(r, b"a", 0o644, 0, 0)
    b = vol.create(r, b"b", 0o644, 0, 0)
    vol.write(b.ino, 0, b"old")
    vol.rename(r, b"a", r, b"b")
    assert vol.lookup(r, b"b").ino == a.ino
    with err(errno.ENOENT):
        vol.getattr(b.ino)
    assert names(vol, r) == [b"b"]


def test_rename_over_open_file_keeps_it_readable(vol):
    r = vol.root
    vol.create(r, b"a", 0o644, 0, 0)
    b = vol.create(r, b"b", 0o644, 0, 0)
    vol.write(b.ino, 0, b"keep")
    vol.open(b.ino)
    vol.rename(r, b"a", r, b"b")
    assert vol.read(b.ino, 0, 10) == b"keep"
    assert vol.getattr(b.ino).nlink == 0
    vol.release(b.ino)
    with err(errno.ENOENT):
        vol.getattr(b.ino)


def test_rename_dirs(vol):
    r = vol.root
    d1 = vol.mkdir(r, b"d1", 0o755, 0, 0)
    d2 = vol.mkdir(r, b"d2", 0o755, 0, 0)
    sub = vol.mkdir(d1.ino, b"sub", 0o755, 0, 0)
    f = vol.create(r, b"f", 0o644, 0, 0)
    # over an empty dir
    vol.rename(r, b"d2", d1.ino, b"sub")
    assert vol.lookup(d1.ino, b"sub").ino == d2.ino
    with err(errno.ENOENT):
        vol.getattr(sub.ino)
    assert vol.getattr(d1.ino).nlink == 3
    assert vol.getattr(r).nlink == 3  # root: ., .., d1
    assert vol.lookup(d2.ino, b"..").ino == d1.ino
    # dir over non-empty dir
    e = vol.mkdir(r, b"e", 0o755, 0, 0)
    vol.create(e.ino, b"x", 0o644, 0, 0)
    with err(errno.ENOTEMPTY):
        vol.rename(r, b"d1", r, b"e")
    # dir over file, file over dir
    with err(errno.ENOTDIR):
        vol.rename(r, b"d1", r, b"f")
    with err(errno.EISDIR):
        vol.rename(r, b"f", r, b"e")
    # into its own subtree
    with err(errno.EINVAL):
        vol.rename(r, b"d1", d2.ino, b"x")
    with err(errno.EINVAL):
        vol.rename(r, b"d1", d1.ino, b"x")
    # renaming to itself is a no-op
    vol.rename(r, b"d1", r, b"d1")
    assert vol.lookup(r, b"d1").ino == d1.ino
    with err(errno.EINVAL):
        vol.rename(r, b".", r, b"x")


def test_rename_hardlinks_same_inode_noop(vol):
    r = vol.root
    f = vol.create(r, b"a", 0o644, 0, 0)
    vol.link(f.ino, r, b"b")
    vol.rename(r, b"a", r, b"b")
    assert sorted(names(vol, r)) == [b"a", b"b"]
    assert vol.getattr(f.ino).nlink == 2


def test_rename_updates_times(vol):
    r = vol.root
    d = vol.mkdir(r, b"d", 0o755, 0, 0)
    f = vol.create(r, b"f", 0o644, 0, 0)
    before = vol.getattr(d.ino)
    vol.rename(r, b"f", d.ino, b"f")
    after = vol.getattr(d.ino)
    assert after.mtime_ns >= before.mtime_ns
    assert vol.getattr(f.ino).ctime_ns >= f.ctime_ns


# -------------------------------------------------------------------- readdir
def test_readdir_cookies_stable(vol):
    r = vol.root
    for i in range(10):
        vol.create(r, b"f%d" % i, 0o644, 0, 0)
    first = vol.readdir(r, 0, 4)
    assert [e.name for e in first] == [b"f0", b"f1", b"f2", b"f3"]
    assert all(isinstance(e, DirEntry) for e in first)
    # concurrent changes: delete an unseen and a seen entry, add one
    vol.unlink(r, b"f1")
    vol.unlink(r, b"f5")
    vol.create(r, b"new", 0o644, 0, 0)
    rest = vol.readdir(r, first[-1].cookie)
    assert [e.name for e in rest] == [b"f4", b"f6", b"f7", b"f8", b"f9", b"new"]
    assert vol.readdir(r, rest[-1].cookie) == []
    assert stat.S_ISREG(rest[0].mode)
    with err(errno.ENOTDIR):
        vol.readdir(rest[0].ino)


def test_readdir_cookies_survive_reopen(env):
    vol = env.vol
    for i in range(5):
        vol.create(vol.root, b"f%d" % i, 0o644, 0, 0)
    page = vol.readdir(vol.root, 0, 2)
    vol = env.reopen()
    assert [e.name for e in vol.readdir(vol.root, page[-1].cookie)] == [b"f2", b"f3", b"f4"]


# ------------------------------------------------------------------ setattr
def test_setattr_fields_and_ctime(vol):
    f = vol.create(vol.root, b"f", 0o644, 0, 0)
    a = vol.setattr(f.ino, mode=0o4711, uid=7, gid=8)
    assert stat.S_ISREG(a.mode) and a.mode & 0o7777 == 0o4711
    assert (a.uid, a.gid) == (7, 8)
    assert a.ctime_ns >= f.ctime_ns and a.mtime_ns == f.mtime_ns
    a = vol.setattr(f.ino, atime_ns=1_000, mtime_ns=2_000)
    assert (a.atime_ns, a.mtime_ns) == (1_000, 2_000)
    a = vol.setattr(f.ino, ctime_ns=3_000)
    assert a.ctime_ns == 3_000
    d = vol.mkdir(vol.root, b"d", 0o755, 0, 0)
    with err(errno.EISDIR):
        vol.setattr(d.ino, size=0)
    with err(errno.EINVAL):
        vol.setattr(f.ino, size=-1)


def test_truncate_up_and_down(vol):
    cs = 128 * 1024
    f = vol.create(vol.root, b"f", 0o644, 0, 0)
    data = bytes(range(256)) * (cs * 3 // 256)
    vol.write(f.ino, 0, data)
    a = vol.setattr(f.ino, size=cs + 10)
    assert a.size == cs + 10 and a.mtime_ns >= f.mtime_ns
    assert vol.read(f.ino, 0, 10 * cs) == data[:cs + 10]
    vol.setattr(f.ino, size=3 * cs)
    got = vol.read(f.ino, 0, 10 * cs)
    assert got == data[:cs + 10] + bytes(3 * cs - cs - 10)
    vol.setattr(f.ino, size=0)
    assert vol.read(f.ino, 0, 100) == b""
    vol.setattr(f.ino, size=50)
    assert vol.read(f.ino, 0, 100) == bytes(50)


def test_truncate_after_commit_zeroes_tail(env):
    vol = env.vol
    f = vol.create(vol.root, b"f", 0o644, 0, 0)
    vol.write(f.ino, 0, b"abcdefgh")
    env.store.commit()
    vol.setattr(f.ino, size=3)
    vol.setattr(f.ino, size=8)
    assert vol.read(f.ino, 0, 8) == b"abc" + bytes(5)
    vol = env.reopen()
    assert vol.read(f.ino, 0, 8) == b"abc" + bytes(5)


# ---------------------------------------------------------------- read/write
def test_write_read_basic(vol):
    f = vol.create(vol.root, b"f", 0o644, 0, 0)
    assert vol.write(f.ino, 0, b"hello") == 5
    a = vol.getattr(f.ino)
    assert a.size == 5 and a.data_version != f.data_version and a.mtime_ns >= f.mtime_ns
    assert vol.read(f.ino, 0, 100) == b"hello"
    assert vol.read(f.ino, 2, 2) == b"ll"
    assert vol.read(f.ino, 5, 10) == b""
    assert vol.read(f.ino, 100, 10) == b""
    d = vol.mkdir(vol.root, b"d", 0o755, 0, 0)
    with err(errno.EISDIR):
        vol.write(d.ino, 0, b"x")
    with err(errno.EISDIR):
        vol.read(d.ino, 0, 1)
    with err(errno.EINVAL):
        vol.write(f.ino, -1, b"x")


def test_sparse_and_past_eof(env):
    vol = env.vol
    cs = env.store.chunk_size
    f = vol.create(vol.root, b"f", 0o644, 0, 0)
    vol.write(f.ino, 10 * cs + 7, b"tail")
    assert vol.getattr(f.ino).size == 10 * cs + 11
    assert vol.read(f.ino, 0, 20) == bytes(20)
    assert vol.read(f.ino, 10 * cs, 11) == bytes(7) + b"tail"
    env.store.commit()
    assert env.store.chunks.usage()[0] == 1  # holes store nothing
    vol = env.reopen()
    assert vol.read(f.ino, 5 * cs - 3, 6) == bytes(6)
    assert vol.read(f.ino, 10 * cs + 5, 100) == b"\0\0tail"


def test_overwrite_middle_of_chunk(env):
    vol = env.vol
    cs = env.store.chunk_size
    f = vol.create(vol.root, b"f", 0o644, 0, 0)
    data = bytearray(b"a" * (2 * cs + 100))
    vol.write(f.ino, 0, bytes(data))
    env.store.commit()
    vol.write(f.ino, cs - 2, b"XYZW")
    data[cs - 2:cs + 2] = b"XYZW"
    assert vol.read(f.ino, 0, 3 * cs) == bytes(data)
    vol = env.reopen()
    assert vol.read(f.ino, 0, 3 * cs) == bytes(data)
    vol.write(f.ino, 5, b"Q")
    data[5:6] = b"Q"
    vol = env.reopen()
    assert vol.read(f.ino, 0, 3 * cs) == bytes(data)


def test_many_small_unaligned_writes(vol):
    f = vol.create(vol.root, b"f", 0o644, 0, 0)
    expect = bytearray()
    for i in range(200):
        piece = bytes([i % 251]) * 1777
        vol.write(f.ino, len(expect), piece)
        expect += piece
    assert vol.read(f.ino, 0, len(expect) + 10) == bytes(expect)


def test_large_write_roundtrip(env):
    vol = env.vol
    import os
    data = os.urandom(3 * 1024 * 1024 + 12345)
    f = vol.create(vol.root, b"f", 0o644, 0, 0)
    vol.write(f.ino, 0, data)
    assert vol.read(f.ino, 0, len(data)) == data
    vol = env.reopen()
    assert vol.read(f.ino, 0, len(data)) == data
    assert vol.read(f.ino, 1000000, 300000) == data[1000000:1300000]


def test_dedup(env):
    vol = env.vol
    import os
    data = os.urandom(300 * 1024)
    for name in (b"a", b"b", b"c"):
        f = vol.create(vol.root, name, 0o644, 0, 0)
        vol.write(f.ino, 0, data)
    env.store.commit()
    count, total = env.store.chunks.usage()
    assert count == 3  # 128K + 128K + 44K, each stored once
    assert total == len(data)
    assert env.store.check() == []


def test_unlink_frees_chunks_but_not_shared(env):
    vol = env.vol
    import os
    shared = os.urandom(1000)
    a = vol.create(vol.root, b"a", 0o644, 0, 0)
    b = vol.create(vol.root, b"b", 0o644, 0, 0)
    vol.write(a.ino, 0, shared)
    vol.write(b.ino, 0, shared)
    c = vol.create(vol.root, b"c", 0o644, 0, 0)
    vol.write(c.ino, 0, os.urandom(1000))
    env.store.commit()
    assert env.store.chunks.usage()[0] == 2
    vol.unlink(vol.root, b"a")
    vol.unlink(vol.root, b"c")
    env.store.commit()
    assert env.store.chunks.usage()[0] == 1
    assert vol.read(b.ino, 0, 2000) == shared
    assert env.store.check() == []


def test_overwrite_gc_old_chunk(env):
    vol = env.vol
    f = vol.create(vol.root, b"f", 0o644, 0, 0)
    vol.write(f.ino, 0, b"one")
    env.store.commit()
    vol.write(f.ino, 0, b"two")
    env.store.commit()
    assert env.store.chunks.usage()[0] == 1
    assert env.store.check() == []


# --------------------------------------------------------------------- xattrs
def test_xattrs(env):
    vol = env.vol
    f = vol.create(vol.root, b"f", 0o644, 0, 0)
    for ns in (b"user.", b"trusted.", b"security."):
        vol.setxattr(f.ino, ns + b"k", b"v\0\xff", 0)
    assert sorted(vol.listxattr(f.ino)) == [b"security.k", b"trusted.k", b"user.k"]
    assert vol.getxattr(f.ino, b"user.k") == b"v\0\xff"
    with err(errno.EEXIST):
        vol.setxattr(f.ino, b"user.k", b"x", XATTR_CREATE)
    with err(errno.ENODATA):
        vol.setxattr(f.ino, b"user.new", b"x", XATTR_REPLACE)
    vol.setxattr(f.ino, b"user.k", b"replaced", XATTR_REPLACE)
    vol.setxattr(f.ino, b"user.new", b"", XATTR_CREATE)
    with err(errno.ENODATA):
        vol.getxattr(f.ino, b"user.none")
    with err(errno.EOPNOTSUPP):
        vol.setxattr(f.ino, b"bogus.k", b"x", 0)
    with err(errno.ERANGE):
        vol.setxattr(f.ino, b"user." + b"x" * 300, b"x", 0)
    vol.removexattr(f.ino, b"trusted.k")
    with err(errno.ENODATA):
        vol.removexattr(f.ino, b"trusted.k")
    vol = env.reopen()
    assert sorted(vol.listxattr(f.ino)) == [b"security.k", b"user.k", b"user.new"]
    assert vol.getxattr(f.ino, b"user.k") == b"replaced"
    assert vol.getxattr(f.ino, b"user.new") == b""
    d = vol.mkdir(vol.root, b"d", 0o755, 0, 0)
    vol.setxattr(d.ino, b"user.dir", b"1", 0)
    vol = env.reopen()
    assert vol.getxattr(d.ino, b"user.dir") == b"1"


# ----------------------------------------------------------- open / unlinked
def test_open_unlinked_file_lives_until_release(env):
    vol = env.vol
    f = vol.create(vol.root, b"f", 0o644, 0, 0)
    vol.write(f.ino, 0, b"hello")
    env.store.commit()
    vol.open(f.ino)
    vol.unlink(vol.root, b"f")
    assert vol.getattr(f.ino).nlink == 0
    vol.write(f.ino, 5, b" world")
    vol.setattr(f.ino, size=11)
    env.store.commit()
    assert vol.read(f.ino, 0, 100) == b"hello world"
    vol.fsync(f.ino)
    vol.release(f.ino)
    with err(errno.ENOENT):
        vol.getattr(f.ino)
    env.store.commit()
    assert env.store.chunks.usage()[0] == 0
    assert env.store.check() == []


def test_orphans_removed_at_open(env):
    vol = env.vol
    f = vol.create(vol.root, b"f", 0o644, 0, 0)
    vol.write(f.ino, 0, b"orphan data")
    vol.open(f.ino)
    vol.unlink(vol.root, b"f")
    env.store.commit()  # committed with nlink 0, as if we crashed now
    env.store._closed = True  # simulate a crash: skip the final commit/release
    env.store._catalog.close()
    import os
    os.close(env.store._lockfd)
    from cas import Store
    env.store = Store.open(env.path)
    env.vol = env.store.volume("main")
    with err(errno.ENOENT):
        env.vol.getattr(f.ino)
    assert env.store.check() == []
    assert env.store.chunks.usage()[0] == 0


def test_open_unlinked_dir(vol):
    d = vol.mkdir(vol.root, b"d", 0o755, 0, 0)
    vol.open(d.ino)
    vol.rmdir(vol.root, b"d")
    assert vol.readdir(d.ino) == []
    with err(errno.ENOENT):
        vol.create(d.ino, b"x", 0o644, 0, 0)
    vol.release(d.ino)


# ------------------------------------------------------------- statfs, fsync
def test_statfs(vol):
    s = vol.statfs()
    assert isinstance(s, StatFs)
    assert s.bsize > 0 and s.blocks > 0 and s.namelen == 255 and s.bavail <= s.bfree


def test_fsync_makes_durable(env):
    vol = env.vol
    f = vol.create(vol.root, b"f", 0o644, 0, 0)
    vol.write(f.ino, 0, b"durable")
    vol.fsync(f.ino)
    rows = env.store.catalog.query("SELECT count(*) FROM extents WHERE ino = ?", [f.ino])
    assert rows[0][0] == 1
    vol.fsync(f.ino)  # nothing dirty: returns at once


def test_read_only_volume_is_erofs(env):
    vol = env.vol
    f = vol.create(vol.root, b"f", 0o644, 0, 0)
    vol.read_only = True
    try:
        for call in (lambda: vol.create(vol.root, b"g", 0o644, 0, 0),
                     lambda: vol.write(f.ino, 0, b"x"),
                     lambda: vol.setattr(f.ino, mode=0o600),
                     lambda: vol.unlink(vol.root, b"f"),
                     lambda: vol.setxattr(f.ino, b"user.x", b"1", 0)):
            with err(errno.EROFS):
                call()
        assert vol.read(f.ino, 0, 1) == b""
    finally:
        vol.read_only = False
