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
