"""The servers under test: ninep (`ninep serve`) and Debian's diod (and a floor: bench/floor.py).

Each listens on an ephemeral loopback port.  ``Server.aname`` is what a
client attaches to: the exported path for diod, the dataset name for ninep.
A server that does not come up raises BenchError: a benchmark never runs
against nothing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "vm-images"))
import hostserver  # noqa: E402


class BenchError(RuntimeError):
    """A benchmark could not run (no server, failed guest, bad result)."""


def _wait_tcp(port: int, proc: subprocess.Popen) -> None:
    try:
        hostserver.wait_tcp(port, proc)
    except hostserver.ServerStartError as exc:
        raise BenchError(str(exc)) from exc


class Server:
    kind = "?"
    address: str          # tcp:127.0.0.1:PORT
    aname: str
    proc: subprocess.Popen | None = None
    log_path: Path

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise BenchError(f"{self.kind} server died (rc={self.proc and self.proc.returncode}); "
                             f"log:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is not None:
            hostserver.stop(self.proc, timeout=30)

    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _start(self, cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        """Run ``cmd``, which prints ``listening tcp:HOST:PORT``; wait until it accepts."""
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=open(self.log_path, "ab"), start_new_session=True,
                                     cwd=str(cwd), env=env)
        found: list[str] = []
        done = threading.Event()

        def reader():
            for line in self.proc.stdout:      # keep draining: never block the server
                line = line.decode(errors="replace").strip()
                if line.startswith("listening tcp:") and not found:
                    found.append(line.split(None, 1)[1])
                    done.set()
            done.set()

        threading.Thread(target=reader, daemon=True).start()
        if not done.wait(60) or not found:
            self.stop()
            raise BenchError(f"`{' '.join(cmd)}` did not report a tcp listener; "
                             f"log:\n{self.log_tail()}")
        self.address = found[0]
        _wait_tcp(self.port, self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def diod_binary() -> str:
    for b in (shutil.which("diod"), "/usr/sbin/diod"):
        if b and os.path.exists(b):
            return b
    raise BenchError("diod is not installed (apt-get install diod)")


class Diod(Server):
    """diod exporting ``export`` (a plain directory; 0755 so "nobody" reaches it)."""

    kind = "diod"

    def __init__(self, export: Path, workdir: Path):
        if os.geteuid() != 0:
            raise BenchError("diod must run as root to serve arbitrary uids")
        binary = diod_binary()
        self.export = Path(export)
        self.aname = str(self.export)
        self.log_path = Path(workdir) / "diod.log"
        os.chmod(self.export, 0o755)   # diod attaches as "nobody" first
        try:
            self.proc, port = hostserver.start_diod(binary, self.export, self.log_path)
        except hostserver.ServerStartError as exc:
            raise BenchError(f"diod did not start ({exc}):\n{self.log_tail()}") from exc
        self.address = f"tcp:127.0.0.1:{port}"


def ninep_command() -> list[str]:
    return [sys.executable, "-m", "ninep_server"]


def code_env(code: Path | None) -> dict[str, str] | None:
    """The environment that runs the ninep of source tree ``code`` (None: this one)."""
    if code is None:
        return None
    return dict(os.environ, PYTHONPATH=str(code))


class Ninep(Server):
    """`ninep serve --store STORE` on an ephemeral port; attach to dataset "main".

    ``code`` runs the server of another source tree (a git worktree of an older
    commit, for A/B runs); by default the tree this module belongs to.
    """

    kind = "ninep"

    def __init__(self, store: Path, workdir: Path, config: str | None = None,
                 code: Path | None = None):
        self.store = Path(store)
        self.aname = "main"
        self.log_path = Path(workdir) / "ninep.log"
        cmd = ninep_command() + ["serve", "--store", str(self.store),
                                 "--listen", "tcp:127.0.0.1:0"]
        if config is not None:   # TOML text for --config
            (Path(workdir) / "ninep.toml").write_text(config)
            cmd += ["--config", str(Path(workdir) / "ninep.toml")]
        self._start(cmd, cwd=code or ROOT, env=code_env(code))


class Floor(Server):
    """``python -m bench.floor``: canned replies from a bare trio loop (see bench/floor.py)."""

    kind = "floor"

    def __init__(self, workdir: Path):
        self.aname = "floor"
        self.log_path = Path(workdir) / "floor.log"
        self._start([sys.executable, "-m", "bench.floor"], cwd=ROOT)


def process_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds that process ``pid``, all threads, has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def tempdir(prefix: str, base: str | None = None) -> Path:
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    os.chmod(d, 0o755)
    return d


def rotate(items: list, r: int) -> list:
    """Interleave: repetition r starts with a different item (server, tree, target)."""
    k = r % len(items)
    return items[k:] + items[:k]
