"""The console (``scalecube serve services.console.app:app --workers 1``): one page that shows the cube live —
topology, per-container and per-worker rates and latencies, shared state — and acts on it, each action and
its measured effect in a timeline.

It runs ONE worker: the timeline and the actions under way are its in-memory state. The page polls
``GET /api/state`` every second (simplest robust: no stream to resume after a restart or a proxy's timeout);
the numbers come from Prometheus (PROMETHEUS_URL: its recording rules, and for the live charts its raw counters
over a few seconds, each chart with its data's sample time: panels.py), the containers from the Docker engine
(its socket; COMPOSE_PROJECT, or the console's own project), the sessions from the sessions Redis, the users
per shard from the router, the swarm from Locust's web API. A source that is down is named in the answer's
``unavailable`` and the rest still shows. Actions are ``POST /api/actions/<kind>`` with a JSON body (invalid:
422 naming the field) answered 202 with the action's id; its effect lands in the timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query
from fastapi.staticfiles import StaticFiles
from starlette.responses import FileResponse, JSONResponse

from kit.errors import DependencyUnavailable
from services.common.app import create_service_app
from services.common.errors import error_responses
from services.console import panels
from services.console.access import BasicAuthMiddleware
from services.console.actions import (
    Backend,
    KillContainer,
    KillWorker,
    RollingRestart,
    Runner,
    Scale,
    StartSwarm,
    StopRedis,
    StopSwarm,
)
from services.console.docker_backend import DockerBackend
from services.console.local_backend import LocalBackend
from services.console.locust import Locust
from services.console.prometheus import Prometheus
from services.console.settings import ConsoleSettings
from services.console.shared_state import SharedState
from services.console.timeline import Timeline

STATIC = Path(__file__).parent / "static"

settings = ConsoleSettings.load()
prometheus = Prometheus(settings.prometheus_url)
shared = SharedState(settings.redis_connector(), settings.router_url)
locust = Locust(settings.locust_url, timeout=settings.console_action_timeout)
timeline = Timeline()
runner = Runner(timeline)


def make_backend() -> Backend:
    if settings.console_backend == "local":
        return LocalBackend(settings.console_state_dir, timeout=settings.console_action_timeout)
    return DockerBackend(settings.compose_project, timeout=settings.console_action_timeout)


class Topology:
    """The stack's containers (or local processes), read at most once per CONSOLE_TOPOLOGY_TTL however many
    pages poll."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._backend: Backend | None = None
        self._read: tuple[float, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    @property
    def backend(self) -> Backend:
        if self._backend is None:  # the engine may come after the console: connect on first use
            self._backend = make_backend()
        return self._backend

    async def read(self) -> dict[str, Any]:
        async with self._lock:
            if self._read is None or time.monotonic() - self._read[0] > self.ttl:
                self._read = (time.monotonic(), await asyncio.to_thread(lambda: self.backend.topology()))
            return self._read[1]


topology = Topology(settings.console_topology_ttl)


async def _backend_ready() -> bool:
    await topology.read()
    return True


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await prometheus.close()
        await shared.close()


app = create_service_app("console", settings, readiness={settings.console_backend: _backend_ready}, lifespan=lifespan)
password = settings.console_password.get_secret_value() if settings.console_password else None
app.add_middleware(BasicAuthMiddleware, password=password)  # outermost: nothing answers before it
app.mount("/static", StaticFiles(directory=STATIC), name="static")


@app.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def _part(unavailable: dict[str, str], read: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await read()
    except DependencyUnavailable as exc:
        unavailable[exc.dependency] = exc.detail or str(exc)
        return None


@app.get("/api/state")
async def state(after: int = Query(default=0, ge=0, description="timeline events after this id")) -> dict[str, Any]:
    """Everything the page shows, now; the timeline's events after ``after``."""
    unavailable: dict[str, str] = {}
    parts = await asyncio.gather(
        _part(unavailable, topology.read),
        _part(unavailable, lambda: panels.snapshot(prometheus)),
        _part(unavailable, shared.snapshot),
        _part(unavailable, lambda: asyncio.to_thread(locust.stats)),
    )
    return {
        "time": time.time(),
        "topology": parts[0],
        "metrics": parts[1],
        "shared": parts[2],
        "locust": parts[3],
        "timeline": timeline.since(after),
        "unavailable": unavailable,
    }


@app.get("/api/metrics", responses=error_responses(503))
async def metrics_now() -> dict[str, Any]:
    """The panels' numbers alone (503 naming prometheus when it does not answer)."""
    return await panels.snapshot(prometheus)


@app.get("/api/targets", responses=error_responses(503))
async def targets() -> list[dict[str, Any]]:
    """Prometheus's scrape targets and whether each is up."""
    return await prometheus.targets()


ACCEPTED = {202: {"description": "started; its effect lands in the timeline under this id"}}


def _accepted(action_id: str) -> JSONResponse:
    return JSONResponse({"id": action_id}, status_code=202)


@app.post("/api/actions/scale", status_code=202, responses=ACCEPTED)
async def scale(action: Scale) -> JSONResponse:
    return _accepted(runner.start(action, lambda say: topology.backend.scale(action, say)))


@app.post("/api/actions/kill-container", status_code=202, responses=ACCEPTED)
async def kill_container(action: KillContainer) -> JSONResponse:
    return _accepted(runner.start(action, lambda say: topology.backend.kill_container(action, say)))


@app.post("/api/actions/kill-worker", status_code=202, responses=ACCEPTED)
async def kill_worker(action: KillWorker) -> JSONResponse:
    return _accepted(runner.start(action, lambda say: topology.backend.kill_worker(action, say)))


@app.post("/api/actions/rolling-restart", status_code=202, responses=ACCEPTED)
async def rolling_restart(action: RollingRestart) -> JSONResponse:
    return _accepted(runner.start(action, lambda say: topology.backend.rolling_restart(action, say)))


@app.post("/api/actions/stop-redis", status_code=202, responses=ACCEPTED)
async def stop_redis(action: StopRedis) -> JSONResponse:
    return _accepted(runner.start(action, lambda say: topology.backend.stop_redis(action, say)))


@app.post("/api/actions/swarm-start", status_code=202, responses=ACCEPTED)
async def swarm_start(action: StartSwarm) -> JSONResponse:
    return _accepted(runner.start(action, lambda say: locust.start(action, say)))


@app.post("/api/actions/swarm-stop", status_code=202, responses=ACCEPTED)
async def swarm_stop(action: StopSwarm) -> JSONResponse:
    return _accepted(runner.start(action, lambda say: locust.stop(action, say)))
