"""Liveness (``/healthz``) and readiness (``/readyz``) endpoints of a service.

Liveness never touches a dependency: a Redis outage must not get healthy
workers restarted. Readiness reports each dependency but does not fail on one:
every replica shares the same Redis, auth and shards, so a probe that failed on
them would eject every replica at once and turn "sessions are down" into "the site
is down". A replica that runs serves *something* (``/``, ``/cpu``, the last users
count...), and the routes that need a missing dependency answer 503 naming it.
So ``/readyz`` answers 200 with ``"status": "degraded"`` and the missing names.

Probes should use the cluster master's health port (``cluster.health``), which
answers even when every worker is busy; this endpoint is for people and dashboards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter
from starlette.responses import JSONResponse

log = logging.getLogger("scalecube.health")

ReadinessCheck = Callable[[], Awaitable[bool]]
DEFAULT_CHECK_TIMEOUT = 1.0


def health_router(
    checks: Mapping[str, ReadinessCheck] | None = None, *, timeout: float = DEFAULT_CHECK_TIMEOUT
) -> APIRouter:
    """``checks`` name async callables answering "is this dependency usable?"."""
    checks = dict(checks or {})
    router = APIRouter()

    @router.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        names = list(checks)
        outcomes = await asyncio.gather(*(_passes(name, checks[name], timeout) for name in names))
        results = dict(zip(names, outcomes, strict=True))
        failing = [name for name, ok in results.items() if not ok]
        if failing:
            message = "serving; unavailable: " + ", ".join(failing) + " (the routes that need it answer 503 naming it)"
            return JSONResponse({"status": "degraded", "checks": results, "message": message})
        return JSONResponse({"status": "ready", "checks": results})

    return router


async def _passes(name: str, check: ReadinessCheck, timeout: float) -> bool:
    """A check that raises or outlives ``timeout`` has failed: a hung dependency is not ready."""
    try:
        return bool(await asyncio.wait_for(check(), timeout))
    except TimeoutError:
        log.warning("readiness check %r timed out after %gs", name, timeout)
    except Exception as exc:
        log.warning("readiness check %r failed: %s", name, exc)
    return False
