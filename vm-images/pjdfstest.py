"""pjdfstest in the guest: where the suite is, and what its run printed.

The suite is ``pjdfstest-guest.tar`` (a static build of pjd/pjdfstest with
``run-pjdfstest.sh``, see ``../shared/ext-tests/README.md``); it is never
committed here. The kernel tests (tests/vm) and the benchmarks
(``python -m bench --only pjdfstest``) both use this module.
"""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
TAR_NAME = "pjdfstest-guest.tar"
#: Cases the suite counts on Linux (tmpfs passes all of them).
TOTAL = 8770

#: The supplementary groups of the users pjdfstest switches to (the union of
#: its ``-u UID -g GIDS`` pairs). 9P2000.L carries only the uid, so a server
#: learns a user's groups from its own configuration, as it must for any
#: deployment whose guest users are unknown to the host; ninep's export
#: ``groups`` table says it here (see the README, Conformance).
USER_GROUPS = {65534: (65534, 65533, 65532, 65531), 65533: (65533, 65534, 65532, 65531)}


def ninep_config(dataset: str = "main") -> str:
    """A ``ninep serve --config`` TOML declaring USER_GROUPS for ``dataset``."""
    rows = "".join(f"{uid} = [{', '.join(map(str, gids))}]\n" for uid, gids in USER_GROUPS.items())
    return f"[exports.{dataset}.groups]\n{rows}"


# A guest script fragment (bash): unpack /job/pjdfstest-guest.tar and run the
# suite, or some of its files, in DIR (every parent of DIR must be searchable
# by uid 65534).
GUEST_RUN = r"""
pjdfstest_run() {   # pjdfstest_run DIR [TEST...]   (default: the whole suite)
    local dir=$1
    shift
    mkdir -p /opt "$dir"
    tar -C /opt -xf /job/pjdfstest-guest.tar
    chmod 755 "$dir"
    /opt/pjdfstest/run-pjdfstest.sh -P -v -d "$dir" -l /tmp/pjd-logs "$@"
}
"""


def tar_path() -> Path | None:
    """The suite: in $NINEP_EXT_TESTS, else in shared/ext-tests beside the clone (or above)."""
    env = os.environ.get("NINEP_EXT_TESTS")
    dirs = [Path(env)] if env else [p / "shared" / "ext-tests" for p in HERE.parents]
    for d in dirs:
        if (d / TAR_NAME).is_file():
            return d / TAR_NAME
    return None


@dataclasses.dataclass
class Summary:
    """What ``run-pjdfstest.sh -v`` printed."""

    passed: int
    failed: int
    failed_files: list[str]   # the runner's line for each failing file
    not_ok: list[str]         # "FILE: not ok N - ..." for every failing case
    seconds: int | None

    @property
    def line(self) -> str:
        return f"pjdfstest: {self.passed} passed, {self.failed} failed"


_TOTAL = re.compile(r"^pjdfstest: (\d+) passed, (\d+) failed\s*$", re.M)
_FILES = re.compile(r"^# files: \d+ run, \d+ failed, (\d+)s", re.M)
_FILE_LINE = re.compile(r"^(\S+\.t)\s+(PASS|FAIL)\b")


def parse(output: str) -> Summary | None:
    """The summary of a run, or None when the run never printed one."""
    total = _TOTAL.search(output)
    if not total:
        return None
    failed_files: list[str] = []
    not_ok: list[str] = []
    for line in output.splitlines():
        m = _FILE_LINE.match(line)
        if m and m.group(2) == "FAIL":
            failed_files.append(line.strip())
        elif line.startswith("    not ok") and failed_files:
            not_ok.append(f"{failed_files[-1].split()[0]}: {line.strip()}")
    secs = _FILES.search(output)
    return Summary(int(total.group(1)), int(total.group(2)), failed_files, not_ok,
                   int(secs.group(1)) if secs else None)
