"""``create_service_app`` wires the kit: routes, middleware order, settings, lifespan."""

from __future__ import annotations

from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from starlette.middleware.base import BaseHTTPMiddleware

from services.common.app import create_service_app
from services.common.errors import InternalErrorMiddleware
from services.common.metrics import MetricsMiddleware
from services.common.middleware import BodyLimitMiddleware, ServedByMiddleware
from services.common.settings import ServiceSettings


def test_middlewares_are_pure_asgi_in_the_deliberate_order() -> None:
    app = create_service_app("svc", ServiceSettings.load(max_body_bytes=4096))

    stack = [middleware.cls for middleware in app.user_middleware]  # outermost first

    assert stack == [ServedByMiddleware, MetricsMiddleware, BodyLimitMiddleware, InternalErrorMiddleware]
    assert not any(issubclass(cls, BaseHTTPMiddleware) for cls in stack)
    assert app.user_middleware[2].kwargs == {"max_bytes": 4096}


def test_health_and_metrics_routes_are_served(serve) -> None:
    url = serve(create_service_app("svc", ServiceSettings.load()))

    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(url + "/readyz").status_code == 200
    assert "http_requests_total" in httpx.get(url + "/metrics").text


def test_lifespan_runs_and_settings_are_reachable_from_routes(serve) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        events.append("startup")
        yield
        events.append("shutdown")

    settings = ServiceSettings.load(session_backend="memory")
    app = create_service_app("svc", settings, lifespan=lifespan)

    @app.get("/backend")
    async def backend(request: Request) -> dict[str, str]:
        return {"backend": request.app.state.settings.session_backend, "name": request.app.state.service_name}

    url = serve(app)

    assert events == ["startup"]
    assert httpx.get(url + "/backend").json() == {"backend": "memory", "name": "svc"}
