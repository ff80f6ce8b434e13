"""`ninep volume ...` end to end: the real CLI in a subprocess, against real
servers (tcp, unix, wildcard listeners) and against stopped stores."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from ninep_server.address import Address
from ninep_server.client import connect
from ninep_server.config import ConfigError, parse_config

from ..readme_blocks import blocks
from ..servers import RunningServer, start_ninep

ROOT = Path(__file__).resolve().parents[2]
OPTS = "version=9p2000.L,msize=512000,access=user,cache=none"


def ninep(*args, ok=True, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "ninep_server", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if ok:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def expected(name: str, device: str, o: str, where: str, extra: str = "") -> str:
    opts = f"--driver local --opt type=9p --opt device={device} --opt o={o}"
    return (f"# created volume {name} on {where}{extra}\n"
            "# as root (rootless podman cannot mount 9p):\n"
            f"podman volume create {opts} {name}\n"
            f"docker volume create {opts} {name}\n"
            f"# then: podman run --rm -v {name}:/data IMAGE  (docker run likewise)\n")


def volumes(store, **kw) -> dict:
    return {v["name"]: v for v in json.loads(ninep("volume", "list", "--json", "--store", store, **kw).stdout)}


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store"


def test_create_through_a_tcp_server_prints_its_address(store):
    server = start_ninep(store)
    try:
        out = ninep("volume", "create", "web", "--quota", "10M", "--store", store).stdout
        port = server.port
        assert out == expected("web", "127.0.0.1", f"trans=tcp,port={port},{OPTS},aname=web",
                               f"tcp:127.0.0.1:{port}", " (quota 10.0 MiB)")
        js = json.loads(ninep("volume", "create", "db", "--read-only", "--json", "--store", store).stdout)
        o = f"trans=tcp,port={port},{OPTS},aname=db"
        assert js["options"] == {"type": "9p", "device": "127.0.0.1", "o": o}
        assert js["podman"] == f"podman volume create --driver local --opt type=9p --opt device=127.0.0.1 --opt o={o} db"
        assert js["docker"] == js["podman"].replace("podman", "docker", 1)
        assert (js["address"], js["read_only"], js["quota"], js["exported"]) == (f"tcp:127.0.0.1:{port}", True, 0, True)
        listed = volumes(store)
        assert listed["web"] == {"name": "web", "bytes": 0, "snapshots": 0, "quota": 10 << 20, "read_only": False}
        assert listed["db"]["read_only"] is True
    finally:
        server.stop()
    # the properties are the dataset's own: the stopped store shows them too
    assert volumes(store)["web"]["quota"] == 10 << 20


def test_create_through_a_unix_server(tmp_path, store):
    sock = tmp_path / "9p.sock"
    server = start_ninep(store, listen=(f"unix:{sock}",))
    try:
        out = ninep("volume", "create", "web", "--store", store).stdout
    finally:
        server.stop()
    assert out == expected("web", str(sock), f"trans=unix,{OPTS},aname=web", f"unix:{sock}")


def test_wildcard_listener_needs_address(tmp_path, store):
    server = start_ninep(store, listen=("tcp:0.0.0.0:0",))
    try:
        port = server.port
        proc = ninep("volume", "create", "web", "--store", store, ok=False)
        assert proc.returncode == 1 and proc.stdout == ""
        assert f"tcp:0.0.0.0:{port} is a wildcard" in proc.stderr
        assert f"--address tcp:127.0.0.1:{port}" in proc.stderr and f"tcp:10.0.2.2:{port}" in proc.stderr
        assert "web" not in volumes(store)  # nothing created without a command to print
        out = ninep("volume", "create", "web", "--address", f"tcp:10.0.2.2:{port}", "--store", store).stdout
        assert f"--opt device=10.0.2.2 --opt o=trans=tcp,port={port},{OPTS},aname=web web\n" in out
    finally:
        server.stop()


def test_first_usable_listener_is_chosen(tmp_path, store):
    sock = tmp_path / "9p.sock"
    server = start_ninep(store, listen=("tcp:0.0.0.0:0", f"unix:{sock}"))
    try:
        js = json.loads(ninep("volume", "create", "web", "--json", "--store", store).stdout)
    finally:
        server.stop()
    assert js["options"]["device"] == str(sock) and js["address"] == f"unix:{sock}"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this host")
def test_ipv6_listener_is_refused(store):
    server = start_ninep(store, listen=("tcp:[::1]:0",))
    try:
        proc = ninep("volume", "create", "web", "--store", store, ok=False)
    finally:
        server.stop()
    assert proc.returncode == 1
    assert "v9fs takes only an IPv4 literal for trans=tcp, not an IPv6 address" in proc.stderr


@pytest.mark.parametrize("address, message", [
    ("tcp:localhost:5640", "v9fs takes only an IPv4 literal for trans=tcp, not a host name"),
    ("tcp:[fd00::1]:5640", "v9fs takes only an IPv4 literal for trans=tcp, not an IPv6 address"),
    ("tcp:0.0.0.0:5640", "tcp:0.0.0.0:5640 is a wildcard"),
    ("tcp:10.0.2.2:0", "port 0 is not a port a client can connect to"),
    ("unix:run/9p.sock", "the runtime needs the socket's absolute path"),
    ("10.0.2.2", "expected tcp:HOST:PORT"),
])
def test_bad_addresses_are_refused(store, address, message):
    proc = ninep("volume", "create", "web", "--address", address, "--store", store, ok=False)
    assert proc.returncode == 2 and message in proc.stderr and proc.stdout == ""
    assert not store.exists()


def test_stopped_store_with_address(store):
    out = ninep("volume", "create", "web", "--address", "tcp:10.0.2.2:5640", "--store", store).stdout
    assert out == expected("web", "10.0.2.2", f"trans=tcp,port=5640,{OPTS},aname=web", "tcp:10.0.2.2:5640")
    out = ninep("volume", "create", "app", "--address", "unix:/run/ninep/ninep.sock", "--store", store).stdout
    assert out == expected("app", "/run/ninep/ninep.sock", f"trans=unix,{OPTS},aname=app", "unix:/run/ninep/ninep.sock")


def test_stopped_store_with_config(tmp_path, store):
    config = tmp_path / "ninep.toml"
    config.write_text('[server]\nlisten = ["tcp:[::1]:5640", "tcp:0.0.0.0:5640", "tcp:192.0.2.7:5640"]\n')
    out = ninep("volume", "create", "web", "--config", config, "--store", store).stdout
    assert out == expected("web", "192.0.2.7", f"trans=tcp,port=5640,{OPTS},aname=web", "tcp:192.0.2.7:5640")
    # --address wins over the configuration
    out = ninep("volume", "create", "app", "--config", config, "--address", "tcp:10.0.2.2:5640", "--store", store).stdout
    assert "--opt device=10.0.2.2 " in out
    config.write_text('[server]\nlisten = ["tcp:0.0.0.0:5640"]\n')
    proc = ninep("volume", "create", "db", "--config", config, "--store", store, ok=False)
    assert proc.returncode == 1 and f"[server] listen in {config} has no address v9fs can mount" in proc.stderr
    config.write_text('[server]\nmax_connections = 8\n')
    proc = ninep("volume", "create", "db", "--config", config, "--store", store, ok=False)
    assert proc.returncode == 1 and f"and {config} sets no [server] listen" in proc.stderr
    proc = ninep("volume", "create", "db", "--store", store, ok=False)
    assert proc.returncode == 1 and "no server is running" in proc.stderr and "--address" in proc.stderr
    config.write_text('[server]\nlisten = "tcp:127.0.0.1:5640"\n')
    proc = ninep("volume", "create", "db", "--config", config, "--store", store, ok=False)
    assert proc.returncode == 1 and "server.listen must be a list of addresses" in proc.stderr
    assert set(volumes(store)) == {"web", "app"}


@pytest.mark.parametrize("listen, message", [
    (["tcp:127.0.0.1"], "server.listen: bad address 'tcp:127.0.0.1'"),
    ("unix:/x", "server.listen must be a list of addresses"),
    ([5640], "server.listen must be a list of addresses"),
])
def test_config_listen_is_checked(listen, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config({"server": {"listen": listen}})
    assert parse_config({"server": {"listen": ["unix:/a", "tcp:[::1]:0"]}}).listen == \
        (Address("unix", path="/a"), Address("tcp", host="::1", port=0))


def test_serve_listens_where_the_config_says_and_volume_finds_its_admin_socket(tmp_path, store):
    sock, admin = tmp_path / "9p.sock", tmp_path / "admin.sock"
    config = tmp_path / "ninep.toml"
    config.write_text(f'[server]\nlisten = ["unix:{sock}"]\n[admin]\nsocket = "{admin}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "ninep_server", "serve", "--store", str(store), "--config",
                             str(config)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline() == f"listening unix:{sock}\n"  # no --listen: the configuration's
        assert proc.stdout.readline() == f"admin unix:{admin}\n"
        # the store's own admin.sock does not exist: only --config leads to the server
        out = ninep("volume", "create", "web", "--config", config, "--store", store).stdout
        assert out == expected("web", str(sock), f"trans=unix,{OPTS},aname=web", f"unix:{sock}")
        refused = ninep("volume", "create", "db", "--store", store, ok=False)
        assert "locked by another process" in refused.stderr
    finally:
        RunningServer("ninep", f"unix:{sock}", b"", proc=proc).stop()


def test_unexported_dataset_warns(tmp_path, store):
    config = tmp_path / "ninep.toml"
    config.write_text("[server]\nexport_unlisted = false\n[exports.main]\n")
    server = start_ninep(store, "--config", str(config))
    try:
        out = ninep("volume", "create", "web", "--store", store).stdout
        js = json.loads(ninep("volume", "create", "db", "--json", "--store", store).stdout)
    finally:
        server.stop()
    assert "# warning: the server does not export web (export_unlisted = false): " \
           "add [exports.web] to its configuration and restart it\n" in out
    assert js["exported"] is False


async def test_list_and_delete_through_a_server(store):
    server = start_ninep(store)
    try:
        await trio.to_thread.run_sync(lambda: ninep("volume", "create", "web", "--store", store))
        async with connect(server.address, uname=b"root", n_uname=0, aname=b"web") as c:
            await c.write_file(b"f", b"x" * 5000, fsync=True)
            await trio.to_thread.run_sync(lambda: ninep("snapshot", "create", "web@one", "--store", store))
            out = (await trio.to_thread.run_sync(lambda: ninep("volume", "list", "--store", store))).stdout
            refused = await trio.to_thread.run_sync(
                lambda: ninep("volume", "delete", "web", "--store", store, ok=False))
        assert out.splitlines()[0].split() == ["VOLUME", "SIZE", "QUOTA", "SNAPSHOTS", "MODE"]
        row = next(line for line in out.splitlines() if line.startswith("web "))
        assert row.split() == ["web", "4.9", "KiB", "-", "1", "rw"]
        assert refused.returncode == 1 and "'web' is attached by session" in refused.stderr
        js = json.loads((await trio.to_thread.run_sync(
            lambda: ninep("volume", "delete", "web", "--json", "--store", store))).stdout)
        assert js == {"deleted": "web"}
    finally:
        server.stop()
    assert "web" not in volumes(store)


def test_list_and_delete_on_a_stopped_store(store):
    ninep("volume", "create", "web", "--address", "tcp:10.0.2.2:5640", "--quota", "1G", "--store", store)
    assert ninep("volume", "list", "--store", store).stdout.splitlines()[1].split() == \
        ["web", "0", "B", "1.0", "GiB", "0", "rw"]
    out = ninep("volume", "delete", "web", "--store", store).stdout
    assert out == "deleted volume web\n# the runtimes still list it: podman volume rm web; docker volume rm web\n"
    assert ninep("volume", "list", "--store", store).stdout == "no volumes\n"
    proc = ninep("volume", "delete", "web", "--store", store, ok=False)
    assert proc.returncode == 1 and "No such file or directory" in proc.stderr


def test_help_teaches():
    text = ninep("volume", "create", "--help").stdout
    for words in ("trans=unix", "IPv4 literal", "rootless Podman cannot", "does not reconnect", "port 0",
                  "10.0.2.2", "access=user", "cache=none", "msize=512000"):
        assert words in text, words


# -- the README's commands ---------------------------------------------------------

README = (ROOT / "README.md").read_text()


def test_readme_volume_commands_run(tmp_path):
    """The README's `ninep volume` block, run line by line against a server on its default store."""
    server = start_ninep(tmp_path / "ninep-data")
    try:
        outputs = []
        for line in blocks(README)["volume"].splitlines():
            command = line.split("#", 1)[0].split()
            assert command[0] == "ninep", line
            outputs.append(ninep(*command[1:], cwd=tmp_path).stdout)
    finally:
        server.stop()
    assert f"device=127.0.0.1 --opt o=trans=tcp,port={server.port}," in outputs[0]


def test_readme_volume_output_is_what_the_command_prints(tmp_path):
    """The output the README shows is printed by the command it shows, exactly."""
    shown = blocks(README)["volume-output"]
    command, printed = shown.split("\n", 1)
    assert command.startswith("$ ninep volume create ")
    assert ninep(*command[2:].split()[1:], "--store", tmp_path / "store").stdout == printed
