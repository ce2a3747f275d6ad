"""The guides' broadcast demo: one slow read of the users count per interval, shared with every worker.

The master reads the users count once per interval and broadcasts it over the
cluster channel; workers answer ``GET /users/count`` from the last value they
got. In ``worker`` mode each worker polls the source itself instead, which costs
one read per worker per interval — the difference is counted at the source.

Where the number comes from, how each read is counted and slowed, and the master's side of
the broadcast are in ``services.api.users_source`` (the master imports that without FastAPI);
this module is the workers' side: the last state they hold and ``GET /users/count``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from kit.errors import DependencyUnavailable
from services.api.users_source import (
    READERS_KEY,
    READS_KEY,
    USERS_KEY,
    CountedSource,
    LoginsSet,
    Reading,
    RouterUsers,
    UsersSource,
)
from services.common.errors import error_responses

__all__ = [
    "READERS_KEY",
    "READS_KEY",
    "USERS_KEY",
    "CountedSource",
    "LoginsSet",
    "Reading",
    "RouterUsers",
    "UsersCount",
    "UsersSource",
    "poll_forever",
    "router",
]


class UsersCount:
    """What a worker answers with: the last state it got, how it got it (``source``)."""

    def __init__(self, source: str, origin: str) -> None:
        self.source = source  # "master broadcast" | "worker poll": how the value reached this worker
        self.state: dict[str, Any] = {"count": None, "at": None, "origin": origin, "failed": None}

    def update(self, state: dict[str, Any]) -> None:
        self.state = dict(state)

    def describe(self, interval: float) -> dict[str, Any]:
        count, at, failed = self.state["count"], self.state["at"], self.state["failed"]
        if count is None or at is None:
            if failed is not None:  # never read, and the last attempt failed: 503 naming the part
                raise DependencyUnavailable(failed["dependency"], "no users count read yet")
            raise HTTPException(
                503, "the users count has not been read yet; try again shortly", headers={"Retry-After": "1"}
            )
        answer = {
            "count": int(count),
            "age_seconds": round(max(0.0, time.time() - at), 3),
            "source": self.source,
            "interval_seconds": interval,
            "origin": self.state["origin"],
            "read_at": _iso(at),
            "stale": failed is not None,
            "stale_reason": None,
        }
        if failed is not None:
            answer["stale_reason"] = (
                f"{failed['dependency']} unavailable at the last read ({_iso(failed['at'])}): "
                "this is the last value read"
            )
        return answer


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def poll_forever(reading: Reading, holder: UsersCount, interval: float) -> None:
    """``worker`` mode (and outside a cluster): this process reads the source itself."""
    while True:
        holder.update(await reading.refresh())
        await asyncio.sleep(interval)


router = APIRouter(tags=["cloning"])


@router.get(
    "/users/count",
    responses=error_responses(
        503,
        why={503: "no count read yet: the source (`router` or `redis`, named when its read failed) has not answered"},
    ),
)
async def users_count(request: Request) -> dict[str, Any]:
    return request.app.state.users_count.describe(request.app.state.settings.users_count_interval)
