"""Helpers for tests of ninep on an S3-backed store: the real CLI and `ninep serve` in
subprocesses, the project's 9P client, and a direct view of the bucket (obstore)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import trio

from ninep_server.client import connect

ROOT = Path(__file__).resolve().parents[2]


def child_env(env: dict | None = None) -> dict:
    """``env`` (default: this process's) with the repository importable by a child Python."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(ROOT)]))
    return env


def ninep(*args, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the real ``ninep`` CLI; returns the finished process (text output)."""
    return subprocess.run([sys.executable, "-m", "ninep_server", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=child_env(env))


class Serve:
    """`ninep serve` on one store, restartable on the same TCP port; its log goes to a file."""

    def __init__(self, store: Path, log: Path, *extra: str, env: dict | None = None, log_level: str = "info"):
        self.store, self.log, self.extra, self.env, self.log_level = store, log, extra, env, log_level
        self.tcp = "tcp:127.0.0.1:0"
        self.proc: subprocess.Popen | None = None
        self.stdout = ""

    def start(self) -> "Serve":
        args = [sys.executable, "-m", "ninep_server", "--log-format", "json", "--log-level", self.log_level,
                "serve", "--store", str(self.store), "--listen", self.tcp, *self.extra]
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                         text=True,
                                         env=child_env(self.env))
        deadline = time.monotonic() + 60
        while True:
            line = self.proc.stdout.readline()
            self.stdout += line
            if not line:
                raise RuntimeError(f"ninep serve exited ({self.proc.wait()}):\n{self.log_text()[-3000:]}")
            if line.startswith("listening tcp:"):
                self.tcp = line.split(None, 1)[1].strip()
            if line.startswith("admin unix:"):
                self.admin = line.split(None, 1)[1].strip()
                return self
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError("ninep serve did not report its listeners")

    def stop(self) -> int:
        """SIGTERM and wait: the exit status."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.stdout += self.proc.stdout.read()
        self.proc = None
        return rc

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.stdout += self.proc.stdout.read()
            self.proc = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def call(self, fn, aname: bytes = b""):
        """Run ``await fn(client)`` on a fresh connection; returns its result."""
        async def main():
            async with connect(self.tcp, uname=b"0", n_uname=0, aname=aname) as c:
                return await fn(c)

        return trio.run(main)

    def metrics(self) -> str:
        import httpx

        with httpx.Client(transport=httpx.HTTPTransport(uds=self.admin[5:]), base_url="http://ninep") as http:
            r = http.get("/metrics")
            r.raise_for_status()
            return r.text


def metric(text: str, name: str) -> float:
    """The value of an unlabelled-or-single-sample metric in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(None, 1)[1])
    raise KeyError(f"{name} not in metrics:\n{text}")


def bucket_store(env: dict, bucket: str):
    """An obstore handle on ``bucket`` with the given AWS_* settings (to look at what ninep stored)."""
    from obstore.store import S3Store

    return S3Store(bucket, endpoint=env["AWS_ENDPOINT_URL"], region=env["AWS_REGION"],
                   access_key_id=env["AWS_ACCESS_KEY_ID"], secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                   client_options={"allow_http": True})


def objects(env: dict, bucket: str, prefix: str) -> dict[str, int]:
    """Every object under ``prefix``: key -> size."""
    import obstore

    out = {}
    for batch in obstore.list(bucket_store(env, bucket), prefix=prefix):
        for meta in batch:
            out[meta["path"]] = meta["size"]
    return out


def chunk_objects(env: dict, bucket: str, prefix: str) -> dict[str, str]:
    """The chunk objects under ``prefix``: BLAKE3 hex name -> key (names are 64 hex digits)."""
    out = {}
    for key in objects(env, bucket, prefix):
        name = key.rsplit("/", 1)[-1]
        if len(name) == 64 and all(c in "0123456789abcdef" for c in name):
            out[name] = key
    return out


def wait_until_readable(env: dict, bucket: str, prefix: str, timeout: float = 60) -> None:
    """Wait until every object under ``prefix`` can be read (a restarted SeaweedFS answers
    HTTP a moment before its volumes serve data)."""
    import obstore

    store = bucket_store(env, bucket)
    deadline = time.monotonic() + timeout
    while True:
        try:
            for key in objects(env, bucket, prefix):
                obstore.get(store, key).bytes()
            return
        except Exception:  # noqa: BLE001 - not ready yet, whatever the error
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
