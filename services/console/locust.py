"""Locust's own HTTP API (its web UI's): start a swarm (``POST /swarm``), stop it (``POST /stop``), and read
its live stats (``GET /stats/requests``). Locust unreachable is ``DependencyUnavailable("locust")``."""

from __future__ import annotations

import time
from typing import Any

import httpx

from kit.errors import DependencyUnavailable
from services.console.actions import ActionFailed, Say, StartSwarm, StopSwarm


class Locust:
    def __init__(self, url: str, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = httpx.request(method, self.url + path, timeout=10, **kwargs)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise DependencyUnavailable("locust", f"{path}: {exc or type(exc).__name__}"[:200]) from exc

    def stats(self) -> dict[str, Any]:
        report = self._call("GET", "/stats/requests")
        return {
            "state": report.get("state"),
            "users": report.get("user_count", 0),
            "rps": report.get("total_rps", 0.0),
            "fail_ratio": report.get("fail_ratio", 0.0),
            "workers": report.get("worker_count", 0),
        }

    def start(self, action: StartSwarm, say: Say) -> str:
        form = {
            "user_count": str(action.users),
            "spawn_rate": str(action.spawn_rate),
            "user_classes": [action.user_class],
        }
        answer = self._call("POST", "/swarm", data=form)
        if not answer.get("success"):
            raise ActionFailed(f"Locust refused the swarm: {answer.get('message', answer)}")
        started, deadline = time.monotonic(), time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            now = self.stats()
            if now["users"] >= action.users and now["rps"] > 0:
                return (
                    f"{now['users']} {action.user_class} users running after {time.monotonic() - started:.1f} s, "
                    f"{now['rps']:.0f} requests/s"
                )
            time.sleep(1)
        raise ActionFailed(f"{action.users} users not all running within {self.timeout:g} s")

    def stop(self, action: StopSwarm, say: Say) -> str:
        before = self.stats()
        answer = self._call("POST", "/stop")
        if not answer.get("success"):
            raise ActionFailed(f"Locust did not stop: {answer.get('message', answer)}")
        return f"swarm stopped ({before['users']} users were sending {before['rps']:.0f} requests/s)"
