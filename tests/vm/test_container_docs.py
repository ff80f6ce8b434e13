"""docs/containers.md shows only container commands that the kernel tests run.

No guest here: the docs' shell blocks are compared with the guest scripts
(tests/vm/containers/*.sh) and with what test_containers.py generates, so
the page cannot drift from the tests (issue 18: every command shown is run
by a test).
"""
from __future__ import annotations

import re
from pathlib import Path

from ninep_server.address import parse_address
from ninep_server.commands.volume import VolumeSpec
from tests.vm import test_containers as tc

DOCS = Path(__file__).resolve().parents[2] / "docs" / "containers.md"
PORT = 5640        # the port the page's examples use
IMAGE = "localhost/ninep-test"
RUNTIMES = ("podman ", "podman-compose ", "docker ", "docker-compose ", "socat ")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def blocks(kind: str) -> list[str]:
    return [m[2] for m in _FENCE.finditer(DOCS.read_text()) if m[1] == kind]


def spec(name: str, address: str) -> VolumeSpec:
    return VolumeSpec(name, parse_address(address))


def options(name: str) -> dict:
    s = spec(name, f"tcp:10.0.2.2:{PORT}")
    return {"options": {"type": "9p", "device": s.device, "o": s.options}}


def test_every_container_command_in_the_docs_is_run_by_a_test():
    scripts = "".join(p.read_text() for p in sorted(tc.CONTAINERS.glob("*.sh")))
    created = {spec("vol", f"tcp:10.0.2.2:{PORT}").command("podman"),
               spec("uvol", f"unix:{tc.GUEST_SOCKET}").command("podman"),
               spec("dvol", f"tcp:10.0.2.2:{PORT}").command("docker")}
    generated = {tc.docker_mount(options("dvol")).replace(IMAGE, "IMAGE")}
    shown = [line for block in blocks("sh") for line in block.splitlines()
             if line.startswith(RUNTIMES)]
    assert len(shown) >= 17, shown   # the page shows 21; a broken fence would drop many
    for line in shown:
        if " volume create " in line:
            assert line in created, f"docs show a volume create line no test runs: {line}"
        elif line in generated:
            continue
        else:
            script_form = line.replace("IMAGE", "$IMG").replace(f":{PORT}", ":$NINEP_PORT")
            assert script_form in scripts, f"docs show a command no test runs: {line}"


def test_the_compose_file_in_the_docs_is_the_one_the_podman_and_docker_tests_use():
    (shown,) = blocks("yaml")
    assert shown == tc.compose_file(options("cvol")).replace(IMAGE, "IMAGE")
