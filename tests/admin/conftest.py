"""An in-process server with its admin API on a unix socket and on TCP."""

from __future__ import annotations

import httpx
import pytest

from ..server.conftest import ADMIN_TOKEN, live  # noqa: F401  (the same live server fixture)


def admin_client(live, *, tcp: bool = False, token: str | None = ADMIN_TOKEN) -> httpx.AsyncClient:
    """An HTTP client for the live server's admin API."""
    if tcp:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=f"http://{live.admin_tcp[4:]}", headers=headers, timeout=30)
    transport = httpx.AsyncHTTPTransport(uds=live.admin_unix[5:])
    return httpx.AsyncClient(transport=transport, base_url="http://ninep", timeout=30)


@pytest.fixture
async def api(live):
    async with admin_client(live) as client:
        yield client
