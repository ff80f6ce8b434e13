"""Shared fixtures: real servers on ephemeral ports."""

from __future__ import annotations

import pytest

from tests.servers import start_diod


@pytest.fixture
def diod_server(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    server = start_diod(export)
    yield server
    server.stop()


SERVER_KINDS = ["diod", "ninep"]


@pytest.fixture(params=SERVER_KINDS)
def server(request, tmp_path):
    """Each real 9P2000.L server in turn, started empty."""
    if request.param == "diod":
        export = tmp_path / "export"
        export.mkdir()
        srv = start_diod(export)
    else:
        from tests.servers import start_ninep

        srv = start_ninep(tmp_path / "store")
    yield srv
    srv.stop()


def pytest_configure(config):
    # Tests read human logs; debug lines (every expected errno) stay quiet.
    from ninep_server.logs import configure_logging

    configure_logging("info", json=False)
