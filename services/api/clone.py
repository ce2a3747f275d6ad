"""The cloning demo: who served me, and some CPU work to spread over cores."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query

from services.common.identity import current_identity

router = APIRouter(tags=["cloning"])

# About 3 ms of pure-Python work on the machines this was measured on (2 cores, CPython 3.11).
DEFAULT_ITERATIONS = 90_000
MAX_ITERATIONS = 10_000_000  # the guides' own loop (1e7): ~0.35 s here; more is a 422, never a hung worker


@router.get("/")
async def whoami() -> dict[str, object]:
    me = current_identity()
    return {
        "message": f"Handled by process {me.pid}",
        "pid": me.pid,
        "worker": me.worker_id,
        "slot": me.slot,
        "host": me.host,
    }


def burn(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i
    return total


@router.get("/cpu")
async def cpu(iterations: int = Query(DEFAULT_ITERATIONS, ge=1, le=MAX_ITERATIONS)) -> dict[str, object]:
    # Deliberately on the event loop, like the guides' Node loop: CPU work blocks this
    # worker, so only more processes (more cores) serve more of it.
    started = time.perf_counter()
    result = burn(iterations)
    me = current_identity()
    return {
        "iterations": iterations,
        "result": result,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 3),
        "pid": me.pid,
        "worker": me.worker_id,
    }
