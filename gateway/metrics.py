"""What the gateway measures, and ``GET /metrics`` in Prometheus' text format.

The metrics live in their own ``CollectorRegistry`` (not the process-wide
one). The proxy's hot path stays cheap: each function's labelled children are
bound once and kept in a :class:`FunctionMetrics`, in-flight requests are a
plain integer, and the gauges that describe the present (in-flight requests,
replicas by state) are read from the registry only when scraped. Each
function also keeps the counts of its last minute of requests, for the status
page.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Iterable

import falcon
import falcon.asgi
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from gateway.registry import Registry, Replica

ERROR_KINDS = ("no_replica", "timeout", "connect", "replica_5xx")
REPLICA_STATES = ("healthy", "unhealthy", "draining")
DIRECTIONS = ("up", "down")
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RECENT_SECONDS = 60


def replica_state(replica: Replica) -> str:
    """``draining``, ``healthy`` or ``unhealthy``: what a replica is doing now."""
    if replica.draining:
        return "draining"
    return "healthy" if replica.healthy else "unhealthy"


class RecentCounts:
    """Requests and errors of the last minute, in one-second slots (a ring)."""

    def __init__(self, seconds: int = RECENT_SECONDS) -> None:
        self.seconds = seconds
        self._stamps = [-1] * seconds
        self._requests = [0] * seconds
        self._errors = [0] * seconds

    def add(self, error: bool, now: float) -> None:
        """Count one request that ended at ``now`` (``time.monotonic()``)."""
        second = int(now)
        slot = second % self.seconds
        if self._stamps[slot] != second:
            self._stamps[slot], self._requests[slot], self._errors[slot] = second, 0, 0
        self._requests[slot] += 1
        self._errors[slot] += error

    def totals(self, now: float) -> tuple[int, int]:
        """Requests and errors of the last ``seconds`` seconds up to ``now``."""
        second = int(now)
        live = [slot for slot, stamp in enumerate(self._stamps) if 0 <= second - stamp < self.seconds]
        return sum(self._requests[slot] for slot in live), sum(self._errors[slot] for slot in live)


class FunctionMetrics:
    """One function's measures: its bound Prometheus children, its in-flight count and its last minute."""

    def __init__(self, metrics: Metrics, name: str) -> None:
        self.name = name
        self.in_flight = 0
        self.last_request = -math.inf
        self.recent = RecentCounts()
        self.errors = {kind: metrics.errors.labels(name, kind) for kind in ERROR_KINDS}
        self.duration = metrics.duration.labels(name)
        self.queue_wait = metrics.queue_wait.labels(name)
        self.cold_starts = metrics.cold_starts.labels(name)
        self.decisions = {direction: metrics.decisions.labels(name, direction) for direction in DIRECTIONS}
        self.desired = metrics.desired.labels(name)
        self._family = metrics.requests
        self._requests: dict[tuple[str, int], Counter] = {}

    def started(self) -> float:
        """Count a request in; return its start (``time.monotonic()``)."""
        now = time.monotonic()
        self.in_flight += 1
        self.last_request = now
        return now

    def finished(self, started: float, version: str, code: int) -> None:
        """Count a request out: answered ``code`` by ``version`` (empty when the gateway answered)."""
        now = time.monotonic()
        self.in_flight -= 1
        key = (version, code)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self._family.labels(self.name, version, str(code))
        counter.inc()
        self.duration.observe(now - started)
        self.recent.add(code >= 500, now)


class _Present(Collector):
    """The gauges of the present, read at scrape time: in-flight requests and replicas by state."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        in_flight = GaugeMetricFamily(
            "tombola_in_flight", "Requests the gateway is handling now, per function.", labels=["function"]
        )
        replicas = GaugeMetricFamily(
            "tombola_replicas", "Registered replicas per function and state.", labels=["function", "state"]
        )
        for manifest in self.metrics.registry.functions():
            name = manifest.name
            in_flight.add_metric([name], self.metrics.function(name).in_flight)
            states = collections.Counter(replica_state(replica) for replica in self.metrics.registry.replicas(name))
            for state in REPLICA_STATES:
                replicas.add_metric([name, state], states[state])
        return [in_flight, replicas]


class Metrics:
    """The gateway's Prometheus metrics and each function's :class:`FunctionMetrics`."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.prometheus = CollectorRegistry()
        self.requests = Counter(
            "tombola_requests", "Requests answered, per function, version of the replica and status code.",
            ["function", "version", "code"], registry=self.prometheus,
        )
        self.errors = Counter(
            "tombola_request_errors", "Requests that failed, per function and kind of failure.",
            ["function", "kind"], registry=self.prometheus,
        )
        self.duration = Histogram(
            "tombola_request_duration_seconds", "Time to answer a request, per function.",
            ["function"], buckets=DURATION_BUCKETS, registry=self.prometheus,
        )
        self.queue_wait = Histogram(
            "tombola_queue_wait_seconds", "Time a request waited for a replica (cold starts included).",
            ["function"], buckets=WAIT_BUCKETS, registry=self.prometheus,
        )
        self.cold_starts = Counter(
            "tombola_cold_starts", "Times requests found no replica and waited for one to start.",
            ["function"], registry=self.prometheus,
        )
        self.decisions = Counter(
            "tombola_autoscaler_decisions", "Replica count changes made by the autoscaler.",
            ["function", "direction"], registry=self.prometheus,
        )
        self.desired = Gauge(
            "tombola_autoscaler_desired_replicas", "Replicas the autoscaler wants now, per function.",
            ["function"], registry=self.prometheus,
        )
        self.prometheus.register(_Present(self))
        self._functions: dict[str, FunctionMetrics] = {}

    def function(self, name: str) -> FunctionMetrics:
        """The measures of the function ``name`` (a function the registry knows)."""
        found = self._functions.get(name)
        if found is None:
            found = self._functions[name] = FunctionMetrics(self, name)
        return found


class MetricsResource:
    """``GET /metrics``: every metric, in the text format the scraper asks for."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        encode, content_type = choose_encoder(req.get_header("Accept") or "")
        resp.content_type = content_type
        resp.cache_control = ["no-store"]
        resp.data = encode(self.metrics.prometheus)
