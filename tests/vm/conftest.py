"""Kernel-level tests: a QEMU guest mounts the server with the Linux v9fs client.

Options (or the environment variables beside them, which also work when
pytest is started from the repository root):

  --vm-server=ninep|diod|both   NINEP_VM_SERVER   (default ninep)
  --vm-matrix=ci|default|full|quick   NINEP_VM_MATRIX   (default: default)

Locally a VM test skips when QEMU cannot run; with CI=true it fails instead.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.vm import harness


def pytest_addoption(parser):
    g = parser.getgroup("vm", "QEMU guest tests (tests/vm)")
    g.addoption("--vm-server", choices=["ninep", "diod", "both"], default=None,
                help="server(s) the guest mounts (env NINEP_VM_SERVER; default ninep)")
    g.addoption("--vm-matrix", choices=["ci", "default", "full", "quick"], default=None,
                help="which workloads run on which configuration (env NINEP_VM_MATRIX)")


def _opt(config, name: str, env: str, default: str) -> str:
    try:
        v = config.getoption(name)
    except ValueError:
        v = None
    return v or os.environ.get(env) or default


def server_kinds(config) -> list[str]:
    v = _opt(config, "--vm-server", "NINEP_VM_SERVER", "ninep")
    return ["ninep", "diod"] if v == "both" else [v]


def pytest_generate_tests(metafunc):
    if "vm_case" not in metafunc.fixturenames:
        return
    cfg = metafunc.config
    mx = _opt(cfg, "--vm-matrix", "NINEP_VM_MATRIX", "default")
    params, ids = [], []
    for kind in server_kinds(cfg):
        for vmc, workloads in harness.matrix(mx):
            for wl in workloads:
                if wl == harness.PJDFSTEST and kind != "ninep":
                    continue  # diod's pjdfstest run is in the benchmarks (bench --only pjdfstest)
                marks = []
                if kind == "diod" and wl in harness.DIOD_KNOWN_FAILURES:
                    marks.append(pytest.mark.xfail(reason=harness.DIOD_KNOWN_FAILURES[wl],
                                                   strict=False))
                params.append(pytest.param((kind, vmc, wl), marks=marks,
                                           id=f"{kind}-{vmc.id}-{wl}"))
    metafunc.parametrize("vm_case", params)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    # Remember which workloads were selected per (server, configuration), so
    # each boot runs exactly the selected ones (e.g. after -k).
    selected: dict = {}
    for item in items:
        cs = getattr(item, "callspec", None)
        if cs and "vm_case" in cs.params:
            kind, vmc, wl = cs.params["vm_case"]
            selected.setdefault((kind, vmc), []).append(wl)
    config._vm_selected = selected


_unavailable = harness.unavailable


@pytest.fixture(scope="session")
def vm_images():
    if sys.platform != "linux":
        _unavailable("VM tests need Linux")
    if os.geteuid() != 0 and not shutil.which("qemu-system-x86_64"):
        _unavailable("qemu-system-x86_64 missing and not root to install it")
    try:
        t0 = time.monotonic()
        images = harness.build.build_all(install=(os.geteuid() == 0))
        images["build_seconds"] = time.monotonic() - t0
    except (Exception, SystemExit) as e:  # noqa: BLE001
        _unavailable(f"cannot build the guest images: {e}")
    return images


class Batches:
    def __init__(self, config, images, workdir: Path):
        self.config = config
        self.images = images
        self.workdir = workdir
        self.done: dict = {}
        self.servers: list = []
        self.failed_start: dict = {}

    def get(self, kind: str, vmc: harness.VMConfig) -> harness.Batch:
        key = (kind, vmc)
        if key in self.failed_start:
            pytest.fail(self.failed_start[key])
        if key not in self.done:
            workloads = self.config._vm_selected.get(key, [])
            if harness.PJDFSTEST in workloads and harness.pjdfstest_tar() is None:
                # its own test reports this (fails in CI); the others still run
                workloads = [w for w in workloads if w != harness.PJDFSTEST]
            wd = self.workdir / f"{kind}-{vmc.id}"
            try:
                server = harness.start_server(kind, wd, workloads)
            except Exception as e:  # noqa: BLE001
                self.failed_start[key] = f"cannot start the {kind} server: {e}"
                pytest.fail(self.failed_start[key])
            self.servers.append(server)
            log_path = wd / "guest.log"
            verbose = os.environ.get("NINEP_VM_VERBOSE") == "1"
            with open(log_path, "w") as logf:
                def log(line: str) -> None:
                    logf.write(line)
                    logf.flush()
                    if verbose:
                        sys.__stderr__.write(line)
                    elif line.startswith("@@WL-END"):
                        sys.__stderr__.write(f"  [vm {kind} {vmc.id}] {line.strip()[2:-2]}\n")
                sys.__stderr__.write(f"\n  [vm {kind} {vmc.id}] booting for: {' '.join(workloads)}\n")
                batch = harness.run_batch(server, vmc, workloads, self.images, log)
            batch.log_path = log_path
            sys.__stderr__.write(f"  [vm {kind} {vmc.id}] guest done in {batch.guest.seconds:.0f}s"
                                 f" (log {log_path})\n")
            self.done[key] = batch
        return self.done[key]

    def close(self):
        for s in self.servers:
            s.stop()


@pytest.fixture(scope="session")
def vm_batches(request, vm_images, tmp_path_factory):
    # Not under pytest's basetemp: concurrent pytest runs prune old basetemps.
    import tempfile
    workdir = Path(tempfile.mkdtemp(prefix="ninep-vm-tests.", dir=os.environ.get("NINEP_VM_WORKDIR")))
    b = Batches(request.config, vm_images, workdir)
    request.config._vm_batches = b
    yield b
    b.close()


def pytest_terminal_summary(terminalreporter, config):
    b = getattr(config, "_vm_batches", None)
    if not b or not b.done:
        return
    tr = terminalreporter
    tr.section("VM workloads (seconds in guest)")
    build_s = b.images.get("build_seconds", 0)
    tr.write_line(f"image build/check: {build_s:.0f}s   kernel {b.images.get('kernel_package')}")
    for (kind, vmc), batch in b.done.items():
        parts = []
        for name, r in batch.results.items():
            status = "ok" if r.rc == 0 else ("--" if r.rc is None else f"rc={r.rc}")
            parts.append(f"{name}:{status}/{r.seconds:.0f}")
        boot = batch.guest.seconds if batch.guest else 0
        tr.write_line(f"{kind:5} {vmc.id:16} boot {boot:5.0f}s  " + " ".join(parts))
    for (kind, vmc), batch in b.done.items():
        r = batch.results.get(harness.PJDFSTEST)
        if r is None:
            continue
        tr.section(f"pjdfstest through the kernel client ({kind} {vmc.id}, msize {harness.MSIZE})")
        summary = harness.parse_pjdfstest(r.output)
        if summary is None:
            tr.write_line("pjdfstest did not finish: no summary line")
            continue
        tr.write_line(f"{summary.line}   (threshold {harness.PJDFSTEST_MIN_PASSED} passed; "
                      f"{summary.seconds}s)")
        for line in summary.failed_files:
            tr.write_line(f"  {line}")
