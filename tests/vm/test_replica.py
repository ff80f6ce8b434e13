"""The Linux client mounts a read-only replica (`ninep serve --replica`) over trans=tcp.

On the host a store whose chunks live in SeaweedFS gets a few files and a
snapshot, and ships a catalog copy; a replica serves that copy from the
bucket. The guest reads the snapshot's files (their checksums must equal the
host's), sees the live tree as of the copy, and every write fails with EROFS.
The guest workload stays tiny: TCG is slow.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading

import pytest

from tests.servers import start_seaweedfs
from tests.vm import harness

pytestmark = [pytest.mark.vm, pytest.mark.slow]

CHUNK = 64 << 10
FILES = {"small": b"hello from the primary\n", "chunks": os.urandom(3 * CHUNK + 123)}

GUEST = r"""
set -eu
. /job/config
M=$NINEP_AUTOMOUNT
ls $M/.snapshots
(cd $M/.snapshots/one && sha256sum small chunks) | sed 's/^/@@SUM /'
cmp $M/small $M/.snapshots/one/small || { echo "FAIL: live tree differs"; exit 1; }
if touch $M/new 2>/tmp/err; then echo "FAIL: create succeeded"; exit 1; fi
grep -q "Read-only file system" /tmp/err || { cat /tmp/err; echo "FAIL: not EROFS"; exit 1; }
if echo x >> $M/.snapshots/one/small 2>/tmp/err; then echo "FAIL: write succeeded"; exit 1; fi
grep -q "Read-only file system" /tmp/err || { cat /tmp/err; echo "FAIL: not EROFS"; exit 1; }
if mkdir $M/.snapshots/two 2>/tmp/err; then echo "FAIL: snapshot by mkdir succeeded"; exit 1; fi
echo "@@REPLICA-OK@@"
"""


def _primary(store_dir: str) -> None:
    """A store in the bucket with FILES, snapshot `one`, and a catalog copy."""
    from cas import Store
    from cas.catalogcopy import ship

    with Store.open(store_dir, create=True, chunks="s3://vmtest/rep", chunk_size=CHUNK) as store:
        store.create_dataset("main")
        vol = store.volume("main")
        for name, data in FILES.items():
            ino = vol.create(vol.root, name.encode(), 0o100644, 0, 0).ino
            vol.write(ino, 0, data)
        store.commit()
        store.create_snapshot("main", "one")
        ship(store)


def test_guest_mounts_the_replica_and_reads_a_snapshot(vm_images, tmp_path, monkeypatch):
    weed = start_seaweedfs(tmp_path / "weed")
    replica = None
    try:
        for name, value in weed.env().items():
            monkeypatch.setenv(name, value)
        _primary(str(tmp_path / "primary"))
        log = open(tmp_path / "replica.log", "ab")
        replica = subprocess.Popen(
            harness.ninep_command() + ["serve", "--replica", "s3://vmtest/rep", "--store",
                                       str(tmp_path / "replica"), "--listen", "tcp:127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, cwd=harness.ROOT,
            env={**os.environ, "PYTHONPATH": str(harness.ROOT)})
        line = replica.stdout.readline().decode()
        assert line.startswith("listening tcp:"), (tmp_path / "replica.log").read_text()[-3000:]
        tcp = line.split(None, 1)[1].strip()
        threading.Thread(target=replica.stdout.read, daemon=True).start()   # keep draining

        lines: list[str] = []
        guest = harness.runner.run_guest(
            GUEST, server=tcp, transport="tcp", mount_opts=harness.PRIMARY.mount_opts,
            images=vm_images, timeout=600, output=lines.append)
        out = "".join(lines)
        assert guest.rc == 0 and "@@REPLICA-OK@@" in out, out[-4000:]
        sums = {}
        for text in out.splitlines():
            if text.startswith("@@SUM "):
                digest, name = text[6:].split()
                sums[name] = digest
        assert sums == {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}
    finally:
        if replica is not None:
            harness.hostserver.stop(replica)
        weed.stop()
