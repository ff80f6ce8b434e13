"""The Linux client on a store whose chunks live in S3 (SeaweedFS on the host),
across a kill -9 of the server.

The guest writes files of several sizes (some spanning many chunks), most of
them fsynced, and checksums them; the host kills `ninep serve` with SIGKILL,
empties its local chunk cache and serves the same store on the same port
again. The v9fs client does not reconnect, so the guest mounts again and
finds every fsynced file intact, read back from the bucket.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests.servers import start_seaweedfs
from tests.vm import harness

pytestmark = [pytest.mark.vm, pytest.mark.slow]

CHUNK = 256 << 10
# name -> size; all fsynced but "unsynced"
SIZES = {"one": 1, "page": 4096, "odd": 100_003, "chunk": CHUNK, "three": 2 * CHUNK + 77, "many": 12 * CHUNK + 5}

GUEST = r"""
set -eu
. /job/config
M=$NINEP_AUTOMOUNT
mkdir -p /tmp/src
for spec in $SIZES; do
    name=${spec%%=*}; size=${spec#*=}
    head -c "$size" /dev/urandom > /tmp/src/$name
    dd if=/tmp/src/$name of=$M/$name bs=65536 conv=fsync 2>/dev/null
done
(cd /tmp/src && sha256sum *) > /tmp/sums
sed 's/^/@@SUM /' /tmp/sums
head -c 5000 /dev/urandom > $M/unsynced
echo "@@S3-KILL@@"
umount -l $M 2>/dev/null || true
back=
for i in $(seq 1 180); do
    if ninep-mount /mnt/again 2>/dev/null; then
        if [ -e /mnt/again/restarted ]; then back=1; break; fi
        umount /mnt/again
    fi
    sleep 1
done
[ -n "$back" ] || { echo "FAIL: the restarted server never answered"; exit 1; }
cd /mnt/again
sha256sum -c /tmp/sums || { echo "FAIL: fsynced files differ after kill -9 and remount"; exit 1; }
echo "written after the restart" > after
sync after
cd /
echo "@@S3-OK@@"
"""


def test_kill9_restart_remount_on_s3_store(vm_images, tmp_path, monkeypatch):
    weed = start_seaweedfs(tmp_path / "weed")
    try:
        for name, value in weed.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("PYTHONFAULTHANDLER", "1")  # a server aborted below dumps its threads
        workdir = tmp_path / "srv"
        workdir.mkdir()
        store = workdir / "store"
        init = subprocess.run(harness.ninep_command() + ["init", str(store), "--chunks", "s3://vmtest/guest",
                                                         "--chunk-size", str(CHUNK)],
                              capture_output=True, text=True, timeout=120, cwd=harness.ROOT,
                              env={**os.environ, "PYTHONPATH": str(harness.ROOT)})
        assert init.returncode == 0, init.stderr
        assert "chunks: s3://vmtest/guest" in init.stdout
        server = harness.NinepServer(workdir)
        try:
            restarted = []

            def on_line(line: str) -> None:
                lines.append(line)
                if "@@S3-KILL@@" in line and not restarted:
                    server.kill_and_restart(between=lambda: shutil.rmtree(store / "chunk-cache",
                                                                          ignore_errors=True))
                    server.view._call(lambda c: c.write_file(b"restarted", b""))
                    restarted.append(True)

            lines: list[str] = []
            sizes = " ".join(f"{k}={v}" for k, v in SIZES.items())
            guest = harness.runner.run_guest(
                GUEST, server=server.tcp, transport="tcp", mount_opts=harness.PRIMARY.mount_opts,
                images=vm_images, timeout=600, output=on_line, env={"SIZES": sizes})
            out = "".join(lines)
            assert guest.rc == 0 and "@@S3-OK@@" in out and restarted, out[-4000:] + server.log_tail()
            sums = {}
            for line in out.splitlines():
                if line.startswith("@@SUM "):
                    digest, name = line[6:].split()
                    sums[name] = digest
            assert set(sums) == set(SIZES)
            for name, size in SIZES.items():
                data = server.view.read(name)
                assert len(data) == size and hashlib.sha256(data).hexdigest() == sums[name], name
            assert server.view.read("after") == b"written after the restart\n"
            try:
                fsck = subprocess.run([sys.executable, "-m", "ninep_server", "fsck", "--store", str(store)],
                                      capture_output=True, text=True, timeout=180, cwd=harness.ROOT,
                                      env={**os.environ, "PYTHONPATH": str(harness.ROOT)})
            except subprocess.TimeoutExpired:
                server.proc.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack in the log
                server.proc.wait(30)
                pytest.fail("fsck through the restarted server did not finish; its log:\n"
                            + server.log_tail(20000))
            assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        finally:
            server.stop()
    finally:
        weed.stop()
