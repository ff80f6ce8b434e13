"""A guest kernel that panics ends its boot at once, with its whole log on the console.

Every guest boots with runner.LOCKUP_CMDLINE: a soft lockup (a livelock in the
guest kernel, seen once in the Docker test under TCG) panics, and a panic
stops QEMU and replays the kernel log, every CPU's backtrace included. This
test boots one guest, checks the lockup settings it runs with, and crashes
its kernel through /proc/sysrq-trigger (the same panic path a soft lockup
takes): the boot must end well before the runner's timeout, and
the console must hold the panic and the replayed log.
"""
from __future__ import annotations

import pytest

from tests.vm import harness

pytestmark = [pytest.mark.vm, pytest.mark.slow]

SCRIPT = """#!/bin/bash
echo "@@LOCKUP $(cat /proc/sys/kernel/softlockup_panic) $(cat /proc/sys/kernel/watchdog_thresh) \
$(cat /proc/sys/kernel/softlockup_all_cpu_backtrace)@@"
sync
echo c > /proc/sysrq-trigger
echo "@@STILL-RUNNING@@"
"""


def test_a_panicking_guest_ends_its_boot_with_the_kernel_log(vm_images):
    guest = harness.runner.run_guest(
        SCRIPT, server="tcp:127.0.0.1:1", transport="tcp", automount=None,
        images=vm_images, timeout=600, output=lambda line: None)
    out = guest.output
    assert "@@LOCKUP 1 30 1@@" in out, f"lockup settings not in effect:\n{out[-3000:]}"
    assert not guest.timed_out and guest.seconds < 300, f"boot took {guest.seconds:.0f} s"
    assert guest.rc is None and "@@STILL-RUNNING@@" not in out, out[-3000:]
    assert "Kernel panic - not syncing" in out, out[-3000:]
    # panic_print=0x20 replays the log: boot messages quiet=loglevel 4 kept off the console
    after = out[out.index("Kernel panic - not syncing"):]
    assert "Command line:" in after, f"the kernel log was not replayed:\n{out[-3000:]}"
