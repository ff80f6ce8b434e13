"""bench/fuzz_live.py end to end on a few thousand frames: the canary never sees an
error, the server never dies, and fsck is clean afterwards."""
from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize("seed", [1, 2])
def test_short_fuzz_run_hurts_nothing(tmp_path, seed):
    from bench.fuzz_live import main

    out = tmp_path / "results"
    rc = main(["--frames", "4000", "--connections", "3", "--seed", str(seed), "--out", str(out),
               "--name", "fuzz", "--workdir", str(tmp_path / "work")])
    res = json.loads((out / "fuzz.json").read_text())
    assert res["frames_sent"] == 4000 and res["frames_per_s"] > 0
    assert res["canary_errors"] == 0, (res["canary_error_samples"], res["server_log"])
    assert res["canary_ops"] >= 100
    assert res["server_alive"] and res["server_exit_code"] == 0, res["server_log"]
    assert res["fsck_clean"], res["fsck"]
    assert res["canary_files_lost_after_restart"] == []
    assert rc == 0 and res["passed"]
    md = (out / "fuzz.md").read_text()
    assert "| canary errors | 0 |" in md and "| fsck | clean |" in md
