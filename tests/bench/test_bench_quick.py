"""The quick host-side benchmark runs against ninep and diod and reports a
non-zero number for every row (no timing assertions)."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.servers import require


@pytest.mark.slow
def test_quick_host_bench_reports_every_row(tmp_path):
    require(shutil.which("diodcat") is not None and shutil.which("diodls") is not None,
            "diod's diodcat/diodls are not installed")
    require(os.geteuid() == 0, "diod needs root")
    from bench import host
    from bench.__main__ import main

    rc = main(["--quick", "--only", "host", "--reps", "1", "--out", str(tmp_path),
               "--name", "t", "--no-chart"])
    assert rc == 0
    res = json.loads((tmp_path / "t.json").read_text())
    for name, (_, kinds, _) in host.HOST_BENCHES.items():
        for k in kinds:
            vals = res["host"][name][k]
            assert vals and all(v > 0 for v in vals), (name, k, vals)
    md = (tmp_path / "t.md").read_text()
    host_md = md.split("## Host side")[1]
    for name, (_, kinds, desc) in host.HOST_BENCHES.items():
        row = next(line for line in host_md.splitlines() if line.startswith(f"| {desc} |"))
        assert row.count("**") == 2 * len(kinds), row
