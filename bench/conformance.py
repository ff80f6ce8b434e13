"""pjdfstest through the Linux v9fs client, ninep against diod, in one run.

Each server gets one fresh guest boot (vm-images runner) over trans=tcp with
``version=9p2000.L,msize=512000,access=user,cache=none`` (diod negotiates
msize 65536 at most) and runs the whole suite as root on the mount, the way
tests/vm runs it for ninep. The counts are deterministic, so one run per
server is enough; it takes 11-20 minutes each under TCG.
"""
from __future__ import annotations

import shutil
import sys
import time

from .servers import ROOT, BenchError, Diod, Ninep, tempdir

sys.path.insert(0, str(ROOT / "vm-images"))
import pjdfstest  # noqa: E402

SERVERS = ("ninep", "diod")
MOUNT_OPTS = "version=9p2000.L,msize=512000,access=user,cache=none"

SCRIPT = r"""#!/bin/bash
. /job/config
. /job/pjdfstest-run.sh
mkdir -p /mnt/9p/pjd
pjdfstest_run /mnt/9p/pjd $PJD_TESTS
echo "@@PJD-DONE@@"
"""


def run_server(kind: str, base: str | None = None, log=None, timeout: float = 4800,
               tests: list[str] | None = None) -> dict:
    """Boot one guest against a fresh `kind` server; returns the suite's counts.

    ``tests``: some files or directories of the suite (``chown``,
    ``open/06.t``); default the whole suite.
    """
    import runner
    tar = pjdfstest.tar_path()
    if tar is None:
        raise BenchError(f"{pjdfstest.TAR_NAME} not found (../shared/ext-tests or $NINEP_EXT_TESTS)")
    work = tempdir(f"bench-pjd-{kind}.", base)
    server = None
    try:
        if kind == "diod":
            export = work / "export"
            export.mkdir()
            server = Diod(export, work)
        else:
            # the export declares the groups of the suite's users (9P2000.L sends
            # only the uid); diod reads the host's /etc/group and cannot be told
            server = Ninep(work / "store", work, config=pjdfstest.ninep_config())
        lines: list[str] = []
        t0 = time.perf_counter()
        res = runner.run_guest(
            SCRIPT, server=server.address, transport="tcp", aname=server.aname,
            mount_opts=MOUNT_OPTS, timeout=timeout, output=lines.append,
            env={"PJD_TESTS": " ".join(tests or [])},
            files={pjdfstest.TAR_NAME: tar.read_bytes(),
                   "pjdfstest-run.sh": pjdfstest.GUEST_RUN.encode()})
        seconds = time.perf_counter() - t0
        out = "".join(lines)
        if log is not None:
            log.write(f"===== pjdfstest {kind} rc={res.rc} {res.seconds:.1f}s\n{out}\n")
            log.flush()
        if not server.alive():
            raise BenchError(f"pjdfstest {kind}: server died during the run:\n{server.log_tail()}")
        summary = pjdfstest.parse(out)
        if summary is None or "@@PJD-DONE@@" not in out:
            raise BenchError(f"pjdfstest {kind}: no summary (rc={res.rc}, timed_out={res.timed_out}):\n"
                             + out[-3000:])
        return {"passed": summary.passed, "failed": summary.failed,
                "failed_files": summary.failed_files, "not_ok": summary.not_ok,
                "suite_seconds": summary.seconds, "boot_seconds": round(seconds, 1)}
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
