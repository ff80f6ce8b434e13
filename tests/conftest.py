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


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """A real S3 server (SeaweedFS ``weed mini``) shared by the session's tests.

    Tests that need their own server (to stop or kill it) use
    :func:`tests.servers.start_seaweedfs` instead.
    """
    from tests.servers import start_seaweedfs

    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(seaweedfs, monkeypatch):
    """A fresh, empty bucket on the shared SeaweedFS, with the AWS variables set.

    Yields the bucket's name; ``AWS_ENDPOINT_URL`` and the keys point at the server.
    """
    import uuid

    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    yield f"t-{uuid.uuid4().hex[:20]}"


def pytest_configure(config):
    # Tests read human logs; debug lines (every expected errno) stay quiet.
    from ninep_server.logs import configure_logging

    configure_logging("info", json=False)
