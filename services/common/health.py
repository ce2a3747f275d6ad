"""Liveness (``/healthz``) and readiness (``/readyz``) endpoints.

Liveness never touches a dependency: a Redis outage must not get healthy
workers restarted. Readiness does, so balancers stop sending traffic to a
replica that can only answer 503.
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


def health_router(checks: Mapping[str, ReadinessCheck] | None = None, *,
                  timeout: float = DEFAULT_CHECK_TIMEOUT) -> APIRouter:  # fmt: skip
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
            message = "not ready: " + ", ".join(f"{name} unavailable" for name in failing)
            return JSONResponse({"status": "unavailable", "checks": results, "message": message}, status_code=503)
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
