"""Start a 9P server process on the host, for a guest or a host client to mount.

Shared by the VM tests (``tests/vm/harness.py``) and the benchmarks
(``bench/servers.py``): both run Debian's diod as the reference server on an
ephemeral loopback port. Failures raise :class:`ServerStartError` with the
reason; callers wrap it in their own error type.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


class ServerStartError(RuntimeError):
    """A server process exited, or did not listen in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_tcp(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    """Return once 127.0.0.1:``port`` accepts connections; raise if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(f"server exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise ServerStartError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM ``proc``, then SIGKILL it if it has not exited after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_diod(binary: str, export: Path, log_path: Path, attempts: int = 5) -> tuple[subprocess.Popen, int]:
    """Run diod exporting ``export`` on a free port; return the process and its port.

    A port can be taken between choosing it and diod binding it, so a failed
    start is retried on another port. diod's output is appended to ``log_path``.
    """
    for attempt in range(attempts):
        port = free_port()
        # -n: no auth; -c /dev/null: ignore /etc/diod.conf. Not -N: diod must
        # look up uids so that it can switch to them.
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [binary, "-f", "-n", "-c", "/dev/null", "-L", "stderr",
                 "-e", str(export), "-l", f"127.0.0.1:{port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            wait_tcp(port, proc)
            return proc, port
        except ServerStartError:
            stop(proc)
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
