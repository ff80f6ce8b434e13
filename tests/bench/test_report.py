"""The benchmark report's target table: a ratio's digits never contradict its status."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import report

RESULTS = Path(report.__file__).resolve().parent / "results"


@pytest.mark.parametrize("val, op, thr, shown", [
    (0.9982, ">=", 1.0, "0.998"),   # two decimals would read 1.00, a met target
    (1.0241, ">=", 1.0, "1.02"),
    (0.9049, "<=", 0.9, "0.905"),   # 0.90 would pass as met
    (0.8951, "<=", 0.9, "0.90"),    # met, and 0.90 says so
    (1.9962, "<", 2, "1.996"),
    (None, ">=", 1.0, "–"),
])
def test_shown_ratio_keeps_the_status_readable(val, op, thr, shown):
    assert report.shown_ratio(val, op, thr) == shown


def test_a_missed_target_at_0998_is_not_shown_as_100():
    # the committed run whose getattr_16 ratio was 0.998: once shown as "1.00 ... missed"
    results = json.loads((RESULTS / "20261130-131841-full.json").read_text())
    row = next(line for line in report.markdown(results).splitlines()
               if line.startswith("| pipelined getattr (16 outstanding)"))
    assert "| 0.998 [" in row and row.endswith("**missed** |"), row
