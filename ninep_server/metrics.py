"""Server metrics, exported in Prometheus text format by the admin API.

Each Server owns its own registry (no process-global state). Request
latencies are histograms per 9P message type; figures that live elsewhere
(sessions, dirty bytes, cache, store size, dedup) are read at scrape time.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

_LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)


class ServerMetrics:
    """Counters and histograms updated on the request path."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Histogram(
            "ninep_request_seconds",
            "Time to answer a 9P request, by message type",
            ["type"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.read_bytes = Counter("ninep_read_bytes", "Bytes returned by Tread", registry=self.registry)
        self.written_bytes = Counter("ninep_written_bytes", "Bytes accepted by Twrite", registry=self.registry)
        self.commits = Histogram(
            "ninep_commit_seconds",
            "Duration of group commits",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.commit_failures = Counter("ninep_commit_failures", "Group commits that failed", registry=self.registry)
        self._by_type: dict[str, object] = {}

    def observe(self, request: str, seconds: float) -> None:
        child = self._by_type.get(request)
        if child is None:
            child = self._by_type[request] = self.requests.labels(request)
        child.observe(seconds)

    def add_gauges(self, collect: Callable[[], dict[str, tuple[str, float]]]) -> None:
        """Register a callback giving {name: (help, value)} at scrape time."""
        self.registry.register(_GaugeCollector(collect))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def request_count(self, request: str) -> float:
        """Requests of one type answered so far (for status and tests)."""
        return self.registry.get_sample_value("ninep_request_seconds_count", {"type": request}) or 0.0


class _GaugeCollector:
    def __init__(self, collect: Callable[[], dict[str, tuple[str, float]]]):
        self._collect = collect

    def describe(self):
        return []

    def collect(self):
        for name, (help_text, value) in self._collect().items():
            yield GaugeMetricFamily(name, help_text, value=value)
