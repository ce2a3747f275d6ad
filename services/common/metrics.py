"""Request metrics for Prometheus, per worker, aggregated across a cluster's workers.

In a cluster every worker exports ``PROMETHEUS_MULTIPROC_DIR`` before Python
starts, so prometheus_client keeps its values in files there, and a scrape
through any one worker reads every worker's files: one scrape, whole cluster.
Without it (one process) the default in-memory registry is served.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.identity import current_identity

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "OTHER"
# Methods are client-chosen: anything else is folded into OTHER to bound label cardinality.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Fast endpoints answer in well under 5 ms: start the buckets at 1 ms.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class HttpMetrics:
    requests: Counter
    duration: Histogram


@functools.cache
def http_metrics() -> HttpMetrics:
    """Created on first use, so the value class follows PROMETHEUS_MULTIPROC_DIR and a
    re-created app in the same process reuses the already registered metrics."""
    return HttpMetrics(
        requests=Counter("http_requests_total", "HTTP requests answered.", ["method", "route", "status", "worker"]),
        duration=Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["method", "route", "worker"],
            buckets=DURATION_BUCKETS,
        ),
    )


def route_template(scope: Scope) -> str:
    """The matched route's template (``/users/{id}``), never the raw path: bounded cardinality."""
    route = scope.get("route")
    return getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED_ROUTE


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template, status and worker slot."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.metrics = http_metrics()
        # The slot is fixed for the life of a worker process.
        self.worker = str(current_identity().slot)
        # labels() takes a lock and validates on every call; the label sets are few, so keep the children.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # if the app raises before answering, the server sends a 500

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            elapsed = time.perf_counter() - started
            method = scope["method"] if scope["method"] in KNOWN_METHODS else OTHER_METHOD
            counter, histogram = self._series(method, route_template(scope), status)
            counter.inc()
            histogram.observe(elapsed)

    def _series(self, method: str, route: str, status: int) -> tuple[Counter, Histogram]:
        key = (method, route, status)
        series = self._children.get(key)
        if series is None:
            series = (
                self.metrics.requests.labels(method, route, str(status), self.worker),
                self.metrics.duration.labels(method, route, self.worker),
            )
            self._children[key] = series
        return series


def scrape() -> bytes:
    """The exposition text: every worker's series in a cluster, this process's otherwise."""
    if os.environ.get(MULTIPROC_DIR_ENV):
        # A fresh registry per scrape: the collector reads the files as they are now.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def metrics_router() -> APIRouter:
    router = APIRouter()

    # A plain def: FastAPI runs it in the threadpool, so reading the files never blocks the loop.
    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(scrape(), media_type=CONTENT_TYPE_LATEST)

    return router
