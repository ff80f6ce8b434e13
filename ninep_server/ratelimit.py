"""A token bucket for log lines, so that a client cannot flood the log.

Refused requests (a bad value, an undecodable frame, an unexpected failure)
are logged through one :class:`LogLimiter` per server: a burst of lines is
let through, then at most ``rate`` per second, and the next line that gets
through says how many were suppressed meanwhile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class LogLimiter:
    """Allows ``burst`` log lines at once and ``rate`` per second after that."""

    rate: float = 1.0
    burst: int = 10
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _last: float = field(init=False)
    _suppressed: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._tokens = float(self.burst)
        self._last = self.clock()

    def allow(self) -> int | None:
        """None if this line must be dropped; else how many were dropped before it."""
        now = self.clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1.0:
            self._suppressed += 1
            return None
        self._tokens -= 1.0
        dropped, self._suppressed = self._suppressed, 0
        return dropped
