"""python -m bench: ninep against diod (and QEMU's virtio-9p) in one run.

    python -m bench                 # full run (~30 min on 2 cores under TCG)
    python -m bench --quick         # smoke run, a few minutes
    python -m bench --only host     # host, guest, storage, pjdfstest (comma-separated)
    python -m bench --only pjdfstest   # POSIX conformance, ninep and diod (~40 min)

Writes bench/results/<UTC time>-<full|quick>.{md,json,png} (or --out DIR).
Any benchmark that cannot reach its server, or gives no number, aborts the
run with a non-zero status and writes no results.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from . import conformance, guest, host, report, storage
from .servers import BenchError, Diod, Ninep, rotate, tempdir

HERE = Path(__file__).resolve().parent


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_host(args, base: Path, results: dict) -> None:
    sizes = (host.HostSizes(big_mib=32, entries=1000, getattr_ops=4000) if args.quick
             else host.HostSizes())
    results["host_sizes"] = vars(sizes)
    work = tempdir("bench-host.", str(base))
    export = work / "export"
    export.mkdir()
    log(f"host: writing {sizes.big_mib} MiB + {sizes.entries} files for diod")
    host.populate_dir(export, sizes)
    with Diod(export, work) as diod, Ninep(work / "store", work) as ninep:
        log("host: writing the same content through ninep's client")
        t0 = time.perf_counter()
        host.populate_ninep(ninep, sizes)
        log(f"host: ninep populated in {time.perf_counter() - t0:.1f}s")
        servers = [ninep, diod]
        out = results.setdefault("host", {})
        for r in range(args.reps):
            for name, (unit, kinds, _) in host.HOST_BENCHES.items():
                for srv in rotate(servers, r):
                    if srv.kind not in kinds:
                        continue
                    v = host.run_one(name, srv, sizes)
                    out.setdefault(name, {}).setdefault(srv.kind, []).append(v)
                    log(f"host rep {r + 1}/{args.reps} {name:11s} {srv.kind:5s} {v:10.1f} {unit}")
    shutil.rmtree(work, ignore_errors=True)


def run_guest(args, base: Path, results: dict) -> None:
    sizes = (guest.GuestSizes(seq_mib=8, small=100, tar_files=150) if args.quick
             else guest.GuestSizes())
    work = tempdir("bench-guest.", str(base))
    inputs = guest.GuestInputs(sizes, work)
    results["guest_sizes"] = dict(vars(sizes), tar_files=inputs.tar_files,
                                  tar_bytes=len(inputs.tar), git_files=inputs.git_files)
    out = results.setdefault("guest", {})
    targets = list(guest.TARGETS)
    with open(work / "guests.log", "w") as glog:
        for r in range(args.reps):
            for t in rotate(targets, r):
                t0 = time.perf_counter()
                try:
                    res = guest.run_target(t, inputs, base=str(base), log=glog)
                except BenchError:
                    shutil.copy(work / "guests.log", base / "guests-failed.log")
                    raise
                for name, v in res.items():
                    out.setdefault(name, {}).setdefault(t, []).append(v)
                log(f"guest rep {r + 1}/{args.reps} {t:10s} {time.perf_counter() - t0:5.0f}s  "
                    + " ".join(f"{k}={v:.1f}" for k, v in res.items()))
    shutil.rmtree(work, ignore_errors=True)


def run_storage(args, base: Path, results: dict) -> None:
    work = tempdir("bench-storage.", str(base))
    mib = 8 if args.quick else 64
    log(f"storage: dedup of {mib} MiB written twice, and 10 clones of one snapshot")
    results["dedup"] = storage.dedup(work, mib)
    small, large = (1000, 10_000) if args.quick else (1000, 200_000)
    log(f"storage: snapshot creation with {small} and {large} files")
    snaps = storage.snapshot_times_via_script(work, small, large)
    if snaps is None:
        snaps = {str(n): storage.snapshot_time(work, n, reps=max(3, args.reps)) for n in (small, large)}
    results["snapshots"] = snaps
    shutil.rmtree(work, ignore_errors=True)


def run_pjdfstest(args, base: Path, results: dict) -> None:
    """pjdfstest through the kernel client, once per server (the counts do not vary)."""
    work = tempdir("bench-pjd.", str(base))
    out = results.setdefault("pjdfstest", {})
    results["pjdfstest_tests"] = args.pjdfstest_tests or "all"
    with open(work / "guests.log", "w") as glog:
        for kind in conformance.SERVERS:
            log(f"pjdfstest: {kind} (one boot, 11-20 min under TCG)")
            try:
                out[kind] = conformance.run_server(kind, base=str(base), log=glog,
                                                   tests=args.pjdfstest_tests)
            except BenchError:
                shutil.copy(work / "guests.log", base / "guests-failed.log")
                raise
            r = out[kind]
            log(f"pjdfstest {kind}: {r['passed']} passed, {r['failed']} failed "
                f"({r['suite_seconds']}s); failing files: "
                + (", ".join(f.split()[0] for f in r["failed_files"]) or "none"))
    shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a few minutes")
    ap.add_argument("--reps", type=int, default=None,
                    help="interleaved repetitions (default 3; 1 with --quick)")
    ap.add_argument("--only", default="host,guest,storage",
                    help="comma-separated sections: host, guest, storage, pjdfstest "
                         "(pjdfstest is not in the default: ~40 min)")
    ap.add_argument("--pjdfstest-tests", nargs="+", default=None, metavar="TEST",
                    help="pjdfstest section: only these files or directories of the suite "
                         "(e.g. chown open/06.t; default: all 8,770 cases)")
    ap.add_argument("--out", default=str(HERE / "results"), help="directory for the results")
    ap.add_argument("--name", default=None, help="results file stem (default: time and mode)")
    ap.add_argument("--workdir", default=None, help="where servers keep their data (default: $TMPDIR)")
    ap.add_argument("--no-chart", action="store_true", help="skip the PNG (no matplotlib)")
    ap.add_argument("--report", metavar="JSON", help="only rewrite the .md and .png of a results JSON")
    args = ap.parse_args(argv)
    if args.report:
        src = Path(args.report)
        results = json.loads(src.read_text())
        chart = src.with_suffix(".png")
        (src.with_suffix(".md")).write_text(report.markdown(results, chart=chart.name))
        report.chart(results, chart)
        print(src.with_suffix(".md").read_text())
        return 0
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = set(sections) - {"host", "guest", "storage", "pjdfstest"}
    if bad:
        ap.error(f"unknown sections {sorted(bad)}")
    if args.reps is None:
        args.reps = 1 if args.quick else 3
    if args.reps < 1:
        ap.error("--reps must be >= 1")

    base = tempdir("ninep-bench.", args.workdir)
    results: dict = {"mode": "quick" if args.quick else "full", "reps": args.reps,
                     "sections": sections, "machine": report.machine_facts(),
                     "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    t0 = time.perf_counter()
    try:
        for section in sections:
            s0 = time.perf_counter()
            {"host": run_host, "guest": run_guest, "storage": run_storage,
             "pjdfstest": run_pjdfstest}[section](args, base, results)
            results.setdefault("section_seconds", {})[section] = round(time.perf_counter() - s0, 1)
    except BenchError as e:
        print(f"\nBENCHMARK FAILED: {e}\n(no results written; scratch data in {base})", file=sys.stderr)
        return 2
    except BaseException:
        traceback.print_exc()
        print(f"\nBENCHMARK FAILED (no results written; scratch data in {base})", file=sys.stderr)
        return 2
    results["seconds"] = round(time.perf_counter() - t0, 1)
    results["machine"]["load_after"] = os.getloadavg()
    shutil.rmtree(base, ignore_errors=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.name or (_dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
                         + "-" + results["mode"])
    try:
        report.check_complete(results)
    except BenchError as e:
        print(f"\nBENCHMARK FAILED: {e}", file=sys.stderr)
        return 2
    md = report.markdown(results, chart=None if args.no_chart else f"{stem}.png")
    if not args.no_chart:
        report.chart(results, out / f"{stem}.png")
    path = report.save(out, stem, results, md)
    print(md)
    log(f"results: {path} ({results['seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
