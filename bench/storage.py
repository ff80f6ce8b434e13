"""Storage-level benchmarks, on the cas API directly (no 9P).

- dedup: the same data written twice (two files), and 10 datasets cloned from
  one snapshot: chunk bytes on disk against logical bytes.
- snapshot creation time with 1,000 and with 200,000 files in the dataset
  (after a commit, plus one modified file so the snapshot is a real barrier);
  the ratio 200k/1k should stay near 1 (O(1) snapshots).

The snapshot timings come from bench/bench_snapshots.py (run as a
subprocess with --json) when it exists; snapshot_time() here is the fallback.
"""
from __future__ import annotations

import logging
import os
import statistics
import time
from pathlib import Path

import structlog

from cas import Store

from .host import content_block
from .servers import BenchError

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

MiB = 1 << 20


def chunk_disk_bytes(store_dir: Path) -> int:
    """Bytes the chunk files take (st_size; allocation rounding excluded)."""
    total = 0
    for d, _, fs in os.walk(store_dir / "chunks"):
        for f in fs:
            total += os.lstat(os.path.join(d, f)).st_size
    return total


def catalog_bytes(store_dir: Path) -> int:
    return sum(os.path.getsize(store_dir / n) for n in os.listdir(store_dir)
               if n.startswith("catalog.duckdb"))


def _write_file(vol, parent: int, name: bytes, mib: int) -> None:
    ino = vol.create(parent, name, 0o644, 0, 0).ino
    vol.open(ino)
    for i in range(mib):
        vol.write(ino, i * MiB, content_block(1000 + i))
    vol.release(ino)


def _open(path: Path) -> Store:
    s = Store.open(str(path), create=True)
    if "main" not in s.datasets():
        s.create_dataset("main")
    return s


def dedup(base: Path, mib: int, clones: int = 10) -> dict:
    out = {}
    # 1. the same data written twice
    d = base / "dedup-twice"
    with _open(d) as s:
        vol = s.volume("main")
        _write_file(vol, vol.root, b"a", mib)
        _write_file(vol, vol.root, b"b", mib)
        s.commit()
    out["twice"] = {"logical": 2 * mib * MiB, "disk": chunk_disk_bytes(d),
                    "catalog": catalog_bytes(d)}
    # 2. clones of one snapshot
    d = base / "dedup-clones"
    with _open(d) as s:
        vol = s.volume("main")
        _write_file(vol, vol.root, b"data", mib)
        s.commit()
        s.create_snapshot("main", "base")
        for i in range(clones):
            s.clone("main", "base", f"clone{i}")
        s.commit()
        n = len(s.datasets())
        if n != clones + 1:
            raise BenchError(f"clone: {n} datasets, expected {clones + 1}")
        # every clone sees the data
        for i in range(clones):
            v = s.volume(f"clone{i}")
            if v.lookup(v.root, b"data").size != mib * MiB:
                raise BenchError(f"clone{i}: wrong size")
    out["clones"] = {"logical": (clones + 1) * mib * MiB, "disk": chunk_disk_bytes(d),
                     "catalog": catalog_bytes(d)}
    for v in out.values():
        if v["disk"] <= 0 or v["logical"] <= 0:
            raise BenchError(f"dedup: no bytes measured ({v})")
        v["ratio"] = v["disk"] / v["logical"]
    return out


def _populate_files(vol, n: int, per_dir: int = 1000) -> None:
    for dn in range((n + per_dir - 1) // per_dir):
        d = vol.mkdir(vol.root, b"d%04d" % dn, 0o755, 0, 0).ino
        for i in range(dn * per_dir, min(n, (dn + 1) * per_dir)):
            ino = vol.create(d, b"f%07d" % i, 0o644, 0, 0).ino
            vol.open(ino)
            vol.write(ino, 0, b"%d\n" % i)
            vol.release(ino)


def snapshot_time(base: Path, n: int, reps: int = 3) -> dict:
    """Median (and all) seconds of create_snapshot on a dataset of n files."""
    d = base / f"snap-{n}"
    with _open(d) as s:
        vol = s.volume("main")
        t0 = time.perf_counter()
        _populate_files(vol, n)
        s.commit()
        setup = time.perf_counter() - t0
        probe = vol.create(vol.root, b"probe", 0o644, 0, 0).ino
        times = []
        for r in range(reps):
            vol.open(probe)
            vol.write(probe, 0, b"rep %d\n" % r)
            vol.release(probe)
            t0 = time.perf_counter()
            s.create_snapshot("main", f"s{r}")
            times.append(time.perf_counter() - t0)
        if len(s.snapshots("main")) != reps:
            raise BenchError("snapshots missing")
    return {"files": n, "seconds": times, "median": statistics.median(times), "setup_s": setup}


SNAP_SCRIPT = Path(__file__).resolve().parent / "bench_snapshots.py"


def snapshot_times_via_script(base: Path, small: int, large: int, runs: int = 21) -> dict | None:
    """Run bench/bench_snapshots.py (the snapshot benchmark proper: interleaved
    clean and dirty snapshots of a small and a large tree) and return its
    numbers in this module's format; None if the script is not there."""
    import json
    import subprocess
    import sys
    if not SNAP_SCRIPT.exists():
        return None
    r = subprocess.run([sys.executable, str(SNAP_SCRIPT), "--small", str(small), "--large", str(large),
                        "--runs", str(runs), "--dir", str(base), "--json"],
                       capture_output=True, text=True, timeout=1800)
    # exit 1 means "ratio >= 2": a missed target, reported, not a failed run
    if r.returncode not in (0, 1) or "\n{" not in r.stdout:
        raise BenchError(f"bench_snapshots.py failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    res = json.loads(r.stdout[r.stdout.index("\n{") + 1:])
    out = {}
    for label in ("small", "large"):
        n = res["files"][label]
        dirty = res["median_ms"]["dirty"][label] / 1e3
        clean = res["median_ms"]["clean"][label] / 1e3
        out[str(n)] = {"files": n, "median": dirty, "clean_median": clean, "runs": res["runs"],
                       "source": "bench/bench_snapshots.py"}
    return out
