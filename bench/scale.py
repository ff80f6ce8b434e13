"""Scale benchmark: do per-file costs stay flat as a store grows?

For each store size N (default 10,000, 100,000 and 1,000,000 small files) it
builds a host tree (one ``wide/`` directory of 10,000 files, the rest in
directories of 1,000; every file 100-2,000 bytes of distinct random content)
and measures, against a fresh store:

- ``ninep import`` of the tree: files/s;
- with ``ninep serve`` running, one client pass that stats every file once
  (Twalk + Tgetattr + Tclunk, 64 outstanding) and reads 1,000 random files,
  and the server's peak RSS (``VmHWM``) after it;
- the warm stat rate: the same stats over ``wide/`` a second time;
- ``diodls -l`` of ``wide/`` (10,000 entries), an independent client;
- ``ninep snapshot create`` through the running server;
- ``ninep snapshot delete`` plus ``ninep gc``, after 1% of the files were
  rewritten (so gc has the snapshot's old chunks to free);
- ``ninep fsck`` of the stopped store;
- the catalog's and the chunk store's size on disk.

The report gives each figure per N and the per-file cost of the largest
store against the smallest (the criterion: within 2x; snapshot creation
constant; RSS bounded by the configured caches, not by N).

    python -m bench.scale [--sizes 10000,100000,1000000] [--out bench/results]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import trio

from ninep_server import protocol as p
from ninep_server.client import connect

from . import report
from .servers import BenchError, Ninep, ninep_command, tempdir

HERE = Path(__file__).resolve().parent
WIDE = 10_000
PER_DIR = 1_000
WINDOW = 64
READS = 1_000
#: the server's caches in this run (ninep serve defaults): RSS must stay near them
CONFIG = ""


def log(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def layout(n: int) -> list[tuple[str, int]]:
    """(directory, file count) of a store of ``n`` files: ``wide`` first."""
    wide = min(WIDE, n)
    dirs = [("wide", wide)]
    rest, i = n - wide, 0
    while rest > 0:
        dirs.append((f"d{i:04d}", min(PER_DIR, rest)))
        rest -= PER_DIR
        i += 1
    return dirs


def file_name(i: int) -> str:
    return f"f{i:05d}"


def build_tree(root: Path, n: int, seed: int = 0) -> int:
    """Write the host tree of ``n`` files; return its bytes."""
    rng = random.Random(seed)
    total = 0
    for d, count in layout(n):
        (root / d).mkdir(parents=True)
        for i in range(count):
            size = rng.randrange(100, 2001)
            with open(root / d / file_name(i), "wb") as f:
                f.write(os.urandom(size))
            total += size
    return total


def ninep(*args: str, timeout: float = 7200) -> float:
    """Run one ninep command; return its wall time (it must succeed).

    The time includes the CLI's start (``cli_start_s`` in the results, the
    time of ``ninep --version``), which the report subtracts.
    """
    t0 = time.perf_counter()
    r = subprocess.run(ninep_command() + list(args), capture_output=True, text=True,
                       timeout=timeout, cwd=str(HERE.parent))
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise BenchError(f"ninep {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return dt


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), bytes."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise BenchError("no VmHWM in /proc/PID/status")


def disk_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


async def _stat_dir(c, root: int, d: str, count: int, next_fid: list[int]) -> None:
    """Walk + getattr + clunk every file of ``d``, ``WINDOW`` requests outstanding."""
    dfid = next_fid[0]
    next_fid[0] += 1
    await c.walk(root, dfid, [d.encode()])
    for start in range(0, count, WINDOW):
        names = [file_name(i).encode() for i in range(start, min(count, start + WINDOW))]
        fids = list(range(next_fid[0], next_fid[0] + len(names)))
        for pend in await c.start_many([p.Twalk(fid=dfid, newfid=f, wnames=[nm])
                                        for f, nm in zip(fids, names)]):
            await pend.result()
        got = [await pend.result() for pend in await c.start_many(
            [p.Tgetattr(fid=f, request_mask=p.GetattrMask.ALL) for f in fids])]
        if any(not isinstance(r, p.Rgetattr) or not r.mode & 0o100000 for r in got):
            raise BenchError(f"getattr in {d}: not a regular file")
        for pend in await c.start_many([p.Tclunk(fid=f) for f in fids]):
            await pend.result()
    await c.clunk(dfid)


async def _client_pass(address: str, n: int, seed: int) -> dict:
    async with connect(address, msize=65536, uname=b"root", n_uname=0, aname=b"main") as c:
        root = await c.walk_path(b"")
        next_fid = [1000]
        t0 = time.perf_counter()
        for d, count in layout(n):
            await _stat_dir(c, root, d, count, next_fid)
        cold = n / (time.perf_counter() - t0)
        rng = random.Random(seed)
        dirs = layout(n)
        t0 = time.perf_counter()
        read = 0
        for _ in range(READS):
            d, count = rng.choice(dirs)
            data = await c.read_file(f"{d}/{file_name(rng.randrange(count))}")
            if not 100 <= len(data) <= 2000:
                raise BenchError(f"read {len(data)} bytes from {d}")
            read += 1
        reads = read / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        await _stat_dir(c, root, "wide", min(WIDE, n), next_fid)
        warm = min(WIDE, n) / (time.perf_counter() - t0)
        return {"stat_cold_per_s": cold, "random_reads_per_s": reads, "stat_warm_per_s": warm}


def diodls_wide(server: Ninep, n: int) -> float:
    """Seconds of ``diodls -l wide`` (10,000 entries) against the server."""
    cmd = ["diodls", "-l", "-s", server.hostport, "-a", "main", "-m", "65536", "-u", "0", "wide"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, timeout=600)
    dt = time.perf_counter() - t0
    lines = [ln for ln in r.stdout.splitlines() if b" f" in ln]
    if r.returncode != 0 or len(lines) != min(WIDE, n):
        raise BenchError(f"diodls -l wide: exit {r.returncode}, {len(lines)} entries")
    return dt


async def _rewrite(address: str, n: int) -> int:
    """Rewrite 1% of the files (in ``wide/``) through the server, then fsync; return how many."""
    count = min(max(1, n // 100), WIDE)
    async with connect(address, msize=65536, uname=b"root", n_uname=0, aname=b"main") as c:
        for i in range(count):
            await c.write_file(f"wide/{file_name(i)}", os.urandom(500), fsync=i == count - 1)
    return count


def one_size(n: int, base: Path, seed: int) -> dict:
    work = tempdir(f"bench-scale-{n}.", str(base))
    tree, store = work / "tree", work / "store"
    out: dict = {"files": n, "cli_start_s": min(ninep("--version") for _ in range(3))}
    try:
        log(f"{n}: writing the host tree")
        out["data_bytes"] = build_tree(tree, n, seed)
        log(f"{n}: ninep import")
        ninep("init", str(store))
        dt = ninep("import", str(tree), "main", "--store", str(store))
        out["import_s"] = dt
        out["import_per_s"] = n / dt
        with Ninep(store, work, CONFIG or None) as srv:
            log(f"{n}: stat every file, read {READS} random files")
            out.update(trio.run(_client_pass, srv.address, n, seed))
            out["peak_rss"] = peak_rss(srv.pid())
            log(f"{n}: diodls -l wide")
            out["ls_l_wide_s"] = diodls_wide(srv, n)
            log(f"{n}: snapshot create")
            out["snapshot_create_s"] = ninep("snapshot", "create", "main@s1", "--store", str(store))
            out["rewritten"] = trio.run(_rewrite, srv.address, n)
            log(f"{n}: snapshot delete + gc")
            t0 = time.perf_counter()
            ninep("snapshot", "delete", "main@s1", "--store", str(store))
            ninep("gc", "--store", str(store))
            out["snapshot_delete_gc_s"] = time.perf_counter() - t0
        log(f"{n}: fsck")
        out["fsck_s"] = ninep("fsck", "--store", str(store))
        out["catalog_bytes"] = sum(disk_bytes(f) if f.is_dir() else f.lstat().st_blocks * 512
                                   for f in store.iterdir() if f.name.startswith("catalog"))
        out["chunk_bytes"] = disk_bytes(store / "chunks")
        log(f"{n}: {out}")
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


#: (key, label, unit, per-file cost: "rate" (files/s), "time_per_file", "constant", None)
ROWS = [
    ("import_per_s", "import", "files/s", "rate"),
    ("stat_cold_per_s", "stat every file (walk+getattr+clunk)", "files/s", "rate"),
    ("stat_warm_per_s", "warm stat of wide/", "files/s", "rate"),
    ("random_reads_per_s", f"{READS} random file reads", "files/s", "rate"),
    ("ls_l_wide_s", "diodls -l of wide/ (10,000 entries)", "s", "constant"),
    ("snapshot_create_s", "snapshot create", "s", "constant"),
    ("snapshot_delete_gc_s", "snapshot delete + gc", "s", "time_per_file"),
    ("fsck_s", "fsck", "s", "time_per_file"),
    ("peak_rss", "server peak RSS", "MiB", None),
    ("catalog_bytes", "catalog on disk", "MiB", "size_per_file"),
    ("chunk_bytes", "chunk store on disk", "MiB", "size_per_file"),
]


#: measures timed around ninep commands: the CLI's start is subtracted (and counted once
#: per command: delete + gc is two)
CLI_COMMANDS = {"import_s": 1, "snapshot_create_s": 1, "snapshot_delete_gc_s": 2, "fsck_s": 1}


def net(run: dict, key: str) -> float:
    """The figure of ``key`` without the CLI's start-up time in it."""
    if key == "import_per_s":
        return run["files"] / max(1e-6, run["import_s"] - run["cli_start_s"])
    return max(1e-6, run[key] - CLI_COMMANDS.get(key, 0) * run["cli_start_s"])


def per_file_ratio(kind: str, small: dict, big: dict, key: str) -> float | None:
    """Cost per file of the largest store over the smallest's (1.0: flat)."""
    a, b = net(small, key), net(big, key)
    if kind == "rate":
        return a / b
    if kind in ("time_per_file", "size_per_file"):
        return (b / big["files"]) / (a / small["files"])
    if kind == "constant":
        return b / a
    return None


def markdown(results: dict) -> str:
    runs = results["runs"]
    L = [f"# ninep scale benchmark, {results['started']}", ""]
    m = results["machine"]
    L.append(f"{m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}. Load average before "
             f"{', '.join(f'{x:.2f}' for x in m['load_before'])}, after "
             f"{', '.join(f'{x:.2f}' for x in results['load_after'])}. Files of 100-2,000 bytes, "
             f"`wide/` of {WIDE:,} entries, the rest in directories of {PER_DIR:,}; "
             f"server with default caches. Total {results['seconds']:.0f} s.")
    L.append("")
    head = "| measure | unit | " + " | ".join(f"{r['files']:,} files" for r in runs)
    L.append(head + " | largest/smallest per file |")
    L.append("|---|---|" + "---|" * len(runs) + "---|")
    for key, label, unit, kind in ROWS:
        cells = []
        for r in runs:
            v = net(r, key)
            cells.append(f"{v / 2**20:,.1f}" if unit == "MiB" else
                         f"{v:,.0f}" if unit == "files/s" else f"{v:,.2f}")
        ratio = per_file_ratio(kind, runs[0], runs[-1], key) if kind and len(runs) > 1 else None
        L.append(f"| {label} | {unit} | " + " | ".join(cells)
                 + f" | {'' if ratio is None else f'{ratio:.2f}x'} |")
    L.append("")
    L.append(f"Times of ninep commands (import, snapshot, gc, fsck) are net of the CLI's start, "
             "measured as `ninep --version` (" + ", ".join(f"{r['cli_start_s']:.2f}" for r in runs)
             + " s).")
    L.append("")
    L.append("Ratios are cost per file, largest store over smallest (rates inverted), "
             "and for constant-size work (a 10,000-entry listing, a snapshot) the time itself: "
             "the criterion is at most 2x, and snapshot creation constant.")
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000",
                    help="comma-separated store sizes in files (default: %(default)s)")
    ap.add_argument("--out", default=str(HERE / "results"), help="results directory")
    ap.add_argument("--no-save", action="store_true", help="print the report only")
    ap.add_argument("--base", default=None, help="where the work directories go (default: /tmp)")
    args = ap.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if not shutil.which("diodls"):
        raise SystemExit("diodls not found: run tests/install-system-deps.sh (Debian package diod)")
    started = _dt.datetime.now(_dt.timezone.utc)
    results: dict = {"started": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "machine": report.machine_facts(), "runs": []}
    t0 = time.monotonic()
    for i, n in enumerate(sizes):
        results["runs"].append(one_size(n, Path(args.base or "/tmp"), seed=i))
    results["seconds"] = time.monotonic() - t0
    results["load_after"] = os.getloadavg()
    md = markdown(results)
    print(md)
    if not args.no_save:
        path = report.save(Path(args.out), "scale-" + started.strftime("%Y%m%dT%H%M%SZ"), results, md)
        log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
