"""An in-process ninep server on real sockets, with its Store at hand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from cas import Store
from ninep_server.address import Address, parse_address
from ninep_server.client import connect
from ninep_server.config import ServerConfig, parse_config
from ninep_server.listen import bind_socket, open_listener
from ninep_server.server import Server

ADMIN_TOKEN = "test-token-0123456789abcdef"


@dataclass
class LiveServer:
    server: Server
    store: Store
    tcp: str
    unix: str
    admin_unix: str = ""
    admin_tcp: str = ""

    def connect(self, uid: int = 0, aname: bytes = b"", address: str | None = None, **kw):
        return connect(address or self.tcp, uname=str(uid).encode(), n_uname=uid, aname=aname, **kw)


async def start_live(tmp_path: Path, nursery: trio.Nursery, config: ServerConfig | None = None) -> LiveServer:
    store = Store.open(tmp_path / "store", create=True)
    if "main" not in store.datasets():
        store.create_dataset("main")
    server = Server(store, config or ServerConfig(commit_interval=0.05))
    tcp, tcp_shown = await open_listener(parse_address("tcp:127.0.0.1:0"))
    unix, unix_shown = await open_listener(Address("unix", path=str(tmp_path / "ninep.sock")))
    admin_unix, admin_unix_shown = bind_socket(Address("unix", path=str(tmp_path / "admin.sock")))
    admin_tcp, admin_tcp_shown = bind_socket(parse_address("tcp:127.0.0.1:0"))
    admin = [(admin_unix, None), (admin_tcp, ADMIN_TOKEN)]
    server.listening = [tcp_shown, unix_shown]
    server.admin_listening = [admin_unix_shown, admin_tcp_shown]
    await nursery.start(server.serve, [tcp, unix], admin)
    return LiveServer(server, store, tcp_shown, unix_shown, admin_unix_shown, admin_tcp_shown)


async def wait_for(predicate, timeout: float = 30) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.01)


@pytest.fixture
async def live(tmp_path, nursery):
    srv = await start_live(tmp_path, nursery)
    yield srv
    await srv.server.shutdown()
    srv.store.close()


@pytest.fixture
def config_from():
    return parse_config
