"""Prometheus's HTTP API for the end-to-end tests: its targets and instant queries."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import httpx
import pytest


def require_prometheus_binary(name: str) -> str:
    """``prometheus`` or ``promtool`` (Debian's ``prometheus`` package ships both): skipped, saying why, without
    it — but a failure under CI, which installs it."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {name} is not installed (Debian's prometheus package)", pytrace=False)
        pytest.skip(reason=f"{name} is not installed here (apt-get install prometheus)")
    return found


# docker-compose.yml's clusters: Prometheus scrapes each replica twice (app :8000, master :8001).
CLUSTER_JOBS = ("api", "auth", "router", "shard-a", "shard-b")


@dataclass(frozen=True)
class Target:
    job: str
    service: str
    instance: str
    endpoint: str
    health: str
    error: str


@dataclass
class PrometheusApi:
    url: str

    def _get(self, path: str, **params: str) -> dict:
        response = httpx.get(self.url + path, params=params, timeout=10)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def targets(self) -> list[Target]:
        return [
            Target(
                job=t["labels"].get("job", ""),
                service=t["labels"].get("service", ""),
                instance=t["labels"].get("instance", ""),
                endpoint=t["labels"].get("endpoint", ""),
                health=t["health"],
                error=t.get("lastError", ""),
            )
            for t in self._get("/api/v1/targets", state="active")["activeTargets"]
        ]

    def query(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant query's vector: each series' labels (sorted pairs) -> its value."""
        result = self._get("/api/v1/query", query=expr)["result"]
        return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in result}

    def instances(self, job: str) -> set[str]:
        """The replicas (addresses) of ``job`` whose every target is up."""
        targets = [t for t in self.targets() if t.job == job]
        down = {t.instance for t in targets if t.health != "up"}
        return {t.instance for t in targets} - down
