"""bench/soak.py end to end for a few seconds with a few clients: every operation
verified, no errors, fsck clean, figures written."""
from __future__ import annotations

import json


def test_soak_smoke(tmp_path):
    from bench.soak import main

    out = tmp_path / "results"
    rc = main(["--clients", "6", "--duration", "4", "--seed", "5", "--out", str(out), "--name", "soak",
               "--workdir", str(tmp_path / "work")])
    res = json.loads((out / "soak.json").read_text())
    assert res["errors"] == 0, res["error_samples"]
    assert res["server_alive"] and res["server_exit_code"] == 0
    assert res["fsck_clean"], res["fsck"]
    assert res["files_lost_after_restart"] == [] and res["files_checked_after_restart"] == res["files_at_end"]
    kinds = res["ops_by_kind"]
    for kind in ("create+write", "overwrite", "read+verify", "rename", "unlink", "fsync"):
        assert kinds.get(kind, 0) > 0, (kind, kinds)
    assert res["ops_per_s"] > 0 and res["server_peak_rss_mib"] > 0
    assert rc == 0 and res["passed"]
    assert "| errors | 0 |" in (out / "soak.md").read_text()
