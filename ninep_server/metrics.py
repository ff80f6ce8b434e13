"""Server metrics, exported in Prometheus text format by the admin API.

Each Server owns its own registry (no process-global state). Request
latencies are histograms per 9P message type; figures that live elsewhere
(sessions, dirty bytes, cache, store size, dedup) are read at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import accumulate
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

_LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)


class ServerMetrics:
    """Counters and histograms updated on the request path.

    The per-request figures are plain Python numbers (one bisect and two
    additions per request, no locks: they are only updated on the trio
    thread) turned into Prometheus families at scrape time.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = _RequestLatency(_LATENCY_BUCKETS)
        self.read_bytes = 0
        self.written_bytes = 0
        self.registry.register(self.latency)
        self.registry.register(_Collector(self._byte_counters))
        self.commits = Histogram(
            "ninep_commit_seconds",
            "Duration of group commits",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.commit_failures = Counter("ninep_commit_failures", "Group commits that failed", registry=self.registry)

    def observe(self, request: str, seconds: float) -> None:
        self.latency.observe(request, seconds)

    def _byte_counters(self):
        yield CounterMetricFamily("ninep_read_bytes", "Bytes returned by Tread", value=self.read_bytes)
        yield CounterMetricFamily("ninep_written_bytes", "Bytes accepted by Twrite", value=self.written_bytes)

    def add_chunk_backend(self, location: str, stats: Callable[[], object]) -> None:
        """Export a chunk backend's ``stats()`` (a ``cas`` ChunkStats) at scrape time."""
        self.registry.register(_Collector(lambda: chunk_families(location, stats())))

    def add_gauges(self, collect: Callable[[], dict[str, tuple[str, float]]]) -> None:
        """Register a callback giving {name: (help, value)} at scrape time."""
        self.registry.register(_gauge_collector(collect))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def request_count(self, request: str) -> float:
        """Requests of one type answered so far (for status and tests)."""
        return float(sum(self.latency.counts.get(request, ())))


# ChunkStats field -> (metric name, help, counter?)
_CHUNK_FIELDS = (
    ("cache_hits", "ninep_chunk_cache_hits", "Chunk reads served by the local chunk cache", True),
    ("cache_misses", "ninep_chunk_cache_misses", "Chunk reads the local chunk cache could not serve", True),
    ("cache_bytes", "ninep_chunk_cache_bytes", "Bytes held by the local chunk cache", False),
    ("cache_limit", "ninep_chunk_cache_limit_bytes", "Bound of the local chunk cache", False),
    ("memory_hits", "ninep_chunk_memory_hits", "Chunk reads served by the memory cache of verified chunks", True),
    ("memory_misses", "ninep_chunk_memory_misses",
     "Chunk reads the memory cache of verified chunks could not serve (read and verified)", True),
    ("memory_bytes", "ninep_chunk_memory_bytes", "Bytes held by the memory cache of verified chunks", False),
    ("memory_limit", "ninep_chunk_memory_limit_bytes", "Bound of the memory cache of verified chunks", False),
    ("uploads", "ninep_chunk_uploads", "Chunks uploaded to object storage", True),
    ("upload_bytes", "ninep_chunk_upload_bytes", "Bytes uploaded to object storage", True),
    ("dedup_skips", "ninep_chunk_dedup_skips",
     "Uploads skipped because object storage already held the chunk (put-if-absent)", True),
    ("downloads", "ninep_chunk_downloads", "Chunks downloaded from object storage", True),
    ("download_bytes", "ninep_chunk_download_bytes", "Bytes downloaded from object storage", True),
    ("errors", "ninep_chunk_backend_errors", "Object-storage requests that failed after their retries", True),
)


def chunk_families(location: str, stats) -> Iterable:
    """Prometheus families for a chunk backend's stats, labelled with its location."""
    for attr, name, help_text, counter in _CHUNK_FIELDS:
        family = (CounterMetricFamily if counter else GaugeMetricFamily)(name, help_text, labels=["location"])
        family.add_metric([location], float(getattr(stats, attr)))
        yield family
    ratio = GaugeMetricFamily("ninep_chunk_cache_hit_ratio",
                              "Share of chunk reads served by the local chunk cache (0 before any read)",
                              labels=["location"])
    ratio.add_metric([location], stats.cache_hit_ratio)
    yield ratio
    memory = GaugeMetricFamily("ninep_chunk_memory_hit_ratio",
                               "Share of chunk reads served by the memory cache of verified chunks "
                               "(0 before any read)", labels=["location"])
    memory.add_metric([location], stats.memory_hit_ratio)
    yield memory


class _Collector:
    """A custom collector from a function yielding metric families."""

    def __init__(self, families: Callable[[], Iterable]):
        self._families = families

    def describe(self):
        return []

    def collect(self):
        yield from self._families()


def _gauge_collector(collect: Callable[[], dict[str, tuple[str, float]]]) -> _Collector:
    return _Collector(lambda: (GaugeMetricFamily(name, help_text, value=value)
                               for name, (help_text, value) in collect().items()))


class _RequestLatency:
    """``ninep_request_seconds``: a latency histogram per 9P message type."""

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}

    def observe(self, request: str, seconds: float) -> None:
        counts = self.counts.get(request)
        if counts is None:
            counts = self.counts[request] = [0] * (len(self.bounds) + 1)
            self.sums[request] = 0.0
        counts[bisect_left(self.bounds, seconds)] += 1
        self.sums[request] += seconds

    def describe(self):
        return []

    def collect(self):
        family = HistogramMetricFamily("ninep_request_seconds", "Time to answer a 9P request, by message type",
                                       labels=["type"])
        les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        for request, counts in list(self.counts.items()):
            buckets = list(zip(les, accumulate(counts)))
            family.add_metric([request], buckets, sum_value=self.sums[request])
        yield family
