"""The sidecar's Prometheus metrics, and the cheap evaluation histogram behind them.

Evaluation latency is recorded on the hot path into :class:`LatencyHistogram`
(a ``bisect`` and two additions, well under a microsecond) and exported at
scrape time by a custom collector, instead of through ``prometheus_client``'s
``Histogram.observe`` with its lock per call. The same counts give the
heartbeat's p99 since the previous beat (:meth:`LatencyHistogram.delta`).

Every sidecar (and every manager in a test process) has its own
``CollectorRegistry``, so two never mix their figures.

Exported names (``prometheus_client`` appends ``_total`` to counters):

- ``pkg_snapshot_load_duration_seconds`` (histogram): load + build + self-test of a snapshot
- ``pkg_evaluation_duration_seconds{engine}`` (histogram)
- ``pkg_evaluation_errors_total{engine,kind}`` (``kind``: ``bad_input`` or ``engine``)
- ``pkg_hotswap_count_total`` (counter): activations that changed the active evaluator
- ``pkg_activation_failures_total{reason}`` (counter)
- ``pkg_fixture_failures_total`` (counter): fixtures that failed a self-test
- ``pkg_redis_reconnect_count_total`` (counter)
- ``pkg_active_version{version}`` (gauge, 1 for the active version)
- ``pkg_cached_versions_count`` (gauge)
- ``pkg_degraded_mode`` (gauge, 0 or 1)
- ``pkg_desired_epoch`` (gauge): the newest desired epoch seen
- ``pkg_staleness_seconds`` (gauge): time since the desired level was last confirmed
- ``pkg_stale`` (gauge, 0 or 1): 1 past ``PKG_MAX_STALENESS_SECONDS``
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["EvaluationStats", "LatencyHistogram", "SidecarMetrics"]

# Upper bounds in seconds: 5 µs to 1 s, about 26 % apart (ten per decade), so a
# p99 read from the buckets is within one bucket of the truth.
BOUNDS: tuple[float, ...] = tuple(
    round(5e-6 * 10 ** (i / 10), 9) for i in range(54) if 5e-6 * 10 ** (i / 10) <= 1.0001
)


class LatencyHistogram:
    """Counts per bucket plus a sum; ``observe`` is lock-free (one writer thread at a time)."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS) + 1)  # last bucket: above the largest bound
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BOUNDS, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)

    def copy(self) -> LatencyHistogram:
        other = LatencyHistogram()
        other.counts = list(self.counts)
        other.total = self.total
        return other

    def delta(self, earlier: LatencyHistogram) -> LatencyHistogram:
        """The observations made since ``earlier`` (a copy taken before)."""
        out = LatencyHistogram()
        out.counts = [a - b for a, b in zip(self.counts, earlier.counts, strict=True)]
        out.total = self.total - earlier.total
        return out

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding quantile ``q`` (None with no observations)."""
        n = self.count
        if n == 0:
            return None
        rank = q * n
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= rank and c:
                return BOUNDS[i] if i < len(BOUNDS) else float("inf")
        return BOUNDS[-1]


class EvaluationStats:
    """Evaluations, errors and latency per engine, as the HTTP layer records them."""

    def __init__(self) -> None:
        self.latency: dict[str, LatencyHistogram] = {}
        self.errors: dict[tuple[str, str], int] = {}

    def observe(self, engine: str, seconds: float) -> None:
        hist = self.latency.get(engine)
        if hist is None:
            hist = self.latency[engine] = LatencyHistogram()
        hist.observe(seconds)

    def error(self, engine: str, kind: str) -> None:
        key = (engine, kind)
        self.errors[key] = self.errors.get(key, 0) + 1

    def merged(self) -> LatencyHistogram:
        out = LatencyHistogram()
        for hist in list(self.latency.values()):
            out.counts = [a + b for a, b in zip(out.counts, hist.counts, strict=True)]
            out.total += hist.total
        return out

    def error_count(self) -> int:
        return sum(self.errors.values())


class _EvaluationCollector(Collector):
    def __init__(self, stats: EvaluationStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        hist = HistogramMetricFamily(
            "pkg_evaluation_duration_seconds",
            "Time to evaluate one request's task facts, by engine.",
            labels=["engine"],
        )
        for engine, h in sorted(self._stats.latency.items()):
            counts = list(h.counts)
            cumulative, buckets = 0, []
            for bound, c in zip(BOUNDS, counts, strict=False):
                cumulative += c
                buckets.append((repr(bound), float(cumulative)))
            cumulative += counts[-1]
            buckets.append(("+Inf", float(cumulative)))
            hist.add_metric([engine], buckets, h.total)
        yield hist
        errors = CounterMetricFamily(
            "pkg_evaluation_errors",
            "Evaluations that failed, by engine and kind (bad_input or engine).",
            labels=["engine", "kind"],
        )
        for (engine, kind), n in sorted(self._stats.errors.items()):
            errors.add_metric([engine, kind], float(n))
        yield errors


class SidecarMetrics:
    """One sidecar's metrics in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.stats = EvaluationStats()
        r.register(_EvaluationCollector(self.stats))
        self.load_duration = Histogram(
            "pkg_snapshot_load_duration_seconds",
            "Time to load, build and self-test a snapshot before activating it.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.hotswaps = Counter(
            "pkg_hotswap_count", "Activations that replaced the active evaluator.", registry=r
        )
        self.activation_failures = Counter(
            "pkg_activation_failures",
            "Snapshots that could not be activated, by reason.",
            labelnames=["reason"],
            registry=r,
        )
        self.fixture_failures = Counter(
            "pkg_fixture_failures", "Fixtures that failed a pre-activation self-test.", registry=r
        )
        self.redis_reconnects = Counter(
            "pkg_redis_reconnect_count", "Reconnections to Redis after a loss.", registry=r
        )
        self.active_version = Gauge(
            "pkg_active_version",
            "1 for the snapshot version this sidecar evaluates with.",
            labelnames=["version"],
            registry=r,
        )
        self.cached_versions = Gauge(
            "pkg_cached_versions_count", "Evaluators kept for instant rollback.", registry=r
        )
        self.degraded = Gauge(
            "pkg_degraded_mode", "1 while the sidecar runs degraded, else 0.", registry=r
        )
        self.desired_epoch = Gauge(
            "pkg_desired_epoch", "The newest desired-state epoch seen.", registry=r
        )
        self.staleness = Gauge(
            "pkg_staleness_seconds",
            "Seconds since the desired level was last confirmed (Redis read or message).",
            registry=r,
        )
        self.stale = Gauge("pkg_stale", "1 while past the maximum staleness, else 0.", registry=r)
        self._version: str | None = None

    def set_active_version(self, version: str | None) -> None:
        if version == self._version:
            return
        if self._version is not None:
            self.active_version.remove(self._version)
        if version is not None:
            self.active_version.labels(version=version).set(1)
        self._version = version

    def bind(
        self,
        *,
        cached_versions: Callable[[], float],
        degraded: Callable[[], float],
        desired_epoch: Callable[[], float],
        staleness: Callable[[], float] | None = None,
        stale: Callable[[], float] | None = None,
    ) -> None:
        """Read these gauges from the manager at scrape time."""
        self.cached_versions.set_function(cached_versions)
        self.degraded.set_function(degraded)
        self.desired_epoch.set_function(desired_epoch)
        if staleness is not None:
            self.staleness.set_function(staleness)
        if stale is not None:
            self.stale.set_function(stale)
