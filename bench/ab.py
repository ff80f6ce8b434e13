"""python -m bench.ab OLD NEW: two source trees of ninep measured in one interleaved run.

For a change that must not cost speed (a refactor, say), check out the old
commit beside the new one and compare them on the same machine, in the same
minutes::

    git worktree add /tmp/ninep-old <old-commit>
    python -m bench.ab /tmp/ninep-old . --reps 3

Measured, for each tree, ``--reps`` times, the trees alternating which goes
first in each repetition:

- ``diodcat`` (MB/s), ``diodls`` (entries/s) and pipelined ``getattr_16``
  (Tgetattr/s, 16 outstanding) against that tree's ``ninep serve``, as in
  ``python -m bench --only host`` (see bench/host.py);
- ``bench_volume``'s small-file creation and sequential write/read figures,
  from that tree's own ``bench/bench_volume.py`` (the engine API may differ
  between the trees).

Each ratio is new/old within one repetition; the table gives the median ratio
and the medians of the absolute figures. Writes ``--out``/ab-<UTC time>.{md,json}
(or ``--name``.{md,json}).

``--diod`` adds Debian's diod as a third server to the host measures (it
exports a directory holding the same bytes), so each tree's figure is also
given as a ratio to diod's from the same repetition: the figure the project's
targets are stated in, and one that a noisy machine disturbs less than the
absolute numbers. ``--no-volume`` skips the bench_volume figures. The load
average is recorded before and after.

For every host measure the server's own CPU time (user + system, from
/proc) is recorded too: on a shared, loaded machine the wall-clock figures
swing with whatever else runs, while the CPU a server spends on the same
work moves much less.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

from . import host, report
from .servers import BenchError, Diod, Ninep, code_env, process_cpu, rotate, tempdir

HERE = Path(__file__).resolve().parent
HOST = ("diodcat", "diodls", "getattr_16")
VOLUME = {
    "small_files_per_s": "files/s",
    "seq_write_MBps": "MB/s",
    "seq_read_MBps": "MB/s",
    "seq_read_warm_MBps": "MB/s",
}


def log(msg: str) -> None:
    print(f"[ab {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) process ``pid`` has used so far."""
    return sum(process_cpu(pid))


def git_rev(tree: Path) -> str:
    r = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


def bench_volume(tree: Path, base: Path, args) -> dict[str, float]:
    """The volume figures of ``tree``'s own bench_volume, one repetition."""
    cmd = [sys.executable, "-m", "bench.bench_volume", "--dir", str(base), "--json",
           "--small", str(args.small), "--seq-mib", str(args.seq_mib), "--reps", "1",
           "--rss-files", "0"]
    r = subprocess.run(cmd, cwd=tree, env=code_env(tree), capture_output=True, text=True,
                       timeout=1800)
    if r.returncode != 0:
        raise BenchError(f"bench_volume in {tree} failed:\n{r.stderr[-2000:]}")
    out = json.loads(r.stdout[r.stdout.index("{"):])
    return {k: out[k]["volume"] for k in VOLUME if k in out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("old", type=Path, help="source tree of the old commit (a git worktree)")
    ap.add_argument("new", type=Path, help="source tree of the new commit")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    ap.add_argument("--big-mib", type=int, default=128, help="size of the file diodcat reads")
    ap.add_argument("--entries", type=int, default=5000, help="entries diodls -l lists")
    ap.add_argument("--getattr-ops", type=int, default=20000, help="Tgetattr per measure")
    ap.add_argument("--small", type=int, default=3000, help="bench_volume small files")
    ap.add_argument("--seq-mib", type=int, default=256, help="bench_volume sequential MiB")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir in ./)")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="where results go")
    ap.add_argument("--name", default=None, help="results file stem (default: ab-<UTC time>)")
    ap.add_argument("--diod", action="store_true",
                    help="also measure diod on the host measures (ratios to diod per repetition)")
    ap.add_argument("--no-volume", action="store_true", help="skip the bench_volume figures")
    ap.add_argument("--old-label", default=None,
                    help="what the old tree is, when it is not a git checkout (e.g. the commit it was exported from)")
    args = ap.parse_args()
    load_before = os.getloadavg()
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    sizes = host.HostSizes(big_mib=args.big_mib, entries=args.entries,
                           getattr_ops=args.getattr_ops)
    work = tempdir("bench-ab.", args.dir or os.getcwd())
    figures: dict[str, dict[str, list[float]]] = {}
    cpu: dict[str, dict[str, list[float]]] = {}   # server CPU seconds per host measure
    try:
        servers = {}
        try:
            if args.diod:
                export = work / "export"
                export.mkdir()
                host.populate_dir(export, sizes)
                servers["diod"] = Diod(export, work)
            for side, tree in trees.items():
                (work / side).mkdir()
                servers[side] = Ninep(work / side / "store", work / side, code=tree)
                log(f"{side}: {git_rev(tree)} serving at {servers[side].address}; populating")
                host.populate_ninep(servers[side], sizes)
            for r in range(args.reps):
                for name in HOST:
                    for side in rotate(list(servers), r):
                        c0 = server_cpu(servers[side].pid())
                        v = host.run_one(name, servers[side], sizes)
                        cpu.setdefault(name, {}).setdefault(side, []).append(
                            server_cpu(servers[side].pid()) - c0)
                        figures.setdefault(name, {}).setdefault(side, []).append(v)
                        log(f"rep {r + 1}/{args.reps} {name:18s} {side} {v:10.1f}")
        finally:
            for srv in servers.values():
                srv.stop()
        for r in range(0 if args.no_volume else args.reps):
            for side in rotate(["old", "new"], r):
                vol = bench_volume(trees[side], work, args)
                for name, v in vol.items():
                    figures.setdefault(name, {}).setdefault(side, []).append(v)
                    log(f"rep {r + 1}/{args.reps} {name:18s} {side} {v:10.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_report(figures, trees, args, load_before, cpu)


def write_report(figures: dict, trees: dict, args, load_before, cpu: dict | None = None) -> None:
    units = dict(VOLUME, diodcat="MB/s", diodls="entries/s", getattr_16="ops/s")
    rows, table, vs_diod = {}, [], []
    for name, by in figures.items():
        ratios = [n / o for o, n in zip(by["old"], by["new"])]
        rows[name] = {"unit": units[name], "old": by["old"], "new": by["new"],
                      "ratios": ratios, "median_ratio": median(ratios)}
        table.append(f"| {name} | {units[name]} | {median(by['old']):,.1f} | "
                     f"{median(by['new']):,.1f} | {median(ratios):.3f} | "
                     f"{', '.join(f'{x:.3f}' for x in ratios)} |")
        if "diod" in by:
            row = rows[name]
            row["diod"] = by["diod"]
            for side in ("old", "new"):
                row[f"{side}_per_diod"] = [v / d for v, d in zip(by[side], by["diod"])]
            vs_diod.append(f"| {name} | {units[name]} | {median(by['diod']):,.1f} | "
                           f"{median(row['old_per_diod']):.2f} "
                           f"[{min(row['old_per_diod']):.2f}–{max(row['old_per_diod']):.2f}] | "
                           f"{median(row['new_per_diod']):.2f} "
                           f"[{min(row['new_per_diod']):.2f}–{max(row['new_per_diod']):.2f}] |")
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    meta = {"old": {"tree": str(trees["old"]), "commit": args.old_label or git_rev(trees["old"])},
            "new": {"tree": str(trees["new"]), "commit": git_rev(trees["new"])},
            "reps": args.reps, "load_before": load_before, "load_after": os.getloadavg()}
    md = [f"# A/B: {meta['new']['commit']} (new) against {meta['old']['commit']} (old)", "",
          f"{args.reps} interleaved repetitions; ratio = new/old within a repetition. "
          f"Load average before {_load(load_before)}, after {_load(meta['load_after'])} "
          f"({os.cpu_count()} CPUs, shared).", "",
          "| measure | unit | old (median) | new (median) | median ratio | ratios |",
          "|---|---|---|---|---|---|", *table, ""]
    if vs_diod:
        md += ["Against diod in the same repetition (median of the per-repetition ratios, "
               "[min–max]; higher is better):", "",
               "| measure | unit | diod (median) | old/diod | new/diod |",
               "|---|---|---|---|---|", *vs_diod, ""]
    cpu_rows = []
    for name, by in (cpu or {}).items():
        rows[name]["server_cpu_seconds"] = by
        cells = " | ".join(f"{median(by[k]):.2f}" if k in by else "–" for k in ("old", "new", "diod"))
        cpu_rows.append(f"| {name} | {cells} | {_cpu_ratio(by, 'new', 'old')} "
                        f"| {_cpu_ratio(by, 'old', 'diod')} | {_cpu_ratio(by, 'new', 'diod')} |")
    if cpu_rows:
        md += ["Server CPU seconds for the same work (user + system, median; lower is better; "
               "ratios are medians of per-repetition ratios):", "",
               "| measure | old | new | diod | new/old | old/diod | new/diod |",
               "|---|---|---|---|---|---|---|", *cpu_rows, ""]
    report.save(args.out, args.name or f"ab-{stamp}", {"meta": meta, "figures": rows}, "\n".join(md))
    print("\n".join(md))


def _cpu_ratio(by: dict, num: str, den: str) -> str:
    """Median of the per-repetition CPU ratios; "–" if a side is missing or used no measurable CPU."""
    if num not in by or den not in by or not all(by[den]):
        return "–"
    return f"{median([a / b for a, b in zip(by[num], by[den])]):.2f}"


def _load(avg) -> str:
    return ", ".join(f"{x:.2f}" for x in avg)


if __name__ == "__main__":
    main()
