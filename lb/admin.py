"""The balancer's admin port: ``/`` (status page), ``/status.json``, ``/metrics``, ``/healthz``.

Every page but ``/healthz`` (a liveness probe that says nothing) asks for HTTP basic auth,
user and password given by the caller (``lb.app`` reads them from the config and the
environment): a 401 JSON with ``WWW-Authenticate`` without them. There is no open mode.

Served by uvicorn inside the balancer's own event loop, so the handlers read
pools and counters on the thread that changes them (``async def`` everywhere:
a sync handler would run in a thread pool). ``admin_server`` builds that
server without any signal handling of its own: SIGTERM belongs to the balancer.

    server = admin_server(create_admin_app(state, password=secret), "127.0.0.1", 8404)
    task = asyncio.create_task(server.serve())
    ...
    server.should_exit = True; await task
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from lb.metrics import balancer_registry
from lb.stats import BalancerState
from lb.status_page import render_status_page


def status(state: BalancerState) -> dict[str, Any]:
    """Everything the admin port knows. ``state`` is a ``BalancerState`` or anything with ``pools``,
    ``stats`` and ``started_at``; ``discoveries``, ``health_checks`` and ``routes`` are shown when present."""
    discoveries = getattr(state, "discoveries", {})
    health_checks = getattr(state, "health_checks", {})
    pools = []
    for name, pool in state.pools.items():
        described = pool.describe()
        described["available"] = sum(1 for b in pool.backends.values() if b.available)
        discovery = discoveries.get(name)
        described["discovery"] = discovery.describe() if discovery else None
        checker = health_checks.get(name)
        described["health"] = checker.describe() if checker else None
        pools.append(described)
    return {
        "pid": os.getpid(),
        "started_at": state.started_at,
        "uptime": round(time.time() - state.started_at, 1),
        "stats": state.stats.snapshot(),
        "routes": [{"prefix": r.prefix, "upstream": r.upstream} for r in getattr(state, "routes", ())],
        "pools": pools,
    }


REALM = "scalecube lb admin"


def write_password_file(path: Path, password: str) -> None:
    """``password`` into ``path``, readable by this user only (0600, also when the file was there, looser)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(password + "\n")


class AdminLogin:
    """The dependency every protected page has: HTTP basic auth (FastAPI's parser), compared in constant time."""

    def __init__(self, user: str, password: str) -> None:
        if not password:
            raise ValueError("the admin port needs a password: it is never open")
        self._user, self._password = user.encode(), password.encode()
        self._basic = HTTPBasic(auto_error=False, realm=REALM)

    async def __call__(self, request: Request) -> None:
        credentials: HTTPBasicCredentials | None = await self._basic(request)
        ok = credentials is not None and all(
            [  # both compared, whatever the first gives
                secrets.compare_digest(credentials.username.encode(), self._user),
                secrets.compare_digest(credentials.password.encode(), self._password),
            ]
        )
        if not ok:
            raise HTTPException(
                401,
                "the admin port needs its user and password (HTTP basic auth)",
                headers={"WWW-Authenticate": f'Basic realm="{REALM}"'},
            )


def create_admin_app(state: BalancerState, *, password: str, user: str = "admin") -> FastAPI:
    login = Depends(AdminLogin(user, password))
    app = FastAPI(title="scalecube lb admin", docs_url=None, redoc_url=None, openapi_url=None)
    registry = balancer_registry(state)

    @app.exception_handler(StarletteHTTPException)
    async def json_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # As the services answer: {"error", "message"} (FastAPI's own would be {"detail"}).
        error = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return JSONResponse(
            {"error": error, "message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.get("/status.json", dependencies=[login])
    async def status_json() -> JSONResponse:
        return JSONResponse(status(state))

    @app.get("/", response_class=HTMLResponse, dependencies=[login])
    async def status_page() -> HTMLResponse:
        return HTMLResponse(render_status_page(status(state)), headers={"cache-control": "no-store"})

    @app.get("/metrics", dependencies=[login])
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


class AdminServer(uvicorn.Server):
    """uvicorn that leaves signals alone.

    ``Server.serve`` wraps itself in ``capture_signals``, which replaces the SIGINT/SIGTERM
    handlers with its own for as long as it runs (uvicorn 0.54 has no switch for it). Inside
    the balancer that would steal the balancer's graceful stop, so capture nothing; the
    balancer stops this server with ``should_exit = True``.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def admin_server(app: Any, host: str, port: int) -> AdminServer:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",  # the app has no startup work; the balancer owns the lifecycle
        log_config=None,  # keep the balancer's logging as it configured it
        access_log=False,
        server_header=False,
        ws="none",
        timeout_graceful_shutdown=1,  # a scrape in progress must not hold up the balancer's exit
    )
    return AdminServer(config)
