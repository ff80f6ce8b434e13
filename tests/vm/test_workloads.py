"""POSIX workloads in a QEMU guest, over trans=tcp and trans=fd.

Each test is one workload (tests/vm/workloads/NAME.sh) on one server and one
mount configuration.  The workloads of a (server, configuration) run in a
single boot (see harness.run_batch); each asserts its results inside the
guest, then the test here checks the same tree from the host: the server's
export read directly (diod) or through ninep's own client (ninep).
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from tests.vm import harness

pytestmark = [pytest.mark.vm, pytest.mark.slow]


def test_workload(vm_case, vm_batches, tmp_path):
    kind, vmc, name = vm_case
    if name == harness.PJDFSTEST and harness.pjdfstest_tar() is None:
        harness.unavailable(f"{harness.PJDFSTEST_TAR} not found in ../shared/ext-tests (or $NINEP_EXT_TESTS)")
    batch = vm_batches.get(kind, vmc)
    r = batch.results[name]
    where = f"{kind} {vmc.id} {name}"
    if r.rc != 0:
        why = batch.error or ("did not finish" if r.rc is None else f"exit status {r.rc}")
        pytest.fail(f"{where}: {why}\n--- guest output ---\n{r.output[-6000:]}\n"
                    f"--- server log (tail) ---\n{batch.server.log_tail(2000)}\n"
                    f"(full guest log: {getattr(batch, 'log_path', '?')})", pytrace=False)
    assert r.manifest is not None, f"{where}: no manifest on the host"
    view = batch.server.view
    problems = harness.check_manifest(view, name, r.manifest, vmc.access)
    assert not problems, f"{where}: guest and host disagree:\n" + "\n".join(problems[:40])
    check = HOST_CHECKS.get(name)
    if check:
        check(view, vmc, tmp_path)
    check = OUTPUT_CHECKS.get(name)
    if check:
        check(r.output, where)


# ---------------------------------------------------------------------------
# workload-specific host checks

def host_coreutils(view, vmc, tmp_path):
    names = view.listdir("wl-coreutils/copy")
    assert b"L" * 255 in names
    assert "ünïcødé-名前-🙂".encode() in names
    assert b"with space.txt" in names
    assert view.read("wl-coreutils/copy/a/b/hard-2") == b"one\n"
    assert view.stat("wl-coreutils/copy/a/one").nlink == 3
    assert view.readlink("wl-coreutils/copy/dangling") == b"/nonexistent/target"
    assert not view.exists("wl-coreutils/work")


def host_tar(view, vmc, tmp_path):
    st = view.stat("wl-tar/out/src/d1/file")
    assert st.mtime == 1000000000 and st.mode == 0o604 and st.nlink == 2
    assert view.stat("wl-tar/out/src/d1/d2").mode == 0o2775
    uid, gid = harness.test_user()
    blob = view.stat("wl-tar/out/src/d1/d2/blob")
    assert (blob.uid, blob.gid) == (uid, gid)
    assert view.read("wl-tar/out/src/d1/d2/blob") == view.read("wl-tar/src/d1/d2/blob")


def host_bigfile(view, vmc, tmp_path):
    big = view.stat("wl-bigfile/big")
    assert big.size == 64 << 20
    import hashlib
    want = harness.bigfile_pattern_sha256()
    assert hashlib.sha256(view.read("wl-bigfile/big")).hexdigest() == want
    assert view.read("wl-bigfile/big.sha256").decode().strip() == want
    data = view.read("wl-bigfile/sparse")
    assert len(data) == 32 << 20
    mid = (16 << 20) + 3
    assert data[:4] == b"HEAD" and data[mid:mid + 6] == b"MIDDLE" and data[-4:] == b"TAIL"
    assert data.count(0) == len(data) - 14, "holes must read as zeros"
    grow = view.read("wl-bigfile/grow")
    assert len(grow) == 1000001 and grow[-1:] == b"X" and grow.count(0) == 1000000
    shrink = view.read("wl-bigfile/shrink")
    assert len(shrink) == 300000 and shrink[1000:].count(0) == 299000


def host_unlink_open(view, vmc, tmp_path):
    names = view.listdir("wl-unlink_open")
    assert b"held" not in names
    assert view.read("wl-unlink_open/victim") == b"new"
    assert view.read("wl-unlink_open/b") == b"A"


def host_perms(view, vmc, tmp_path):
    st = view.stat("wl-perms/f")
    assert (st.uid, st.gid, st.mtime) == (0, 0, 1600000000)
    assert view.stat("wl-perms/old1969").mtime in (-86400, 0)  # 0: the guest's client clamps
    uid, gid = harness.test_user()
    mine = view.stat("wl-perms/u/mine")
    assert (mine.uid, mine.gid, mine.mode) == (uid, gid, 0o600)
    assert view.stat("wl-perms/sticky").mode == 0o1777
    assert view.stat("wl-perms/sgid/byroot").gid == gid


def host_xattr(view, vmc, tmp_path):
    try:
        color = view.getxattr("wl-xattr/f", "user.color")
    except NotImplementedError:
        pytest.skip("host view cannot read xattrs")
    assert color == b"red"
    assert view.getxattr("wl-xattr/f", "user.big") == b"v" * 3000
    assert view.getxattr("wl-xattr/f", "user.bin") == b"\x00\xff\x10"
    assert view.getxattr("wl-xattr/d", "user.dir") == b"yes"
    assert view.getxattr("wl-xattr/f2", "user.color") == b"red"


def host_acl(view, vmc, tmp_path):
    from cas import acl
    from cas.acl import GROUP, GROUP_OBJ, MASK, OTHER, USER, USER_OBJ, Entry

    uid, gid = harness.test_user()
    try:
        got = view.getxattr("wl-acl/f", acl.ACCESS.decode())
    except NotImplementedError:
        pytest.skip("host view cannot read xattrs")
    want = (Entry(USER_OBJ, 6), Entry(USER, 6, uid), Entry(GROUP_OBJ, 0), Entry(GROUP, 4, gid),
            Entry(MASK, 4), Entry(OTHER, 0))
    assert acl.decode(got) == want
    assert view.stat("wl-acl/f").mode == 0o640
    default = acl.decode(view.getxattr("wl-acl/dd", acl.DEFAULT.decode()))
    assert default == (Entry(USER_OBJ, 7), Entry(USER, 7, uid), Entry(GROUP_OBJ, 5),
                       Entry(MASK, 7), Entry(OTHER, 5))
    assert view.getxattr("wl-acl/dd/sub", acl.DEFAULT.decode()) == acl.encode(default)
    assert view.stat("wl-acl/dd/new").mode == 0o664


def host_sqlite(view, vmc, tmp_path):
    db = tmp_path / "test.db"
    db.write_bytes(view.read("wl-sqlite/test.db"))
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 240
        rows = con.execute("SELECT writer, count(*) FROM t GROUP BY writer ORDER BY writer").fetchall()
        assert rows == [(1, 60), (2, 60), (3, 60), (4, 60)]
    finally:
        con.close()


def host_git(view, vmc, tmp_path):
    head = view.read("wl-git/head").decode().strip()
    assert len(head) == 40
    git = shutil.which("git")
    if not git:
        return
    repo = view.copy_out("wl-git/clone", tmp_path / "clone")
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", HOME=str(tmp_path))
    subprocess.run([git, "-c", "safe.directory=*", "-C", str(repo), "fsck", "--strict",
                    "--no-progress"], check=True, env=env, capture_output=True)
    got = subprocess.run([git, "-c", "safe.directory=*", "-C", str(repo), "rev-parse", "HEAD"],
                         check=True, env=env, capture_output=True, text=True).stdout.strip()
    assert got == head


def host_unshare(view, vmc, tmp_path):
    assert view.read("wl-unshare/ns-dir/from-inside") == b"inside\n"
    assert not view.exists("wl-unshare/from-inside")


HOST_CHECKS = {
    "coreutils": host_coreutils,
    "tar": host_tar,
    "bigfile": host_bigfile,
    "unlink_open": host_unlink_open,
    "perms": host_perms,
    "xattr": host_xattr,
    "acl": host_acl,
    "sqlite": host_sqlite,
    "git": host_git,
    "unshare": host_unshare,
}


# ---------------------------------------------------------------------------
# checks of what a workload printed

def output_pjdfstest(output: str, where: str) -> None:
    """At least PJDFSTEST_MIN_PASSED cases pass; the summary and failing files are printed."""
    summary = harness.parse_pjdfstest(output)
    assert summary is not None, f"{where}: no summary line\n{output[-4000:]}"
    report = "\n".join([summary.line, *summary.failed_files])
    sys.__stderr__.write(f"\n  [vm {where}] {report.replace(chr(10), chr(10) + '    ')}\n")
    assert summary.passed >= harness.PJDFSTEST_MIN_PASSED, (
        f"{where}: {summary.passed} passed, fewer than {harness.PJDFSTEST_MIN_PASSED}\n{report}\n"
        + "\n".join(summary.not_ok[:80]))


OUTPUT_CHECKS = {
    harness.PJDFSTEST: output_pjdfstest,
}
