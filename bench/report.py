"""Markdown report, completeness check and PNG chart of a bench run."""
from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
from pathlib import Path

from . import conformance, guest, host
from .servers import BenchError

# (section, bench, numerator, denominator, op, threshold, label); the host and
# real-work goals are issue 22's: ahead of diod on every measure
TARGETS = [
    ("host", "diodcat", "ninep", "diod", ">=", 1.0, "diodcat read throughput"),
    ("host", "diodls", "ninep", "diod", ">=", 1.0, "diodls -l"),
    ("host", "getattr_16", "ninep", "diod", ">=", 1.0, "pipelined getattr (16 outstanding)"),
    ("guest", "seq_write", "ninep-64k", "diod", ">=", 1.0, "guest sequential write, equal msize"),
    ("guest", "seq_read", "ninep-64k", "diod", ">=", 1.0, "guest sequential read, equal msize"),
    ("guest", "create", "ninep-64k", "diod", ">=", 0.7, "guest small-file create"),
    ("guest", "ls_l", "ninep-64k", "diod", ">=", 0.7, "guest ls -l"),
    ("guest", "rm_r", "ninep-64k", "diod", ">=", 0.7, "guest rm -r"),
]


def _run(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (r.stdout or r.stderr).strip()
    except Exception:
        return "?"


def machine_facts() -> dict:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    kvm = os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK)
    diod_ver = _run(["dpkg-query", "-W", "-f", "${Version}", "diod"]) if shutil.which("dpkg-query") else "?"
    qemu = _run(["qemu-system-x86_64", "--version"]).splitlines()[:1]
    return {
        "cpus": os.cpu_count(), "cpu_model": cpu,
        "accel": "tcg",   # the runner always uses -accel tcg
        "kvm_available": kvm,
        "kernel": platform.release(), "python": platform.python_version(),
        "diod": diod_ver, "qemu": qemu[0] if qemu else "?",
        "load_before": os.getloadavg(),
    }


def _stats(vals: list[float]) -> tuple[float, float, float]:
    return min(vals), statistics.median(vals), max(vals)


def fmt(v: float) -> str:
    """A figure with three or four significant digits."""
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def cell(vals: list[float] | None) -> str:
    """A table cell: **median** (min–max), or – without figures."""
    if not vals:
        return "–"
    lo, med, hi = _stats(vals)
    return f"**{fmt(med)}** ({fmt(lo)}–{fmt(hi)})"


def ratio(results: dict, section: str, bench: str, num: str, den: str) -> float | None:
    row = results.get(section, {}).get(bench, {})
    if num not in row or den not in row:
        return None
    return statistics.median(row[num]) / statistics.median(row[den])


def paired_ratios(results: dict, section: str, bench: str, num: str, den: str) -> list[float]:
    """Per-repetition ratios (same repetition, so the same machine state)."""
    row = results.get(section, {}).get(bench, {})
    return [a / b for a, b in zip(row.get(num, []), row.get(den, []))]


def real_work_seconds(results: dict, target: str) -> dict[str, list[float]]:
    """Seconds of each real-work step per repetition for a guest target, plus "total"."""
    gs = results.get("guest_sizes", {})
    amount = {"git_clone": gs.get("git_files")}
    out: dict[str, list[float]] = {}
    for step in guest.REAL_WORK:
        rates = results.get("guest", {}).get(step, {}).get(target, [])
        out[step] = [(amount.get(step) or gs["tar_files"]) / r for r in rates]
    reps = min((len(v) for v in out.values()), default=0)
    out["total"] = [sum(out[s][i] for s in guest.REAL_WORK) for i in range(reps)]
    return out


def real_work_ratio(results: dict, num: str = "ninep-64k", den: str = "diod",
                    step: str = "total") -> float | None:
    """Median real-work time of ``step`` (or the total), ``num`` over ``den`` (lower is better)."""
    a = real_work_seconds(results, num)[step]
    b = real_work_seconds(results, den)[step]
    if not a or not b:
        return None
    return statistics.median(a) / statistics.median(b)


def slowest_real_work_step(results: dict) -> tuple[str, float] | None:
    """The real-work step where ninep-64k is furthest behind diod, with its time ratio."""
    ratios = [(real_work_ratio(results, step=s), s) for s in guest.REAL_WORK]
    known = [(r, s) for r, s in ratios if r is not None]
    if not known:
        return None
    r, s = max(known)
    return s, r


def snapshot_ratio(results: dict) -> float | None:
    s = results.get("snapshots")
    if not s:
        return None
    keys = sorted(s, key=int)
    return s[keys[-1]]["median"] / s[keys[0]]["median"]


def check_complete(results: dict) -> None:
    """Every row of every section that ran has positive numbers, or raise."""
    if "host" in results["sections"]:
        for name, (_, kinds, _) in host.HOST_BENCHES.items():
            for k in kinds:
                vals = results.get("host", {}).get(name, {}).get(k)
                if not vals or min(vals) <= 0:
                    raise BenchError(f"host {name} {k}: no result")
    if "guest" in results["sections"]:
        for name in guest.GUEST_BENCHES:
            for t in guest.TARGETS:
                vals = results.get("guest", {}).get(name, {}).get(t)
                if not vals or min(vals) <= 0:
                    raise BenchError(f"guest {name} {t}: no result")
    if "pjdfstest" in results["sections"]:
        for k in conformance.SERVERS:
            v = results.get("pjdfstest", {}).get(k)
            if not v or v["passed"] + v["failed"] <= 0:
                raise BenchError(f"pjdfstest {k}: no result")
    if "storage" in results["sections"]:
        for k, v in results.get("dedup", {}).items():
            if v["disk"] <= 0:
                raise BenchError(f"dedup {k}: no bytes")
        for k, v in results.get("snapshots", {}).items():
            if v["median"] <= 0:
                raise BenchError(f"snapshot {k}: no time")


def _meets(val: float, op: str, thr: float) -> bool:
    return {">=": val >= thr, "<=": val <= thr, "<": val < thr}[op]


def _status(val: float | None, op: str, thr: float) -> str:
    if val is None:
        return "not run"
    return "met" if _meets(val, op, thr) else "**missed**"


def shown_ratio(val: float | None, op: str, thr: float) -> str:
    """``val`` to two decimals, or three where two would hide its status (0.998 is not 1.00)."""
    if val is None:
        return "–"
    two = f"{val:.2f}"
    return two if _meets(float(two), op, thr) == _meets(val, op, thr) else f"{val:.3f}"


def save(out: Path, stem: str, results: dict, md: str) -> Path:
    """Write ``stem.json`` (every raw figure) and ``stem.md`` under ``out``; return the .md path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / f"{stem}.md").write_text(md)
    return out / f"{stem}.md"


def markdown(results: dict, chart: str | None = None) -> str:
    m = results["machine"]
    L = []
    L.append(f"# ninep benchmarks: {results['mode']} run, {results['started']}")
    L.append("")
    L.append(f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), guest accel **{m['accel']}** "
             f"(KVM available: {m['kvm_available']}), kernel {m['kernel']}, Python {m['python']}, "
             f"diod {m['diod']}, {m['qemu']}. Load average before "
             f"{', '.join(f'{x:.2f}' for x in m['load_before'])}, after "
             f"{', '.join(f'{x:.2f}' for x in m.get('load_after', []))} "
             "(a shared machine: other jobs ran too).")
    L.append("")
    L.append(f"{results['reps']} interleaved repetitions (each repetition starts with another "
             f"server). Cells: **median** (min–max). Ratios: median/median; in brackets the "
             f"range of per-repetition ratios. Higher is better everywhere. "
             f"Total {results.get('seconds', 0):.0f} s "
             f"({', '.join(f'{k} {v:.0f} s' for k, v in results.get('section_seconds', {}).items())}).")
    L.append("")

    L.append("## Targets")
    L.append("")
    L.append("| target | ratio | goal | status |")
    L.append("|---|---|---|---|")
    for section, bench, num, den, op, thr, label in TARGETS:
        r = ratio(results, section, bench, num, den)
        pr = paired_ratios(results, section, bench, num, den)
        rs = shown_ratio(r, op, thr) + (f" [{min(pr):.2f}–{max(pr):.2f}]" if r is not None and pr else "")
        L.append(f"| {label} ({num}/{den}) | {rs} | {op} {thr} | {_status(r, op, thr)} |")
    pjd = results.get("pjdfstest", {})
    if "ninep" in pjd and "diod" in pjd:
        a, b = pjd["ninep"]["passed"], pjd["diod"]["passed"]
        L.append(f"| pjdfstest cases passed (ninep/diod) | {a:,} / {b:,} | ninep > diod | "
                 f"{'met' if a > b else '**missed**'} |")
    rw = real_work_ratio(results)
    L.append(f"| guest real work, total time (ninep-64k/diod, lower is better) | "
             f"{shown_ratio(rw, '<=', 0.9)} | <= 0.9 | "
             f"{_status(rw, '<=', 0.9)} |")
    slow = slowest_real_work_step(results)
    slow_s = "–" if slow is None else f"{shown_ratio(slow[1], '<=', 1.0)} ({slow[0]})"
    L.append(f"| guest real work, slowest step (ninep-64k/diod, lower is better) | "
             f"{slow_s} | <= 1.0 | "
             f"{_status(None if slow is None else slow[1], '<=', 1.0)} |")
    sr = snapshot_ratio(results)
    L.append(f"| snapshot creation, largest/smallest tree | "
             f"{shown_ratio(sr, '<', 2)} | < 2 | {_status(sr, '<', 2)} |")
    L.append("")

    if "host" in results:
        hs = results.get("host_sizes", {})
        L.append("## Host side (independent clients, no guest)")
        L.append("")
        L.append(f"Big file {hs.get('big_mib')} MiB, directory of {hs.get('entries'):,} entries, "
                 f"{hs.get('getattr_ops'):,} getattrs per run (half with 1 outstanding).")
        L.append("")
        L.append("| benchmark | unit | ninep | diod | ninep/diod |")
        L.append("|---|---|---|---|---|")
        for name, (unit, kinds, desc) in host.HOST_BENCHES.items():
            row = results["host"].get(name, {})
            r = ratio(results, "host", name, "ninep", "diod")
            pr = paired_ratios(results, "host", name, "ninep", "diod")
            rs = "–" if r is None else f"{r:.2f} [{min(pr):.2f}–{max(pr):.2f}]"
            L.append(f"| {desc} | {unit} | {cell(row.get('ninep'))} | {cell(row.get('diod'))} | {rs} |")
        L.append("")

    if "guest" in results:
        gs = results.get("guest_sizes", {})
        L.append("## Guest (Linux v9fs client in QEMU/TCG, cache=none, access=user)")
        L.append("")
        L.append(f"Sequential {gs.get('seq_mib')} MiB; {gs.get('small'):,} small files; tarball of "
                 f"{gs.get('tar_files'):,} files ({gs.get('tar_bytes', 0) / 1e6:.0f} MB, the Python "
                 f"stdlib); git clone of this repository ({gs.get('git_files')} files). "
                 "diod and ninep over trans=tcp (QEMU user networking); virtio = QEMU's built-in "
                 "virtio-9p, the upper reference.")
        L.append("")
        names = list(guest.TARGETS)
        L.append("| benchmark | unit | " + " | ".join(
            f"{n} (msize {guest.TARGETS[n][2]})" for n in names)
                 + " | ninep-64k/diod | ninep-512k/diod | virtio/diod |")
        L.append("|---|---|" + "---|" * len(names) + "---|---|---|")
        for name, (unit, desc) in guest.GUEST_BENCHES.items():
            row = results["guest"].get(name, {})
            cells = [cell(row.get(n)) for n in names]
            rats = []
            for n in ("ninep-64k", "ninep-512k", "virtio"):
                r = ratio(results, "guest", name, n, "diod")
                pr = paired_ratios(results, "guest", name, n, "diod")
                rats.append("–" if r is None else f"{r:.2f} [{min(pr):.2f}–{max(pr):.2f}]")
            L.append(f"| {desc} | {unit} | " + " | ".join(cells) + " | " + " | ".join(rats) + " |")
        L.append("")
        L.append("Real work, seconds (lower is better): the untar, git clone, du -s, ls -lR "
                 "and rm -r steps above, in sequence in one boot.")
        L.append("")
        L.append("| step | " + " | ".join(names) + " | ninep-64k/diod |")
        L.append("|---|" + "---|" * len(names) + "---|")
        secs = {n: real_work_seconds(results, n) for n in names}
        for step in (*guest.REAL_WORK, "total"):
            cells = [cell(secs[n][step]) for n in names]
            a, b = secs["ninep-64k"][step], secs["diod"][step]
            rs = f"{statistics.median(a) / statistics.median(b):.2f}" if a and b else "–"
            L.append(f"| {'**total**' if step == 'total' else step} | " + " | ".join(cells)
                     + f" | {rs} |")
        L.append("")

    if pjd:
        L.append("## POSIX conformance: pjdfstest through the Linux v9fs client")
        L.append("")
        subset = results.get("pjdfstest_tests", "all")
        what = ("the whole suite" if subset == "all"
                else f"**only** {', '.join(f'`{t}`' for t in subset)} (not the whole suite)")
        L.append(f"One guest boot per server, trans=tcp, `{conformance.MOUNT_OPTS}` (diod "
                 f"negotiates msize 65536), {what} as root on the mount "
                 "(`run-pjdfstest.sh -P`); tmpfs on the host passes all 8,770 cases. "
                 "`not ok # TODO` cases are pjdfstest's own accepted failures and count in "
                 "neither column.")
        L.append("")
        L.append("| server | passed | failed | suite time | failing files (not ok cases) |")
        L.append("|---|---|---|---|---|")
        for k in conformance.SERVERS:
            v = pjd.get(k)
            if v is None:
                continue
            files = ", ".join(f"`{f.split()[0]}` ({_notok(f)})" for f in v["failed_files"]) or "none"
            L.append(f"| {k} | {v['passed']:,} | {v['failed']:,} | {v['suite_seconds']} s | {files} |")
        L.append("")

    if "dedup" in results or "snapshots" in results:
        L.append("## Storage (cas API, no 9P)")
        L.append("")
        if "dedup" in results:
            L.append("| dedup case | logical bytes | chunk bytes on disk | disk/logical | catalog file |")
            L.append("|---|---|---|---|---|")
            for k, label in (("twice", "same data written twice"),
                             ("clones", "10 datasets cloned from one snapshot (+ the origin)")):
                v = results["dedup"][k]
                L.append(f"| {label} | {v['logical'] / 1e6:.1f} MB | {v['disk'] / 1e6:.1f} MB | "
                         f"{v['ratio']:.3f} | {v['catalog'] / 1e6:.1f} MB |")
            L.append("")
        if "snapshots" in results:
            snaps = results["snapshots"]
            if any("clean_median" in v for v in snaps.values()):
                runs = next(iter(snaps.values())).get("runs")
                L.append(f"Snapshot creation from bench/bench_snapshots.py: median of {runs} "
                         "interleaved snapshots; *dirty* = one file rewritten just before.")
                L.append("")
                L.append("| files in dataset | create_snapshot, dirty (median) | clean (median) |")
                L.append("|---|---|---|")
                for k in sorted(snaps, key=int):
                    v = snaps[k]
                    L.append(f"| {int(k):,} | {v['median'] * 1e3:.1f} ms | {v['clean_median'] * 1e3:.1f} ms |")
            else:
                L.append("| files in dataset | create_snapshot, median (min–max) | tree setup |")
                L.append("|---|---|---|")
                for k in sorted(snaps, key=int):
                    v = snaps[k]
                    s = v["seconds"]
                    L.append(f"| {int(k):,} | {v['median'] * 1e3:.1f} ms ({min(s) * 1e3:.1f}–"
                             f"{max(s) * 1e3:.1f}) | {v.get('setup_s', 0):.1f} s |")
            L.append("")
    if chart:
        L.append(f"![ratios]({chart})")
        L.append("")
    return "\n".join(L) + "\n"


def _notok(file_line: str) -> str:
    """"chown/00.t FAIL ok=1073 notok=207 ..." -> "207" (plus missing/exit notes)."""
    parts = dict(p.split("=", 1) for p in file_line.split() if "=" in p)
    extra = [f"{k} {parts[k]}" for k in ("missing", "exit") if k in parts]
    return ", ".join([parts.get("notok", "?")] + extra)


def chart(results: dict, path: Path) -> None:
    """Bar chart of every ratio against diod (median, with the per-rep range)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, vals, los, his, colors = [], [], [], [], []
    palette = {"ninep": "tab:blue", "ninep-64k": "tab:blue", "ninep-512k": "tab:cyan",
               "virtio": "tab:gray"}
    for name in host.HOST_BENCHES:
        r = ratio(results, "host", name, "ninep", "diod")
        if r is not None:
            pr = paired_ratios(results, "host", name, "ninep", "diod")
            labels.append(f"host {name}")
            vals.append(r), los.append(min(pr)), his.append(max(pr)), colors.append(palette["ninep"])
    for name in guest.GUEST_BENCHES:
        for n in ("ninep-64k", "ninep-512k", "virtio"):
            r = ratio(results, "guest", name, n, "diod")
            if r is not None:
                pr = paired_ratios(results, "guest", name, n, "diod")
                labels.append(f"guest {name} {n}")
                vals.append(r), los.append(min(pr)), his.append(max(pr)), colors.append(palette[n])
    if not vals:
        return
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(vals) + 1.5))
    y = list(range(len(vals)))[::-1]
    err = [[max(0, v - lo) for v, lo in zip(vals, los)], [max(0, hi - v) for v, hi in zip(vals, his)]]
    ax.barh(y, vals, color=colors, xerr=err, capsize=2)
    ax.set_yticks(y, labels, fontsize=8)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("ratio to diod (median; bars: per-repetition range); > 1 is faster than diod")
    ax.set_title(f"ninep vs diod, {results['mode']} run {results['started']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
