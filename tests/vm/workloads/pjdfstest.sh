. /job/workloads/lib.sh
# pjdfstest, the POSIX conformance suite (../shared/ext-tests/README.md), run
# as root on the mount; it switches to nobody and other uids itself. The
# suite's failures do not fail this script: the host test reads the summary
# and applies the threshold (harness.PJDFSTEST_MIN_PASSED). Only a run that
# never prints its summary does.
. /job/pjdfstest-run.sh       # vm-images/pjdfstest.py GUEST_RUN
pjdfstest_run "$W/pjd" | tee /tmp/pjd.out || true
grep -q '^pjdfstest: [0-9]* passed, [0-9]* failed$' /tmp/pjd.out || fail "pjdfstest printed no summary"
