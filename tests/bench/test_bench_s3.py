"""python -m bench.s3 runs end to end at a tiny size against a real S3 server
(SeaweedFS): every row of the report has a figure for the local and the S3
store in every repetition, with a ratio, and the client ceiling is measured at
both object sizes (no timing assertions: performance lives in bench/)."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPS = 2
FILES = 30


@pytest.mark.slow
def test_bench_s3_reports_every_row_for_both_stores(tmp_path, seaweedfs):
    from bench.s3report import MEASURES

    out = tmp_path / "out"
    # short: each server's admin socket lives in its store, and AF_UNIX paths are short
    work = Path(tempfile.mkdtemp(prefix="s3b.", dir="/tmp"))
    env = dict(os.environ, **seaweedfs.env(), PYTHONPATH=str(ROOT))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.s3", "--endpoint", seaweedfs.endpoint,
             "--size", "3M", "--reps", str(REPS), "--files", str(FILES), "--ceiling-size", "2M",
             "--workdir", str(work), "--out", str(out), "--name", "t"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        scratch = list(work.iterdir())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / "t.json").read_text())

    assert res["backends"]["local"]["location"].startswith("local:")
    assert res["backends"]["s3"]["location"].startswith("s3://")
    for measure, (unit, _) in MEASURES.items():
        bound = 1e6 if unit == "files/s" else 1e5      # beyond: a timing bug, not a disk
        for backend in ("local", "s3"):
            vals = res["figures"][measure][backend]
            assert len(vals) == REPS, (measure, backend, vals)
            assert all(0 < v < bound and math.isfinite(v) for v in vals), (measure, backend, vals)
    s3_chunk = res["backends"]["s3"]["chunk_size"]
    assert set(res["ceiling_sizes"]) == {s3_chunk, 128 * 1024}
    for size in res["ceiling_sizes"]:
        for op in ("put", "get"):
            vals = res["ceiling"][f"{op}_{size}"]
            assert len(vals) == REPS and all(0 < v < 1e5 for v in vals), (op, size, vals)
    # every distinct chunk written reached the bucket, once
    assert res["objects"]["count"] == res["objects_expected"] > 0
    assert res["machine"]["load_before"] and res["machine"]["load_after"]

    md = (out / "t.md").read_text()
    for _, desc in MEASURES.values():
        row = next(line for line in md.splitlines() if line.startswith(f"| {desc} |"))
        # local, s3, s3/local (and for write/cold read, s3/ceiling): bold medians
        assert row.count("**") >= 6, row
    assert md.count("| 128 KiB |") == 1
    assert "Page cache before each cold read:" in md
    assert scratch == []                                # the run removed its scratch data
