"""Which connections may stay: one cap on those still negotiating, another on those served.

Connections that have not completed Tversion yet are "handshaking". There
may be at most ``max_handshakes`` of them: a new connection beyond that
evicts the oldest, so sockets that connect and send nothing (or half a
frame) delay a real client by one round trip at most, never lock it out.
``max_connections`` counts only sessions that completed Tversion: a
handshaking socket never takes one of those places.

Nothing is limited per client address: QEMU guests behind user networking
and container mounts all connect from 127.0.0.1, and unix peers have none.
"""

from __future__ import annotations

from typing import Protocol

import structlog

log = structlog.get_logger(__name__)


class Connection(Protocol):
    """What admission needs of a session."""

    id: int
    peer: str

    def evict(self, reason: str) -> None:
        """Close the connection soon (it is still negotiating)."""


class Admission:
    """Counts handshaking and served connections against their caps."""

    def __init__(self, max_connections: int, max_handshakes: int):
        self.max_connections = max_connections
        self.max_handshakes = max_handshakes
        self._handshaking: dict[int, Connection] = {}  # oldest first
        self._served: set[int] = set()

    @property
    def handshaking(self) -> int:
        return len(self._handshaking)

    @property
    def served(self) -> int:
        return len(self._served)

    def arrive(self, conn: Connection) -> None:
        """A new connection: it is handshaking; evict the oldest if there are too many."""
        while len(self._handshaking) >= self.max_handshakes:
            oldest = self._handshaking.pop(next(iter(self._handshaking)))
            log.info(
                "closing a connection that has not negotiated: too many handshakes",
                session=oldest.id,
                peer=oldest.peer,
                limit=self.max_handshakes,
            )
            oldest.evict("too many connections still negotiating")
        self._handshaking[conn.id] = conn

    def negotiated(self, conn: Connection) -> bool:
        """Tversion succeeded: serve it if there is room (False: close it)."""
        if conn.id in self._served:
            return True
        if len(self._served) >= self.max_connections:
            return False
        self._handshaking.pop(conn.id, None)
        self._served.add(conn.id)
        return True

    def leave(self, conn: Connection) -> None:
        """The connection closed."""
        self._handshaking.pop(conn.id, None)
        self._served.discard(conn.id)
