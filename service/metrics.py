"""Prometheus metrics, kept in a registry that belongs to one app (no process-wide state)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0)


class Metrics:
    """The service's counters and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("avsearch_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("avsearch_request_seconds", "time to answer a request",
                                 ["method", "route"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.errors = Counter("avsearch_errors", "requests answered with an error status",
                              ["status", "route"], registry=self.registry)
        self.stage = Histogram("avsearch_query_stage_seconds",
                               "time a query spent decoding, embedding and searching",
                               ["stage"], buckets=LATENCY_BUCKETS, registry=self.registry)

    def watch_index(self, read: Callable[[], dict[str, float]]) -> None:
        """Report the index's sizes (read at scrape time) as gauges."""
        self.registry.register(_IndexCollector(read))


class _IndexCollector(Collector):
    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily("avsearch_index_vectors", "vectors in the serving index",
                                  labels=["modality"])
        values = self._read()
        for modality, count in values.items():
            if modality != "items":
                gauge.add_metric([modality], count)
        yield gauge
        items = GaugeMetricFamily("avsearch_index_items", "items in the serving index")
        items.add_metric([], values.get("items", 0))
        yield items

    def describe(self) -> Iterable[Metric]:
        return []


class MetricsMiddleware:
    """Counts every request and times it, labelled by the route's template (not the raw path,
    so that item ids do not make a new series each)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
            if status >= 400:
                self.metrics.errors.labels(str(status), route).inc()
