"""Guest benchmarks: the Linux v9fs client in a QEMU guest (vm-images runner).

Targets, each booted fresh (a new export per boot):

- ``diod``         diod over trans=tcp, msize 65536 (its maximum)
- ``ninep-64k``    ninep over trans=tcp, msize 65536 (like for like with diod)
- ``ninep-512k``   ninep over trans=tcp, msize 512000
- ``virtio``       QEMU's built-in virtio-9p (trans=virtio, msize 512000), the
                   upper reference: no network stack, no server process

All mounts use ``version=9p2000.L,access=user,cache=none``.  One boot runs
every workload and prints ``@@BENCH name microseconds@@`` per step, timed in
the guest.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .servers import ROOT, BenchError, Diod, Ninep, tempdir

sys.path.insert(0, str(ROOT / "vm-images"))

MiB = 1 << 20

TARGETS = {
    # name: (server kind, transport, msize)
    "diod": ("diod", "tcp", 65536),
    "ninep-64k": ("ninep", "tcp", 65536),
    "ninep-512k": ("ninep", "tcp", 512000),
    "virtio": ("virtio", "virtio", 512000),
}

# name -> (unit, description); the value reported is a rate (higher is better)
GUEST_BENCHES = {
    "seq_write": ("MB/s", "dd 1 MiB blocks + fsync (conv=fsync)"),
    "seq_read": ("MB/s", "dd 1 MiB blocks to /dev/null (cache=none)"),
    "create": ("files/s", "small-file creates (echo > f)"),
    "ls_l": ("entries/s", "ls -l of that directory"),
    "rm_r": ("files/s", "rm -r of that directory"),
    "untar": ("files/s", "tar -x of a source tree"),
    "git_clone": ("files/s", "git clone of a local repository (files checked out)"),
    "du_s": ("files/s", "du -s of the untarred tree"),
    "ls_lR": ("files/s", "ls -lR of the untarred tree"),
    "rm_tree": ("files/s", "rm -r of the untarred tree"),
}

#: the real-work sequence, reported as seconds per step and their total
REAL_WORK = ("untar", "git_clone", "du_s", "ls_lR", "rm_tree")


@dataclass
class GuestSizes:
    seq_mib: int = 128
    small: int = 2000
    tar_files: int = 1500
    tar_max_file: int = 256 << 10


SCRIPT = r"""#!/bin/bash
set -eu
. /job/config
W=/mnt/9p/bench
mkdir -p $W
now() { date +%s%N; }
report() { echo "@@BENCH $1 $(( ($3 - $2) / 1000 ))@@"; }
# inputs staged in the guest's RAM, outside the timings
head -c $((SEQ_MIB * 1048576)) /dev/urandom > /tmp/seq.src
mkdir /tmp/repo && git -C /tmp/repo init -q && git -C /tmp/repo fetch -q /job/repo.bundle HEAD:main \
    && git -C /tmp/repo symbolic-ref HEAD refs/heads/main
sync

a=$(now); dd if=/tmp/seq.src of=$W/seq bs=1M conv=fsync status=none; b=$(now); report seq_write $a $b
rm -f /tmp/seq.src
a=$(now); dd if=$W/seq of=/dev/null bs=1M status=none; b=$(now); report seq_read $a $b
[ "$(stat -c %s $W/seq)" = $((SEQ_MIB * 1048576)) ]

mkdir $W/small
a=$(now); for ((i = 0; i < SMALL; i++)); do echo $i > $W/small/f$i; done; b=$(now); report create $a $b
a=$(now); n=$(ls -l $W/small | grep -c ' f[0-9]'); b=$(now); report ls_l $a $b
[ "$n" = "$SMALL" ] || { echo "ls -l saw $n of $SMALL"; exit 1; }
a=$(now); rm -r $W/small; b=$(now); report rm_r $a $b

mkdir $W/tar
a=$(now); tar -xf /job/src.tar -C $W/tar; b=$(now); report untar $a $b
n=$(find $W/tar -type f | wc -l)
[ "$n" = "$TAR_FILES" ] || { echo "untar: $n files, expected $TAR_FILES"; exit 1; }

a=$(now); git clone -q --no-hardlinks /tmp/repo $W/clone; b=$(now); report git_clone $a $b
n=$(git -C $W/clone ls-files | wc -l)
[ "$n" = "$GIT_FILES" ] || { echo "git clone: $n files, expected $GIT_FILES"; exit 1; }

a=$(now); du -s $W/tar > /tmp/du.out; b=$(now); report du_s $a $b
[ "$(cut -f1 /tmp/du.out)" -gt 0 ]
a=$(now); n=$(ls -lR $W/tar | grep -c '^-'); b=$(now); report ls_lR $a $b
[ "$n" = "$TAR_FILES" ] || { echo "ls -lR saw $n of $TAR_FILES files"; exit 1; }
a=$(now); rm -r $W/tar; b=$(now); report rm_tree $a $b
[ ! -e $W/tar ] || { echo "rm -r left $W/tar"; exit 1; }
echo "@@BENCH-DONE@@"
"""

BENCH_RE = re.compile(r"@@BENCH (\w+) (\d+)@@")


def source_tarball(sizes: GuestSizes) -> tuple[bytes, int]:
    """A tar of the running Python's stdlib (a real source tree): up to
    ``tar_files`` regular files of at most ``tar_max_file`` bytes, sorted so
    the same machine always gives the same tree."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files: list[Path] = []
    for d, ds, fs in os.walk(root):
        ds[:] = sorted(x for x in ds if x not in ("__pycache__", "site-packages"))
        for f in sorted(fs):
            path = Path(d) / f
            if path.is_file() and not path.is_symlink() and path.stat().st_size <= sizes.tar_max_file:
                files.append(path)
    files = files[: sizes.tar_files]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in files:
            ti = tar.gettarinfo(str(path), arcname="stdlib/" + str(path.relative_to(root)))
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            with open(path, "rb") as f:
                tar.addfile(ti, f)
    return buf.getvalue(), len(files)


def repo_bundle(workdir: Path) -> tuple[bytes, int]:
    """A git bundle of this repository's HEAD and its file count."""
    out = workdir / "repo.bundle"
    subprocess.run(["git", "-C", str(ROOT), "bundle", "create", str(out), "HEAD"],
                   check=True, capture_output=True)
    n = len(subprocess.run(["git", "-C", str(ROOT), "ls-files"], check=True,
                           capture_output=True, text=True).stdout.splitlines())
    return out.read_bytes(), n


class GuestInputs:
    def __init__(self, sizes: GuestSizes, workdir: Path):
        self.sizes = sizes
        self.tar, self.tar_files = source_tarball(sizes)
        self.bundle, self.git_files = repo_bundle(workdir)

    def work(self) -> dict[str, float]:
        """The amount of work per benchmark (bytes or files), for rates."""
        s = self.sizes
        return {"seq_write": s.seq_mib * MiB / 1e6, "seq_read": s.seq_mib * MiB / 1e6,
                "create": s.small, "ls_l": s.small, "rm_r": s.small,
                "untar": self.tar_files, "git_clone": self.git_files,
                "du_s": self.tar_files, "ls_lR": self.tar_files, "rm_tree": self.tar_files}


def run_target(target: str, inputs: GuestInputs, base: str | None = None,
               log=None, timeout: float = 900) -> dict[str, float]:
    """Boot one guest against a fresh `target`; returns {bench: rate}."""
    import runner
    kind, transport, msize = TARGETS[target]
    work = tempdir(f"bench-{target}.", base)
    server = None
    try:
        if kind == "diod":
            export = work / "export"
            export.mkdir()
            server = Diod(export, work)
            srv, aname = server.address, server.aname
        elif kind == "ninep":
            server = Ninep(work / "store", work)
            srv, aname = server.address, server.aname
        else:
            export = work / "export"
            export.mkdir()
            srv, aname = f"dir:{export}", ""
        env = {"SEQ_MIB": str(inputs.sizes.seq_mib), "SMALL": str(inputs.sizes.small),
               "TAR_FILES": str(inputs.tar_files), "GIT_FILES": str(inputs.git_files)}
        lines: list[str] = []
        res = runner.run_guest(
            SCRIPT, server=srv, transport=transport, aname=aname,
            mount_opts=f"version=9p2000.L,msize={msize},access=user,cache=none",
            files={"src.tar": inputs.tar, "repo.bundle": inputs.bundle}, env=env,
            timeout=timeout, output=lines.append, memory_mib=1536)
        out = "".join(lines)
        if log is not None:
            log.write(f"===== {target} rc={res.rc} {res.seconds:.1f}s\n{out}\n")
            log.flush()
        if server is not None and not server.alive():
            raise BenchError(f"{target}: server died during the guest run:\n{server.log_tail()}")
        if res.rc != 0 or "@@BENCH-DONE@@" not in out:
            raise BenchError(f"{target}: guest failed (rc={res.rc}, timed_out={res.timed_out}):\n"
                             + out[-3000:])
        amounts = inputs.work()
        results = {}
        for name, us in BENCH_RE.findall(out):
            us = int(us)
            if us <= 0:
                raise BenchError(f"{target}: {name} took {us} us")
            results[name] = amounts[name] / (us / 1e6)
        missing = set(GUEST_BENCHES) - set(results)
        if missing:
            raise BenchError(f"{target}: no result for {sorted(missing)}")
        return results
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
