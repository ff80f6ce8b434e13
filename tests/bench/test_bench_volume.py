"""bench/bench_volume.py runs end to end on tiny sizes and reports every measure
with a positive figure and one ratio per round (no timing assertions)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_volume_reports_every_measure(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_volume.py"), "--dir", str(tmp_path),
         "--small", "50", "--stat-rounds", "2", "--seq-mib", "4", "--reps", "2",
         "--rss-files", "300", "--no-drop-caches", "--json"],
        capture_output=True, text=True, timeout=300, check=True)
    res = json.loads(out.stdout)
    for key in ("small_files_per_s", "warm_stat_per_s", "seq_write_MBps", "seq_read_warm_MBps"):
        assert res[key]["plain"] > 0 and res[key]["volume"] > 0, key
    for key in ("seq_write_MBps", "seq_read_warm_MBps"):
        assert len(res[key]["ratios"]) == 2, key
    assert 0 < res["seq_read_warm_MBps"]["bound_ratio"] < 1
    assert "seq_read_MBps" not in res          # --no-drop-caches skips the read from disk
    assert res["rss_create"]["files"] == 300 and res["rss_create"]["peak_rss_MB"] > 0
    assert list(tmp_path.iterdir()) == []       # the scratch directory is removed
