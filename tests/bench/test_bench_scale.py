"""bench.scale runs end to end on small stores and reports every measure; the report's
per-file ratios and the guest real-work table compute what they claim (no timing asserts)."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.servers import require


@pytest.mark.slow
def test_scale_bench_reports_every_measure(tmp_path):
    require(shutil.which("diodls") is not None, "diod's diodls is not installed")
    from bench import scale

    assert scale.main(["--sizes", "300,600", "--out", str(tmp_path), "--base", str(tmp_path)]) == 0
    (js,) = tmp_path.glob("scale-*.json")
    res = json.loads(js.read_text())
    assert [r["files"] for r in res["runs"]] == [300, 600]
    for run in res["runs"]:
        for key, *_ in scale.ROWS:
            assert run[key] > 0, (key, run)
        assert run["rewritten"] == max(1, run["files"] // 100)
    md = js.with_suffix(".md").read_text()
    for _, label, _, kind in scale.ROWS:
        row = next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
        assert row.count("|") == 6
        assert row.rstrip(" |").endswith("x") == (kind is not None), row
    assert not [p for p in os.listdir(tmp_path) if p.startswith("bench-scale-")]  # cleaned up


def test_layout_puts_the_wide_directory_first_and_counts_every_file():
    from bench.scale import PER_DIR, WIDE, layout

    for n in (1, 500, WIDE, WIDE + 1, 123_457):
        dirs = layout(n)
        assert dirs[0][0] == "wide" and sum(c for _, c in dirs) == n
        assert all(0 < c <= PER_DIR for _, c in dirs[1:])


def test_per_file_ratio_is_cost_per_file_largest_over_smallest():
    from bench.scale import per_file_ratio

    small = {"files": 10, "rate": 100.0, "t": 1.0, "cli_start_s": 0.5}
    big = {"files": 1000, "rate": 50.0, "t": 300.0, "cli_start_s": 0.5}
    assert per_file_ratio("rate", small, big, "rate") == 2.0          # half the rate: twice the cost
    assert per_file_ratio("time_per_file", small, big, "t") == pytest.approx(3.0)   # 0.3 s against 0.1 s per file
    assert per_file_ratio("constant", small, big, "t") == 300.0
    assert per_file_ratio(None, small, big, "t") is None
    small.update(import_s=0.6, fsck_s=1.5)                            # 0.1 s, 1.0 s net of the CLI
    big.update(import_s=20.5, fsck_s=50.5)
    assert per_file_ratio("rate", small, big, "import_per_s") == pytest.approx(2.0)
    assert per_file_ratio("time_per_file", small, big, "fsck_s") == pytest.approx(0.5)


def _guest_results(ninep_s: float, diod_s: float) -> dict:
    from bench import guest

    sizes = {"tar_files": 100, "git_files": 50}
    row = {}
    for step in guest.REAL_WORK:
        amount = sizes["git_files"] if step == "git_clone" else sizes["tar_files"]
        row[step] = {"ninep-64k": [amount / ninep_s] * 3, "diod": [amount / diod_s] * 3}
    return {"guest": row, "guest_sizes": sizes}


def test_real_work_totals_are_the_sum_of_the_steps_and_the_target_judges_them():
    from bench import guest, report

    res = _guest_results(ninep_s=2.0, diod_s=4.0)
    secs = report.real_work_seconds(res, "ninep-64k")
    assert secs["total"] == pytest.approx([2.0 * len(guest.REAL_WORK)] * 3)
    assert report.real_work_ratio(res) == pytest.approx(0.5)
    assert report.real_work_ratio(_guest_results(ninep_s=4.0, diod_s=4.0)) == pytest.approx(1.0)
    assert report.real_work_ratio({"guest": {}, "guest_sizes": {"tar_files": 1}}) is None
    assert report.slowest_real_work_step({"guest": {}, "guest_sizes": {"tar_files": 1}}) is None
    behind = _guest_results(ninep_s=2.0, diod_s=4.0)
    behind["guest"]["du_s"]["ninep-64k"] = [100 / 6.0] * 3    # du -s: 6 s against 4
    assert report.slowest_real_work_step(behind) == ("du_s", pytest.approx(1.5))
