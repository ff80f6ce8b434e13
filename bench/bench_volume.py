#!/usr/bin/env python3
"""Benchmark the cas Volume API against plain Python file I/O on the same disk.

Both sides do the same work in the same run and both make what they write
durable: plain files fsync each file; the Volume side ends with a group
commit (what Tfsync or the server's commit loop does). A commit thread stands
in for the server's commit loop.

Reports: small-file create+write(4 KiB)+close per second, warm stat per
second, sequential write and read MB/s of a large file, and peak RSS while
creating many files through the Volume (in a child process).

The sequential measures run in interleaved rounds (``--reps``), each on new
files, and report the median of the per-round ratios.

Sequential reads are measured twice. From the disk (``seq_read_MBps``, the
page cache dropped before each side; needs root) both sides read the same
bytes from the device. With the page cache warm (``seq_read_warm_MBps``) the
plain side is one memcpy per byte, while every chunk the Volume reads from a
file is verified with BLAKE3; ``bound_ratio`` is the best ratio any verified
read can reach on this machine (one memcpy plus one BLAKE3 pass per byte, at
the BLAKE3 speed measured in the same run).

    python bench/bench_volume.py [--dir DIR] [--small N] [--seq-mib M] [--rss-files N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from statistics import median

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import logging  # noqa: E402

import structlog  # noqa: E402

from cas import Store  # noqa: E402

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

MiB = 1 << 20


class CommitLoop:
    """Calls store.commit() every commit_interval seconds, as the server does."""

    def __init__(self, store: Store):
        self.store = store
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.wait(self.store.commit_interval):
            self.store.commit()

    def close(self):
        self.stop.set()
        self.t.join()


def settle() -> None:
    """Start a write measure on a quiet disk: no writeback or discard of earlier work in flight."""
    os.sync()
    time.sleep(1)


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_small(base: str, n: int, payloads: list[bytes]) -> tuple[float, float]:
    plain_dir = os.path.join(base, "plain-small")
    os.makedirs(plain_dir)

    def plain():
        for i in range(n):
            fd = os.open(f"{plain_dir}/f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, payloads[i])
            os.fsync(fd)
            os.close(fd)

    store = Store.open(os.path.join(base, "store-small"), create=True)
    store.create_dataset("b")
    vol = store.volume("b")
    loop = CommitLoop(store)
    d = vol.mkdir(vol.root, b"small", 0o755, 0, 0).ino

    def volume():
        create, write, opn, rel = vol.create, vol.write, vol.open, vol.release
        for i in range(n):
            ino = create(d, b"f%d" % i, 0o644, 0, 0).ino
            opn(ino)
            write(ino, 0, payloads[i])
            rel(ino)
        store.commit()

    settle()
    t_vol = timed(volume)
    settle()
    t_plain = timed(plain)
    loop.close()
    store.close()
    return n / t_plain, n / t_vol


def bench_stat(base: str, n: int, rounds: int) -> tuple[float, float]:
    plain_dir = os.path.join(base, "plain-small")
    paths = [f"{plain_dir}/f{i}" for i in range(n)]
    store = Store.open(os.path.join(base, "store-small"))
    vol = store.volume("b")
    d = vol.lookup(vol.root, b"small").ino
    names = [b"f%d" % i for i in range(n)]
    for name in names:  # warm both caches
        vol.lookup(d, name)
    for p in paths:
        os.stat(p)

    def plain():
        st = os.stat
        for _ in range(rounds):
            for p in paths:
                st(p)

    def volume():
        lookup = vol.lookup
        for _ in range(rounds):
            for name in names:
                lookup(d, name)

    t_plain = timed(plain)
    t_vol = timed(volume)
    store.close()
    return n * rounds / t_plain, n * rounds / t_vol


def blake3_gbps() -> float:
    """BLAKE3 speed on one core over 128 KiB buffers: the bound of a verified read."""
    from cas.chunks import chunk_hash
    buf = os.urandom(128 * 1024)
    n = 4096
    t = timed(lambda: [chunk_hash(buf) for _ in range(n)])
    return n * len(buf) / t / 1e9


def bench_seq(base: str, mib: int, block: int, drop_caches: bool, reps: int) -> dict:
    """Sequential write, warm read and (with ``drop_caches``) read from disk.

    ``reps`` interleaved rounds; each writes a new file on both sides with
    content of its own (so the Volume cannot dedup against an earlier round)
    and keeps it until the end, so no round pays for an earlier one's
    deletion. Which side goes first alternates. Returns a list per measure.
    """
    total = mib * MiB
    # distinct content for every chunk-sized window: blocks are windows of a
    # random buffer at odd offsets, shifted by the round
    buf = memoryview(os.urandom(96 * MiB))
    span = len(buf) - block

    def payload(rep, i):
        o = (i * 1_000_003 + rep * 7_919) % span
        return buf[o:o + block]

    store = Store.open(os.path.join(base, "store-big"), create=True)
    store.create_dataset("b")
    vol = store.volume("b")
    loop = CommitLoop(store)

    def plain_write(rep, path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for i in range(total // block):
            os.write(fd, payload(rep, i))
        os.fsync(fd)
        os.close(fd)

    def plain_read(path):
        with open(path, "rb", buffering=0) as f:
            while f.read(block):
                pass

    def vol_write(rep, ino):
        w = vol.write
        for i in range(total // block):
            w(ino, i * block, payload(rep, i))
        vol.fsync(ino)

    def vol_read(ino):
        r = vol.read
        off = 0
        while True:
            got = r(ino, off, block)
            if not got:
                break
            off += len(got)

    def drop():
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        store.chunks.drop_cache()

    res: dict[str, list] = {}

    def note(key, seconds):
        res.setdefault(key, []).append(mib / seconds)

    for rep in range(reps):
        path = os.path.join(base, f"plain-big-{rep}")
        ino = vol.create(vol.root, b"big-%d" % rep, 0o644, 0, 0).ino
        sides = [("plain", lambda: plain_write(rep, path), lambda: plain_read(path)),
                 ("vol", lambda: vol_write(rep, ino), lambda: vol_read(ino))]
        if rep % 2:
            sides.reverse()
        for name, write, _ in sides:
            settle()
            note(f"{name}_write", timed(write))
        # Warm: both files are in the page cache (plain: one memcpy per byte; the
        # Volume also verifies every chunk with BLAKE3, which bounds it).
        for name, _, read in sides:
            store.chunks.drop_cache()
            note(f"{name}_read_warm", timed(read))
        if drop_caches:
            # From the disk: the page cache dropped before each side.
            for name, _, read in sides:
                drop()
                note(f"{name}_read", timed(read))
    res["vol_chunks_written"] = store.chunks.chunks_written
    loop.close()
    store.close()
    return res


RSS_CHILD = r"""
import logging, os, resource, sys, threading, time
sys.path.insert(0, sys.argv[3])
import structlog
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
from cas import Store
path, n = sys.argv[1], int(sys.argv[2])
empty = sys.argv[4] == "1"
s = Store.open(path, create=True)
s.create_dataset("b")
v = s.volume("b")
stop = threading.Event()
def loop():
    while not stop.wait(s.commit_interval):
        s.commit()
t = threading.Thread(target=loop, daemon=True); t.start()
per_dir = 1000
t0 = time.perf_counter()
for i in range(n):
    if i % per_dir == 0:
        d = v.mkdir(v.root, b"d%d" % (i // per_dir), 0o755, 0, 0).ino
    ino = v.create(d, b"file-%d" % i, 0o644, 0, 0).ino
    if not empty:
        v.write(ino, 0, b"content of file %d\n" % i)
stop.set(); t.join()
s.commit()
dt = time.perf_counter() - t0
cached = len(v.cache.inodes)
s.close()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, dt, cached)
"""


def bench_rss(base: str, n: int, empty: bool) -> tuple[int, float, int]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", RSS_CHILD, os.path.join(base, "store-rss"),
                          str(n), root, "1" if empty else "0"],
                         check=True, capture_output=True, text=True).stdout.split()
    return int(out[-3]), float(out[-2]), int(out[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir in ./)")
    ap.add_argument("--small", type=int, default=5000, help="small files to create")
    ap.add_argument("--stat-rounds", type=int, default=20, help="stat passes over the small files")
    ap.add_argument("--seq-mib", type=int, default=1024, help="size of the sequential file")
    ap.add_argument("--block", type=int, default=1 << 20, help="sequential I/O size")
    ap.add_argument("--reps", type=int, default=3,
                    help="interleaved rounds of the sequential measures (medians are reported)")
    ap.add_argument("--rss-files", type=int, default=200_000, help="files for the RSS run")
    ap.add_argument("--rss-empty", action="store_true", help="RSS run creates empty files")
    ap.add_argument("--no-drop-caches", dest="drop_caches", action="store_false",
                    default=os.geteuid() == 0,
                    help="skip the read from disk (it drops the page cache, so needs root)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="bench-volume-", dir=args.dir or os.getcwd())
    results = {}
    try:
        payloads = [os.urandom(4096) for _ in range(args.small)]
        plain, vol = bench_small(base, args.small, payloads)
        results["small_files_per_s"] = {"plain": plain, "volume": vol, "ratio": vol / plain,
                                        "target_ratio": 0.8}
        plain, vol = bench_stat(base, args.small, args.stat_rounds)
        results["warm_stat_per_s"] = {"plain": plain, "volume": vol, "ratio": vol / plain,
                                      "target_volume": 100_000}
        seq = bench_seq(base, args.seq_mib, args.block, args.drop_caches, args.reps)
        b3 = blake3_gbps()
        for key, side in (("seq_write_MBps", "write"), ("seq_read_MBps", "read"),
                          ("seq_read_warm_MBps", "read_warm")):
            if f"plain_{side}" not in seq:
                continue
            plain, vol = seq[f"plain_{side}"], seq[f"vol_{side}"]
            ratios = [v / p for p, v in zip(plain, vol)]
            results[key] = {"plain": median(plain), "volume": median(vol),
                            "ratio": median(ratios), "ratios": ratios}
            if side == "read_warm":
                # a verified read cannot beat one memcpy plus one BLAKE3 pass per byte
                results[key]["bound_ratio"] = 1 / (1 + median(plain) / (b3 * 1000))
            else:
                results[key]["target_ratio"] = 0.5
        if args.rss_files:
            rss, dt, cached = bench_rss(base, args.rss_files, args.rss_empty)
            results["rss_create"] = {"files": args.rss_files, "peak_rss_MB": rss / MiB,
                                     "seconds": dt, "files_per_s": args.rss_files / dt,
                                     "cached_inodes_at_end": cached, "target_MB": 500}
    finally:
        shutil.rmtree(base, ignore_errors=True)
        os.sync()  # the deletions' discards, so that the next run does not pay for them
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for key, r in results.items():
        if "ratio" in r:
            bound = f"  (bound {r['bound_ratio']:.2f})" if "bound_ratio" in r else ""
            rounds = ("  rounds " + " ".join(f"{x:.2f}" for x in r["ratios"])
                      if "ratios" in r else "")
            print(f"{key:20s} plain {r['plain']:12.1f}  volume {r['volume']:12.1f}  "
                  f"ratio {r['ratio']:.2f}{bound}{rounds}")
        else:
            print(f"{key:20s} {r['files']} files: peak RSS {r['peak_rss_MB']:.0f} MB, "
                  f"{r['files_per_s']:.0f} files/s, {r['cached_inodes_at_end']} inodes cached")


if __name__ == "__main__":
    main()
