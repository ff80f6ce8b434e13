"""The pjdfstest summary parser and its section of the benchmark report.

The output below has the format run-pjdfstest.sh -v prints (one line per
file, the failing cases indented under a failing file, then the totals).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench import report
from bench.servers import BenchError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "vm-images"))
import pjdfstest  # noqa: E402

OUTPUT = """\
# pjdfstest: root=/opt/pjdfstest dir=/mnt/9p/pjd fs=9P shell=sh logs=/tmp/pjd-logs
chmod/00.t             PASS ok=119 notok=0 todo=0 plan=119 29s
open/06.t              FAIL ok=140 notok=4 todo=0 plan=144 51s
    not ok 13 - tried '-u 65533 -g 65533 open N O_RDONLY,', expected 0, got EACCES
    not ok 14 - tried '-u 65533 -g 65533 open N O_WRONLY,', expected 0, got EACCES
utimensat/08.t         FAIL ok=7 notok=2 todo=0 plan=9 5s exit=1
    not ok 5 - tried 'lstat N atime_ns', expected 100000000, got 0
# files: 3 run, 2 failed, 85s; todo=0 missing=0
# failed files: open/06.t utimensat/08.t
pjdfstest: 266 passed, 6 failed
"""


def test_parse_summary_failing_files_and_cases():
    s = pjdfstest.parse(OUTPUT)
    assert (s.passed, s.failed, s.seconds) == (266, 6, 85)
    assert s.line == "pjdfstest: 266 passed, 6 failed"
    assert [f.split()[0] for f in s.failed_files] == ["open/06.t", "utimensat/08.t"]
    assert len(s.not_ok) == 3
    assert s.not_ok[2].startswith("utimensat/08.t: not ok 5 ")


def test_parse_without_summary_is_none():
    assert pjdfstest.parse(OUTPUT.rsplit("pjdfstest:", 1)[0]) is None


def test_ninep_config_declares_the_suites_groups():
    import tomllib

    from ninep_server.config import parse_config

    cfg = parse_config(tomllib.loads(pjdfstest.ninep_config()))
    assert cfg.exports["main"].groups == {uid: tuple(g) for uid, g in pjdfstest.USER_GROUPS.items()}


def _results(ninep_passed: int, diod_passed: int) -> dict:
    s = pjdfstest.parse(OUTPUT)
    row = {"failed_files": s.failed_files, "not_ok": s.not_ok, "suite_seconds": 85, "boot_seconds": 90}
    return {
        "mode": "full", "reps": 1, "sections": ["pjdfstest"], "started": "now", "seconds": 1,
        "machine": {"cpus": 2, "cpu_model": "x", "accel": "tcg", "kvm_available": False,
                    "kernel": "k", "python": sys.version.split()[0], "diod": "1.0.24", "qemu": "q",
                    "load_before": [0, 0, 0], "load_after": [0, 0, 0]},
        "pjdfstest": {"ninep": dict(row, passed=ninep_passed, failed=8770 - ninep_passed),
                      "diod": dict(row, passed=diod_passed, failed=8770 - diod_passed)},
    }


@pytest.mark.parametrize("ninep, diod, status", [(8760, 8603, "met"), (8603, 8603, "**missed**")])
def test_report_section_and_target(ninep, diod, status):
    res = _results(ninep, diod)
    report.check_complete(res)
    md = report.markdown(res)
    assert f"| pjdfstest cases passed (ninep/diod) | {ninep:,} / {diod:,} | ninep > diod | {status} |" in md
    section = md.split("## POSIX conformance")[1]
    assert f"| ninep | {ninep:,} | {8770 - ninep:,} | 85 s | `open/06.t` (4), `utimensat/08.t` (2, exit 1) |" in section


def test_incomplete_pjdfstest_section_is_an_error():
    res = _results(8760, 8603)
    del res["pjdfstest"]["diod"]
    with pytest.raises(BenchError):
        report.check_complete(res)
