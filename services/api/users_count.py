"""The guides' broadcast demo: one slow "database" read per interval, shared with every worker.

The master reads the users count once per interval and broadcasts it over the
cluster channel; workers answer ``GET /users/count`` from the last value they
got. In ``worker`` mode each worker polls the source itself instead, which costs
one read per worker per interval — the difference is counted at the source.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from scalecube.errors import DependencyUnavailable
from shared_cache.connection import RedisConnector

log = logging.getLogger("scalecube.api.users_count")

USERS_KEY = "scalecube:users"  # every user who ever logged in
READS_KEY = "scalecube:users:source_reads"  # how many times the "database" was asked
READERS_KEY = "scalecube:users:source_readers"  # ... and by which process (pid -> reads): who pays for them


class UsersDatabase:
    """Stands for the guides' database: a count that is slow to get, every read counted."""

    def __init__(self, connector: RedisConnector, delay: float) -> None:
        self.connector = connector
        self.delay = delay

    async def count(self) -> int:
        async with self.connector.operation("count users"):
            async with self.connector.client.pipeline(transaction=False) as pipe:
                _, _, count = await pipe.incr(READS_KEY).hincrby(READERS_KEY, str(os.getpid()), 1).scard(USERS_KEY).execute()
        await asyncio.sleep(self.delay)  # the cost of a real query, made visible
        return int(count)

    async def add(self, user: str) -> None:
        async with self.connector.operation("record user"):
            await self.connector.client.sadd(USERS_KEY, user)

    async def reads(self) -> int:
        async with self.connector.operation("read source counter"):
            return int(await self.connector.client.get(READS_KEY) or 0)


class UsersCount:
    """The value a worker answers with, and where it came from."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.value: int | None = None
        self.fetched_at: float | None = None  # wall clock of the read, so age is right across processes

    def update(self, payload: dict[str, Any]) -> None:
        self.value = int(payload["count"])
        self.fetched_at = float(payload["at"])

    def describe(self, interval: float) -> dict[str, Any]:
        if self.value is None or self.fetched_at is None:
            raise HTTPException(503, "the users count has not been read yet; try again shortly",
                                headers={"Retry-After": "1"})  # fmt: skip
        return {"count": self.value, "age_seconds": round(max(0.0, time.time() - self.fetched_at), 3),
                "source": self.source, "interval_seconds": interval}  # fmt: skip


async def read_once(database: UsersDatabase) -> dict[str, Any] | None:
    try:
        return {"count": await database.count(), "at": time.time()}
    except DependencyUnavailable as exc:
        log.warning("users count not refreshed: %s", exc)
        return None


async def poll_forever(database: UsersDatabase, holder: UsersCount, interval: float) -> None:
    """``worker`` mode (and outside a cluster): this process reads the source itself."""
    while True:
        payload = await read_once(database)
        if payload is not None:
            holder.update(payload)
        await asyncio.sleep(interval)


def broadcast_from_master(cluster: Any, database: UsersDatabase, interval: float) -> None:
    """In the master: read once per interval, tell every worker; new workers get the last value at once."""
    latest: dict[str, Any] = {}

    async def refresh() -> None:
        payload = await read_once(database)
        if payload is not None:
            latest.update(payload)
            cluster.broadcast({"users_count": payload})

    cluster.every(interval, refresh)
    cluster.on("listening", lambda worker: latest and worker.send({"users_count": dict(latest)}))


router = APIRouter(tags=["cloning"])


@router.get("/users/count")
async def users_count(request: Request) -> dict[str, Any]:
    return request.app.state.users_count.describe(request.app.state.settings.users_count_interval)
