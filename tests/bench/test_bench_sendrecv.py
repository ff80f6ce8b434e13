"""The send/receive benchmark runs small and reports every row (no timing assertions)."""

from __future__ import annotations

import json


def test_sendrecv_bench_reports_every_stream(tmp_path, capsys):
    from bench.sendrecv import main

    assert main(["--mib", "8", "--files", "40", "--reps", "1", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    for kind in ("full", "incremental", "full+have"):
        assert any(line.startswith(f"| {kind} |") for line in text.splitlines()), text
    (result,) = tmp_path.glob("sendrecv-*.json")
    rep = json.loads(result.read_text())["reps"][0]
    assert rep["full+have"]["chunks"] == 0
    assert 0 < rep["incremental"]["chunk_bytes"] < rep["full"]["chunk_bytes"]
