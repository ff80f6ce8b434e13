"""bench/ab.py compares two source trees end to end on tiny sizes: every measure
has a figure per tree and repetition, and one new/old ratio per repetition (no
timing assertions). The tree is compared with itself, so no second checkout is needed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ab_reports_every_measure_for_both_trees(tmp_path):
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, "-m", "bench.ab", str(ROOT), str(ROOT), "--reps", "2",
         "--big-mib", "2", "--entries", "40", "--getattr-ops", "320", "--small", "30",
         "--seq-mib", "2", "--dir", str(tmp_path), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)
    (result,) = out.glob("ab-*.json")
    figures = json.loads(result.read_text())["figures"]
    assert set(figures) >= {"diodcat", "diodls", "getattr_16", "small_files_per_s",
                            "seq_write_MBps", "seq_read_warm_MBps"}
    for name, row in figures.items():
        assert len(row["old"]) == len(row["new"]) == len(row["ratios"]) == 2, name
        assert all(v > 0 for v in row["old"] + row["new"]), name
    assert (out / result.name.replace(".json", ".md")).read_text().count("\n| ") >= 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]   # scratch removed


def test_ab_with_diod_reports_ratios_to_diod_and_server_cpu(tmp_path):
    import os
    import shutil

    from tests.servers import require
    require(shutil.which("diodcat") is not None and shutil.which("diodls") is not None,
            "diod's diodcat/diodls are not installed")
    require(os.geteuid() == 0, "diod needs root")
    out = tmp_path / "out"
    subprocess.run(
        [sys.executable, "-m", "bench.ab", str(ROOT), str(ROOT), "--reps", "2", "--diod",
         "--no-volume", "--big-mib", "2", "--entries", "40", "--getattr-ops", "320",
         "--dir", str(tmp_path), "--out", str(out), "--name", "run"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)
    result = json.loads((out / "run.json").read_text())
    figures = result["figures"]
    assert set(figures) == {"diodcat", "diodls", "getattr_16"}   # no bench_volume figures
    for name, row in figures.items():
        assert len(row["diod"]) == len(row["old_per_diod"]) == len(row["new_per_diod"]) == 2, name
        assert all(v > 0 for v in row["diod"] + row["old_per_diod"] + row["new_per_diod"]), name
        assert set(row["server_cpu_seconds"]) == {"old", "new", "diod"}, name
        assert all(v >= 0 for side in row["server_cpu_seconds"].values() for v in side), name
    assert len(result["meta"]["load_before"]) == len(result["meta"]["load_after"]) == 3
    md = (out / "run.md").read_text()
    assert "old/diod" in md and "Server CPU seconds" in md
