"""POSIX ACLs through 9P: the system.posix_acl_* xattrs and the server's own checks.

The server enforces permissions for every attach (access=user and
access=client both attach per uid), so an ACL must admit and refuse here
exactly as the kernel would.
"""

from __future__ import annotations

import errno
import stat

import pytest

from cas import acl
from cas.acl import GROUP, GROUP_OBJ, MASK, OTHER, USER, USER_OBJ, Entry
from ninep_server import protocol as p
from ninep_server.config import parse_config

from .conftest import start_live
from .test_messages import expect_errno

O = p.OpenFlags
# uid 5000 is in groups 5000 and 6000; 5001 only in 5001; 5002 in 5002 and 7000
GROUPS = {5000: [5000, 6000], 5001: [5001], 5002: [5002, 7000]}


def A(*entries) -> bytes:
    return acl.encode(tuple(Entry(*e) for e in entries))


@pytest.fixture
async def srv(tmp_path, nursery):
    config = parse_config({"server": {"commit_interval": 0.05}, "exports": {"main": {
        "groups": {str(k): v for k, v in GROUPS.items()}}}})
    s = await start_live(tmp_path, nursery, config)
    async with s.connect(uid=0) as root:
        await root.setattr(await root.walk_path(b""), mode=0o777)
    yield s
    await s.server.shutdown()
    s.store.close()


async def setx(c, path: bytes, name: bytes, value: bytes, flags: int = 0) -> None:
    """setxattr as the Linux client sends it: Txattrcreate, Twrite, Tclunk."""
    fid = await c.walk_path(path)
    await c.xattrcreate(fid, name, len(value), flags)
    if value:
        await c.write(fid, 0, value)
    await c.clunk(fid)


async def getx(c, path: bytes, name: bytes) -> bytes:
    fid = await c.walk_path(path)
    xfid = c.alloc_fid()
    size = await c.xattrwalk(fid, xfid, name)
    value = await c.read(xfid, 0, size) if size else b""
    await c.clunk(xfid)
    await c.clunk(fid)
    return value


async def test_set_get_and_mode_through_9p(srv):
    value = A((USER_OBJ, 6), (USER, 4, 5001), (GROUP_OBJ, 4), (MASK, 6), (OTHER, 0))
    async with srv.connect(uid=5000) as c:
        await c.write_file(b"f", b"data", mode=0o600)
        await setx(c, b"f", acl.ACCESS, value)
        assert await getx(c, b"f", acl.ACCESS) == value
        assert (await c.stat(b"f")).mode == stat.S_IFREG | 0o660
        # chmod rewrites the mask
        await c.setattr(await c.walk_path(b"f"), mode=0o640)
        assert await getx(c, b"f", acl.ACCESS) == A(
            (USER_OBJ, 6), (USER, 4, 5001), (GROUP_OBJ, 4), (MASK, 4), (OTHER, 0))
        # malformed: refused at clunk, nothing changed
        fid = await c.walk_path(b"f")
        await c.xattrcreate(fid, acl.ACCESS, len(value) - 3, 0)
        await c.write(fid, 0, value[:-3])
        await expect_errno(errno.EINVAL, c.clunk(fid))
        assert (await c.stat(b"f")).mode == stat.S_IFREG | 0o640
        # other system. names stay unsupported
        fid = await c.walk_path(b"f")
        await expect_errno(errno.EOPNOTSUPP, c.xattrcreate(fid, b"system.other", 1, 0))
        await c.clunk(fid)
        # how the client removes one: size 0 (with or without XATTR_REPLACE)
        await setx(c, b"f", acl.ACCESS, b"")
        await expect_errno(errno.ENODATA, getx(c, b"f", acl.ACCESS))
        await setx(c, b"f", acl.ACCESS, b"", p.XattrFlags.REPLACE)
    async with srv.connect(uid=5001) as other:
        # only the owner (or root) sets an ACL; anyone reads one
        await expect_errno(errno.EPERM, setx(other, b"f", acl.ACCESS, value))
    async with srv.connect(uid=0) as root:
        await setx(root, b"f", acl.ACCESS, value)
    async with srv.connect(uid=5001) as other:
        assert await getx(other, b"f", acl.ACCESS) == value


async def test_enforcement_named_users_groups_and_mask(srv):
    async with srv.connect(uid=0) as root:
        await root.write_file(b"f", b"secret", mode=0o600)
        await root.setattr(await root.walk_path(b"f"), gid=9999)
        # 5001 may read, 5002 is refused by name although other may read,
        # group 6000 may read and write, but the mask allows only reading.
        await setx(root, b"f", acl.ACCESS, A(
            (USER_OBJ, 6), (USER, 4, 5001), (USER, 0, 5002),
            (GROUP_OBJ, 0), (GROUP, 6, 6000), (MASK, 4), (OTHER, 4)))
        assert (await root.stat(b"f")).mode & 0o777 == 0o644
    async with srv.connect(uid=5001) as u:
        assert await u.read_file(b"f") == b"secret"
        await expect_errno(errno.EACCES, u.open(b"f", O.WRONLY))
    async with srv.connect(uid=5002) as u:
        await expect_errno(errno.EACCES, u.open(b"f"))
    async with srv.connect(uid=5000) as u:  # via group 6000, limited by the mask
        assert await u.read_file(b"f") == b"secret"
        await expect_errno(errno.EACCES, u.open(b"f", O.WRONLY))
    async with srv.connect(uid=4000) as u:  # nobody named: other
        assert await u.read_file(b"f") == b"secret"
    async with srv.connect(uid=0) as root:  # widen the mask by chmod: the group may write
        await root.setattr(await root.walk_path(b"f"), mode=0o664)
    async with srv.connect(uid=5000) as u:
        await u.open(b"f", O.WRONLY)
    async with srv.connect(uid=5001) as u:  # the named user's own entry still says r--
        await expect_errno(errno.EACCES, u.open(b"f", O.WRONLY))


async def test_directory_acl_and_inheritance(srv):
    async with srv.connect(uid=0) as root:
        await root.makedirs(b"shared")
        await root.setattr(await root.walk_path(b"shared"), mode=0o700)
        both = A((USER_OBJ, 7), (USER, 7, 5001), (GROUP_OBJ, 0), (MASK, 7), (OTHER, 0))
        await setx(root, b"shared", acl.ACCESS, both)
        await setx(root, b"shared", acl.DEFAULT, both)
        assert (await root.stat(b"shared")).mode & 0o777 == 0o770
    async with srv.connect(uid=5002) as u:  # not named: no way in
        d = await u.walk_path(b"shared")
        await expect_errno(errno.EACCES, u.walk(d, u.alloc_fid(), [b"x"]))
        await expect_errno(errno.EACCES, u.lcreate(d, b"x", O.RDWR, 0o644))
    async with srv.connect(uid=5001) as u:  # named: may create; the file inherits
        await u.write_file(b"shared/file", b"hi", mode=0o644)
        st = await u.stat(b"shared/file")
        assert st.uid == 5001 and st.mode == stat.S_IFREG | 0o640  # umask not applied: the ACL is
        assert await getx(u, b"shared/file", acl.ACCESS) == A(
            (USER_OBJ, 6), (USER, 7, 5001), (GROUP_OBJ, 0), (MASK, 4), (OTHER, 0))
        d = await u.walk_path(b"shared")
        await u.mkdir(d, b"sub", 0o755)
        assert (await u.stat(b"shared/sub")).mode == stat.S_IFDIR | 0o750
        assert await getx(u, b"shared/sub", acl.DEFAULT) == both
        sym = await u.walk_path(b"shared")
        await u.rpc(p.Tsymlink(fid=sym, name=b"ln", symtgt=b"file", gid=0))
        ln = await u.walk_path(b"shared/ln")
        xfid = u.alloc_fid()
        assert await u.xattrwalk(ln, xfid, b"") == 0  # symlinks inherit nothing
    async with srv.connect(uid=0) as root:  # the owner of the file (5001) may read it via the ACL
        f = await root.walk_path(b"shared/file")
        await root.setattr(f, uid=4000)
    async with srv.connect(uid=5001) as u:
        assert await u.read_file(b"shared/file") == b"hi"
        await expect_errno(errno.EACCES, u.open(b"shared/file", O.WRONLY))  # mask r--


async def test_setting_an_acl_outside_the_group_clears_setgid(srv):
    async with srv.connect(uid=0) as root:
        await root.makedirs(b"pub")
        await root.setattr(await root.walk_path(b"pub"), mode=0o777)
    async with srv.connect(uid=5001) as u:
        await u.write_file(b"pub/f", b"", mode=0o644)
    async with srv.connect(uid=0) as root:
        await root.setattr(await root.walk_path(b"pub/f"), mode=0o2754, gid=7000)
    async with srv.connect(uid=5001) as u:
        await setx(u, b"pub/f", acl.ACCESS, A((USER_OBJ, 7), (USER, 5, 5000), (GROUP_OBJ, 5), (MASK, 5), (OTHER, 4)))
        assert (await u.stat(b"pub/f")).mode == stat.S_IFREG | 0o754


async def test_extreme_ids_and_any_value_through_9p(srv):
    """The largest named id (2^32-2) admits that uid; (uid_t)-1 as a named id, and
    values that are not ACLs, are refused at clunk and leave the file as it was."""
    top = 0xFFFFFFFE
    good = A((USER_OBJ, 6), (USER, 4, top), (GROUP_OBJ, 0), (MASK, 4), (OTHER, 0))
    async with srv.connect(uid=0) as root:
        await root.write_file(b"x", b"edge", mode=0o600)
        await setx(root, b"x", acl.ACCESS, good)
        for bad, code in ((A((USER_OBJ, 6), (GROUP_OBJ, 0), (OTHER, 0))[:-1], errno.EINVAL),
                          (b"\x02\0\0\0" + bytes([2, 0, 4, 0, 0xFF, 0xFF, 0xFF, 0xFF]) * 1, errno.EINVAL),
                          (b"\x01\0\0\0" + good[4:], errno.EOPNOTSUPP),
                          (b"\xff" * 65532, errno.EOPNOTSUPP)):
            fid = await root.walk_path(b"x")
            await root.xattrcreate(fid, acl.ACCESS, len(bad), 0)
            for off in range(0, len(bad), 60000):
                await root.write(fid, off, bad[off:off + 60000])
            await expect_errno(code, root.clunk(fid))
        assert await getx(root, b"x", acl.ACCESS) == good
        assert (await root.stat(b"x")).mode & 0o777 == 0o640
    async with srv.connect(uid=top) as u:
        assert await u.read_file(b"x") == b"edge"
    async with srv.connect(uid=top - 1) as u:
        await expect_errno(errno.EACCES, u.open(b"x"))
