"""Admin import/export over TCP stay inside [admin] transfer_roots even when a path
component is swapped for a symlink between the job's acceptance and its use."""

from __future__ import annotations

import os
import stat

import pytest
import trio

from ninep_server.config import ServerConfig

from ..server.conftest import start_live
from .conftest import admin_client


@pytest.fixture
async def rooted(tmp_path, nursery):
    root = tmp_path / "root"
    root.mkdir()
    config = ServerConfig(commit_interval=0.05, admin_transfer_roots=(str(root),))
    srv = await start_live(tmp_path, nursery, config)
    async with srv.connect() as c:
        for i in range(20):
            await c.write_file(b"f%d" % i, b"data %d\n" % i)
        await c.makedirs(b"sub/deeper")
        await c.write_file(b"sub/deeper/g", b"nested")
    srv.store.commit()
    yield srv, root
    await srv.server.shutdown()
    srv.store.close()


async def _wait(api, job: dict) -> dict:
    with trio.fail_after(60):
        while job["state"] == "running":
            await trio.sleep(0.02)
            job = (await api.get(f"/v1/jobs/{job['id']}")).json()
    return job


async def _accepted_then(srv, api, body: dict, swap) -> dict:
    """POST the job while no job can run, ``swap()`` the host path, then let it run."""
    async with srv.server.jobs.limiter:  # the job is accepted but cannot start yet
        r = await api.post("/v1/jobs", json=body)
        assert r.status_code == 202, r.text
        swap()
    return await _wait(api, r.json())


def _refused(error: str) -> bool:
    # resolved at use time: outside the roots now, or (if swapped during the walk) a symlink
    return "outside the transfer roots" in error or "is a symlink" in error


def _tree(path) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), path) for d, ds, fs in os.walk(path) for n in ds + fs)


async def test_export_dest_swapped_for_a_symlink_writes_nothing_outside(rooted, tmp_path):
    srv, root = rooted
    outside = tmp_path / "outside"
    outside.mkdir()
    async with admin_client(srv, tcp=True) as api:
        # control: without the swap, the export lands in the root
        job = await _wait(api, (await api.post("/v1/jobs", json={"kind": "export", "dataset": "main",
                                                                  "dest": str(root / "ok")})).json())
        assert job["state"] == "succeeded", job
        assert (root / "ok" / "sub" / "deeper" / "g").read_bytes() == b"nested"
        # the destination itself becomes a symlink to a directory outside the roots
        dest = root / "dest"
        job = await _accepted_then(srv, api, {"kind": "export", "dataset": "main", "dest": str(dest)},
                                   lambda: os.symlink(outside, dest))
        assert job["state"] == "failed" and _refused(job["error"]), job
        # an intermediate component is swapped: root/a (a real directory when accepted)
        (root / "a").mkdir()
        dest = root / "a" / "b" / "c"

        def swap_parent():
            os.rename(root / "a", root / "a-moved")
            os.symlink(outside, root / "a")

        job = await _accepted_then(srv, api, {"kind": "export", "dataset": "main", "dest": str(dest)}, swap_parent)
        assert job["state"] == "failed" and _refused(job["error"]), job
        # a path outside the roots is refused at once
        r = await api.post("/v1/jobs", json={"kind": "export", "dataset": "main", "dest": str(outside / "x")})
        assert r.status_code == 403
    assert _tree(outside) == []


async def test_import_source_swapped_for_a_symlink_reads_nothing_outside(rooted, tmp_path):
    srv, root = rooted
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "shadow").write_bytes(b"not for 9P clients")
    src = root / "src"
    src.mkdir()
    (src / "harmless").write_bytes(b"fine")

    def swap():
        os.rename(src, root / "src-moved")
        os.symlink(secret, src)

    async with admin_client(srv, tcp=True) as api:
        job = await _accepted_then(srv, api, {"kind": "import", "source": str(src), "dataset": "imp"}, swap)
        assert job["state"] == "failed" and _refused(job["error"]), job
        # control: the real directory imports
        os.unlink(src)
        os.rename(root / "src-moved", src)
        job = await _wait(api, (await api.post("/v1/jobs", json={"kind": "import", "source": str(src),
                                                                  "dataset": "imp"})).json())
        assert job["state"] == "succeeded", job
    vol = srv.store.volume("imp")
    assert [e.name for e in vol.readdir(vol.root)] == [b"harmless"]


async def test_export_into_a_transfer_root_keeps_its_mode_and_owner(rooted):
    """The reported case: a 9P client's chmod/chown of the dataset root reached a transfer root."""
    srv, root = rooted
    async with srv.connect() as c:
        await c.setattr(c.root_fid, uid=1234, gid=1234)
        await c.setattr(c.root_fid, mode=0o4777)
        await c.write_file(b"suid", b"#!/bin/sh\n")
        async with c.fid(b"suid") as fid:
            await c.setattr(fid, mode=0o6755)
        await c.makedirs(b"sgid-dir")
        async with c.fid(b"sgid-dir") as fid:
            await c.setattr(fid, mode=0o2775)
    os.chmod(root, 0o750)
    before = os.stat(root)
    async with admin_client(srv, tcp=True) as api:
        job = await _wait(api, (await api.post("/v1/jobs", json={"kind": "export", "dataset": "main",
                                                                  "dest": str(root)})).json())
        assert job["state"] == "succeeded", job
        after = os.stat(root)
        assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid, before.st_gid)
        for rel in _tree(root):
            st = os.lstat(root / rel)
            assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID), (rel, oct(st.st_mode))
            assert st.st_uid == os.geteuid(), rel  # owners only when asked for
        assert stat.S_IMODE(os.stat(root / "suid").st_mode) == 0o755
        assert stat.S_IMODE(os.stat(root / "sgid-dir").st_mode) == 0o775
        if os.geteuid() == 0:  # asked for, as root: owners and setuid/setgid come back
            body = {"kind": "export", "dataset": "main", "dest": str(root / "kept"), "preserve_owner": True}
            job = await _wait(api, (await api.post("/v1/jobs", json=body)).json())
            assert job["state"] == "succeeded", job
            st = os.stat(root / "kept")
            assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o4777, 1234)  # created by the export
            assert stat.S_IMODE(os.stat(root / "kept" / "suid").st_mode) == 0o6755
