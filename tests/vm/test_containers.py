"""Rootful Podman in the guest mounts ninep datasets as volumes (issue 18).

One boot of the container image (vm-images/build.py, rootfs-containers)
runs tests/vm/containers/guest.sh against a fresh server. The host first
runs `ninep volume create` and passes the exact `podman volume create` lines
it prints into the guest; after the boot it checks through ninep's own
client what the containers wrote. Each guest step prints @@CT-OK STEP@@.
The compose step runs podman-compose (the pinned PyPI 1.6.0 in the image) on
the compose file below, whose volume is declared with driver_opts.
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.vm import harness

pytestmark = [pytest.mark.vm, pytest.mark.slow]

CONTAINERS = Path(__file__).resolve().parent / "containers"
GUEST_SCRIPT = CONTAINERS / "guest.sh"
# sourced by the guest scripts: the image made of the guest's own binaries
GUEST_FILES = {"containers/image.sh": (CONTAINERS / "image.sh").read_bytes()}
STEPS = ["setup", "image", "volume_create", "write", "read_only", "snapshots", "bind", "unix",
         "restart", "compose", "volumes_removed"]
GUEST_HOST = "10.0.2.2"       # the host's 127.0.0.1 from a QEMU user-network guest
GUEST_SOCKET = "/run/ninep.sock"


def ninep(*args: str) -> str:
    r = subprocess.run(harness.ninep_command() + list(args), cwd=str(harness.ROOT),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"ninep {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def volume_create(store: Path, name: str, address: str) -> dict:
    out = json.loads(ninep("volume", "create", name, "--store", str(store), "--address", address,
                           "--json"))
    assert out["exported"], out
    return out


def boot(script: Path, images: dict, server, env: dict, steps: list[str], log_path: Path,
         on_line=None, files: dict[str, bytes] | None = None) -> None:
    """One guest boot running `script`; asserts it passed every one of `steps`."""
    lines: list[str] = []
    with open(log_path, "w") as logf:
        def log(line: str) -> None:
            lines.append(line)
            logf.write(line)
            logf.flush()
            if on_line is not None:
                on_line(line)
        guest = harness.runner.run_guest(
            script.read_bytes(), server=server.tcp, transport="tcp",
            mount_opts=harness.PRIMARY.mount_opts, images=images, env=env,
            files={**GUEST_FILES, **(files or {})},
            timeout=1200, output=log)
    output = "".join(lines)
    done = [s for s in steps if f"@@CT-OK {s}@@" in output]
    assert guest.rc == 0 and done == steps and "@@CT-DONE@@" in output, (
        f"guest rc={guest.rc}, steps passed {done} of {steps}\n"
        f"--- guest output (tail) ---\n{output[-6000:]}\n"
        f"--- server log (tail) ---\n{server.log_tail(2000)}\n(full log {log_path})")


def compose_file(volume: dict) -> str:
    """A compose file whose volume has the driver_opts `ninep volume create --json` gave;
    podman-compose (guest.sh) and docker-compose (docker.sh) bring it up."""
    o = volume["options"]
    return f"""\
services:
  writer:
    image: localhost/ninep-test
    network_mode: none
    command: ["sh", "-c", "echo from compose > /data/compose-file && sync"]
    volumes:
      - data:/data
volumes:
  data:
    driver: local
    driver_opts:
      type: "{o['type']}"
      device: "{o['device']}"
      o: "{o['o']}"
"""


@pytest.fixture(scope="module")
def container_images(vm_images):
    try:
        t0 = time.monotonic()
        rootfs = harness.build.build_containers_rootfs()
        seconds = time.monotonic() - t0
    except (Exception, SystemExit) as e:  # noqa: BLE001
        harness.unavailable(f"cannot build the container image: {e}")
    return dict(vm_images, rootfs=str(rootfs), containers_build_seconds=seconds)


def test_podman_volumes(container_images, tmp_path):
    server = harness.start_server("ninep", tmp_path / "srv")
    try:
        port = server.tcp.rsplit(":", 1)[1]
        tcp = volume_create(server.store, "vol", f"tcp:{GUEST_HOST}:{port}")
        assert tcp["podman"] == (
            "podman volume create --driver local --opt type=9p --opt device=10.0.2.2 "
            f"--opt o=trans=tcp,port={port},version=9p2000.L,msize=512000,access=user,"
            "cache=none,aname=vol vol")
        unix = volume_create(server.store, "uvol", f"unix:{GUEST_SOCKET}")
        cvol = volume_create(server.store, "cvol", f"tcp:{GUEST_HOST}:{port}")
        vol = harness.NinepView(server.tcp, aname=b"vol")
        vol._call(lambda c: c.write_file(b"host-file", b"written on the host\n"))
        ninep("snapshot", "create", "vol@fromhost", "--store", str(server.store))

        def on_line(line: str) -> None:
            if "@@CT-RESTART@@" in line:
                server.restart()
                server.view._call(lambda c: c.write_file(b"restarted", b""))

        boot(GUEST_SCRIPT, container_images, server,
             {"PODMAN_TCP": tcp["podman"], "PODMAN_UNIX": unix["podman"]}, STEPS,
             tmp_path / "guest.log", on_line, files={"compose.yaml": compose_file(cvol).encode()})

        # What the containers wrote, read on the host through ninep's client.
        assert vol.read("tree/a/b/file") == b"written in a container\n"
        st = vol.stat("tree/a/b/file")
        assert (st.kind, st.mode, st.uid, st.gid) == ("f", 0o640, 0, 0)
        assert vol.stat("tree/a").mode == 0o750
        assert vol.getxattr("tree/a/b/file", "user.origin") == b"container"
        assert vol.readlink("tree/a/link") == b"b/file"
        assert vol.read("tree/top") == b"second\n"
        assert not vol.exists("tree/ro-write") and not vol.exists("ro-dir"), \
            "a write through the :ro volume reached the store"
        assert vol.listdir(".snapshots") == [b"fromct", b"fromhost"]
        assert vol.read(".snapshots/fromct/tree/a/b/file") == b"written in a container\n"
        assert not vol.exists(".snapshots/fromhost/tree")
        assert harness.NinepView(server.tcp, aname=b"uvol").read("unix-file") == b"hi\n"
        assert server.view.read("bind-file") == b"hi\n"
        assert vol.read("hello") == b"hi\n"
        # the old mount's write after the restart failed; the new one's arrived
        assert vol.read("after-restart") == b"after the restart\n"
        # podman-compose's service, through the compose file's driver_opts volume
        assert harness.NinepView(server.tcp, aname=b"cvol").read("compose-file") == \
            b"from compose\n"
    finally:
        server.stop()


DOCKER_SCRIPT = CONTAINERS / "docker.sh"
DOCKER_STEPS = ["setup", "image", "volume_create", "write", "read_only", "snapshots",
                "mount_flag", "compose", "volumes_removed"]


def docker_mount(volume: dict) -> str:
    """`docker run --mount` with the volume's local-driver options as volume-opt."""
    o = volume["options"]
    spec = (f"type=volume,src=dmount,dst=/data,volume-driver=local,volume-opt=type={o['type']},"
            f"volume-opt=device={o['device']},\"volume-opt=o={o['o']}\"")
    return (f"docker run --rm --network none --mount '{spec}' localhost/ninep-test "
            "cat /data/hello")


@pytest.fixture(scope="module")
def docker_images(vm_images):
    try:
        rootfs = harness.build.build_docker_rootfs()
    except (Exception, SystemExit) as e:  # noqa: BLE001
        harness.unavailable(f"cannot build the Docker image: {e}")
    return dict(vm_images, rootfs=str(rootfs))


def test_docker_volumes(docker_images, tmp_path):
    server = harness.start_server("ninep", tmp_path / "srv")
    try:
        port = server.tcp.rsplit(":", 1)[1]
        tcp = volume_create(server.store, "dvol", f"tcp:{GUEST_HOST}:{port}")
        cvol = volume_create(server.store, "cvol", f"tcp:{GUEST_HOST}:{port}")
        boot(DOCKER_SCRIPT, docker_images, server,
             {"DOCKER_TCP": tcp["docker"], "DOCKER_MOUNT": docker_mount(tcp)}, DOCKER_STEPS,
             tmp_path / "guest.log", files={"compose.yaml": compose_file(cvol).encode()})
        vol = harness.NinepView(server.tcp, aname=b"dvol")
        assert vol.read("hello") == b"hi\n"
        assert vol.read("tree/a/file") == b"written by docker\n"
        st = vol.stat("tree/a/file")
        assert (st.mode, st.uid, st.gid) == (0o640, 0, 0)
        assert vol.getxattr("tree/a/file", "user.origin") == b"docker"
        assert not vol.exists("ro-write"), "a write through the :ro volume reached the store"
        assert vol.listdir(".snapshots") == [b"fromdocker"]
        compose = harness.NinepView(server.tcp, aname=b"cvol")
        assert compose.read("compose-file") == b"from compose\n"
    finally:
        server.stop()
