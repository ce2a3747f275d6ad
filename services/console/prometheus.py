"""Prometheus's HTTP API, as the console reads it: instant queries of the recording rules, and targets.

An unreachable or failing Prometheus is ``DependencyUnavailable("prometheus")`` (a 503 naming it).
"""

from __future__ import annotations

import math
from typing import Any

import httpx

from kit.errors import DependencyUnavailable

QUERY_TIMEOUT = 3.0

Labels = dict[str, str]


class Prometheus:
    def __init__(
        self, url: str, *, timeout: float = QUERY_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout, transport=transport)

    async def _get(self, path: str, **params: str) -> Any:
        try:
            response = await self._http.get(path, params=params)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise DependencyUnavailable("prometheus", f"{path}: {exc or type(exc).__name__}"[:200]) from exc
        if response.status_code != 200 or body.get("status") != "success":
            raise DependencyUnavailable("prometheus", f"{path}: {body.get('error', response.status_code)}"[:200])
        return body["data"]

    async def query(self, expr: str, at: float | None = None) -> list[tuple[Labels, float]]:
        """An instant vector at ``at`` (seconds since the epoch; Prometheus's now if None): each series' labels and
        value (NaN, a ratio with no request, is dropped)."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = await self._get("/api/v1/query", **params)
        series = [(dict(r["metric"]), float(r["value"][1])) for r in data["result"]]
        return [(labels, value) for labels, value in series if not math.isnan(value)]

    async def targets(self) -> list[dict[str, Any]]:
        """The active targets: job, service, instance, endpoint, health (up/down/unknown), last error."""
        data = await self._get("/api/v1/targets", state="active")
        return [
            {
                "job": t["labels"].get("job", ""),
                "service": t["labels"].get("service", ""),
                "instance": t["labels"].get("instance", ""),
                "endpoint": t["labels"].get("endpoint", ""),
                "health": t["health"],
                "error": t.get("lastError", ""),
            }
            for t in data["activeTargets"]
        ]

    async def close(self) -> None:
        await self._http.aclose()
