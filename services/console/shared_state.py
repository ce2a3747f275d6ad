"""The shared state panel's sources the metrics do not hold: sessions in the sessions Redis (counted by SCAN,
as the api stores them) and users per shard (the router's ``GET /shards``). A source that is down is
reported down in the panel; the rest still shows."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from kit.errors import DependencyUnavailable
from shared_cache.connection import RedisConnector

SESSION_PATTERN = "scalecube:session:*"  # shared_cache.sessions' default prefix
SCAN_BATCH = 1000
MAX_SCANNED = 200_000  # a bound on one count: past it the panel says "≥"


class SharedState:
    def __init__(self, connector: RedisConnector, router_url: str) -> None:
        self._redis = connector
        self._router = httpx.AsyncClient(base_url=router_url.rstrip("/"), timeout=2.0)

    async def sessions(self) -> dict[str, Any]:
        count = 0
        async with self._redis.operation("count sessions"):
            async for _ in self._redis.client.scan_iter(match=SESSION_PATTERN, count=SCAN_BATCH):
                count += 1
                if count >= MAX_SCANNED:
                    return {"status": "up", "count": count, "capped": True}
        return {"status": "up", "count": count, "capped": False}

    async def shards(self) -> dict[str, Any]:
        try:
            response = await self._router.get("/shards")
            response.raise_for_status()
            report = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return {"status": "down", "error": f"router: {exc or type(exc).__name__}"[:200]}
        shards = report.get("shards", {})
        return {
            "status": "up",
            "shards": {name: {"status": s.get("status"), "users": s.get("users")} for name, s in shards.items()},
        }

    async def snapshot(self) -> dict[str, Any]:
        sessions, shards = await asyncio.gather(self._sessions_or_down(), self.shards())
        return {"sessions": sessions, "shards": shards}

    async def _sessions_or_down(self) -> dict[str, Any]:
        try:
            return await self.sessions()
        except DependencyUnavailable as exc:
            return {"status": "down", "error": str(exc)[:200]}

    async def close(self) -> None:
        await self._router.aclose()
        await self._redis.close()
