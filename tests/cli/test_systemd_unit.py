"""docs/systemd/ninep.service: systemd accepts it, and its ExecStart serves.

These machines do not run systemd as PID 1, so the unit is checked with
`systemd-analyze verify` and `security --offline`, and its command line is
run here with the state and runtime directories in a temporary directory.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from ninep_server.address import parse_address
from ninep_server.cli import build_parser

from ..servers import RunningServer, require

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "docs" / "systemd" / "ninep.service"
STATE, RUNTIME = "/var/lib/ninep", "/run/ninep"
MAX_EXPOSURE = 3.0  # systemd-analyze security: 2.6 ("OK") when written


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def exec_start() -> list[str]:
    return shlex.split(service()["ExecStart"])


def wrapper(tmp_path: Path) -> str:
    """An executable `ninep` that runs this tree's CLI (the project is not installed here)."""
    path = tmp_path / "bin" / "ninep"
    path.parent.mkdir()
    path.write_text(f'#!/bin/sh\nPYTHONPATH={shlex.quote(str(ROOT))} exec {shlex.quote(sys.executable)} '
                    f'-m ninep_server "$@"\n')
    path.chmod(0o755)
    return str(path)


def test_unit_declares_restart_state_and_runtime_directories():
    s = service()
    assert s["Restart"] == "on-failure" and s["Type"] == "exec"
    assert (s["StateDirectory"], s["StateDirectoryMode"]) == ("ninep", "0700")
    assert s["RuntimeDirectory"] == "ninep"
    argv = exec_start()
    args = build_parser().parse_args(argv[1:])  # the real `ninep serve` options
    assert args.command == "serve" and args.store == STATE
    listen = [str(a) for a in args.listen]
    assert listen[0] == f"unix:{RUNTIME}/ninep.sock"
    tcp = [parse_address(a) for a in listen if a.startswith("tcp:")]
    assert tcp and all(a.port != 0 for a in tcp), "a fixed port: mounts keep the address they were made with"
    # hardening that would break the server's file handling stays off
    for key in ("RestrictSUIDSGID", "PrivateUsers", "DynamicUser", "User"):
        assert key not in s, key
    assert {"CAP_CHOWN", "CAP_FOWNER", "CAP_FSETID"} <= set(s["CapabilityBoundingSet"].split())


def test_systemd_analyze_verify_and_security(tmp_path):
    analyze = shutil.which("systemd-analyze")
    require(analyze is not None, "systemd-analyze is not installed (apt-get install systemd)")
    text = UNIT.read_text()
    binary = exec_start()[0]
    assert text.count(f"ExecStart={binary} ") == 1
    unit = tmp_path / "ninep.service"
    unit.write_text(text.replace(f"ExecStart={binary} ", f"ExecStart={wrapper(tmp_path)} "))
    proc = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120)
    # verify exits 0 on unknown keys and bad values too, with a warning: none may appear
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    proc = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(unit)],
                          capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for ninep\.service: ([\d.]+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    assert float(m[1]) <= MAX_EXPOSURE, proc.stdout


def test_exec_start_serves_with_its_directories(tmp_path):
    """The unit's command line, with its directories moved here and port 0, serves and stops cleanly."""
    state, runtime = tmp_path / "state", tmp_path / "run"
    state.mkdir(mode=0o700)  # what StateDirectory= and RuntimeDirectory= create
    runtime.mkdir(mode=0o755)
    argv = [wrapper(tmp_path)]
    for arg in exec_start()[1:]:
        arg = arg.replace(STATE, str(state)).replace(RUNTIME, str(runtime))
        argv.append(re.sub(r"^(tcp:.*):\d+$", r"\1:0", arg))  # tests use ephemeral ports
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    server = RunningServer("ninep", "", b"", proc=proc)
    try:
        sock = runtime / "ninep.sock"
        assert proc.stdout.readline() == f"listening unix:{sock}\n"
        assert re.fullmatch(r"listening tcp:127\.0\.0\.1:\d+\n", proc.stdout.readline())
        assert proc.stdout.readline() == f"admin unix:{state}/admin.sock\n"
        assert os.stat(sock).st_mode & 0o777 == 0o600
        out = subprocess.run([argv[0], "volume", "create", "web", "--json", "--store", str(state)],
                             capture_output=True, text=True, timeout=120, check=True).stdout
        assert f'"device": "{sock}"' in out and '"o": "trans=unix,' in out
    finally:
        server.stop()
    assert proc.returncode == 0  # a clean stop: Restart=on-failure leaves it stopped
    assert not sock.exists()
