"""``GET /metrics``: Prometheus exposition through prometheus_client, as OA serves it.

Each app has its own registry (tests build many apps in one process). Requests are
counted and timed per route template (not per raw path, so ids do not explode the label
set) by wrapping every route's endpoint; the rest is read when scraped: the log's head
(events appended), the read models' position and lag behind it, tasks handed out by type
(the tasks read model) and trees by state.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.http.routing import Api, Call
from api.http.service import Service
from projections import oa_queries as q

Endpoint = Callable[[Request], Awaitable[Response]]


class _LogAndReadModels(Collector):
    """What the service knows at scrape time."""

    def __init__(self, service: Service):
        self.service = service

    def collect(self) -> Iterator[Any]:
        service, runner = self.service, self.service.runner
        if service.engine is None or runner is None:
            return
        head = service.head()
        appended = CounterMetricFamily(
            "dataengine_events_appended", "events appended to the log (its head position)"
        )
        appended.add_metric([], head)
        yield appended
        position = GaugeMetricFamily(
            "dataengine_projection_position", "log position the read models include"
        )
        position.add_metric([], runner.position)
        yield position
        lag = GaugeMetricFamily(
            "dataengine_projection_lag_events", "events appended but not yet in the read models"
        )
        lag.add_metric([], max(0, head - runner.position))
        yield lag
        reader = service.reader()
        tasks = CounterMetricFamily(
            "dataengine_tasks_handed_out", "tasks handed out, by task type", labels=["type"]
        )
        for kind, count in sorted(q.tasks_by_type(reader).items()):
            tasks.add_metric([kind], count)
        yield tasks
        trees = GaugeMetricFamily(
            "dataengine_trees", "conversation trees by state", labels=["state"]
        )
        for state, count in q.state_counts(reader).items():
            trees.add_metric([state], count)
        yield trees


class Metrics:
    def __init__(self, service: Service):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "dataengine_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "dataengine_http_request_duration_seconds",
            "HTTP request latency by method and route template",
            ["method", "route"],
            registry=self.registry,
        )
        self.registry.register(_LogAndReadModels(service))

    def instrument(self, routes: list[Route]) -> list[Route]:
        """The same routes, each endpoint counted and timed under its path template."""
        return [
            Route(r.path, self._timed(r.path, r.endpoint), methods=sorted(r.methods or ()))
            for r in routes
        ]

    def _timed(self, template: str, endpoint: Endpoint) -> Endpoint:
        async def timed(request: Request) -> Response:
            started, status = time.perf_counter(), 500
            try:
                response = await endpoint(request)
                status = response.status_code
                return response
            finally:
                self.latency.labels(request.method, template).observe(time.perf_counter() - started)
                self.requests.labels(request.method, template, str(status)).inc()

        timed.__name__ = getattr(endpoint, "__name__", "endpoint")
        return timed

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def register(api: Api, metrics: Metrics) -> None:
    def scrape(call: Call) -> Response:  # in the threadpool: the collector reads the log
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    api.add(
        "GET",
        "/metrics",
        scrape,
        access="public",
        summary="Prometheus metrics: requests, latency, log and read models, tasks, trees",
        tag="meta",
    )
