"""Parsing of listen/connect addresses: ``tcp:HOST:PORT`` and ``unix:PATH``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Address:
    """A stream endpoint. ``kind`` is "tcp" (host, port) or "unix" (path)."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


def parse_address(text: str) -> Address:
    """Parse ``tcp:HOST:PORT`` (IPv6 hosts in brackets) or ``unix:PATH``.

    Raises ValueError with a message that shows the accepted forms.
    """
    forms = "expected tcp:HOST:PORT (e.g. tcp:127.0.0.1:5640, tcp:[::1]:0) or unix:PATH"
    kind, sep, rest = text.partition(":")
    if not sep or kind not in ("tcp", "unix"):
        raise ValueError(f"bad address {text!r}: {forms}")
    if kind == "unix":
        if not rest:
            raise ValueError(f"bad address {text!r}: unix: needs a path")
        return Address("unix", path=rest)
    if rest.startswith("["):
        host, bracket, port_text = rest[1:].partition("]")
        if not bracket or not port_text.startswith(":"):
            raise ValueError(f"bad address {text!r}: {forms}")
        port_text = port_text[1:]
    else:
        host, colon, port_text = rest.rpartition(":")
        if not colon:
            raise ValueError(f"bad address {text!r}: {forms}")
    if not host:
        raise ValueError(f"bad address {text!r}: missing host")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"bad address {text!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"bad address {text!r}: port {port} is out of range 0-65535")
    return Address("tcp", host=host, port=port)
