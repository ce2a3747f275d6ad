"""Locust's web UI driven the way its page drives it: ``POST /swarm``, ``GET /stats/requests``, ``GET /tasks``,
``POST /stop`` (``GET /stop`` is 405 in 2.47). A swarm of every class, checked on what it sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

# The request names each class's tasks report (loadtests.locust.users); MixedUser reports all of them.
ENDPOINTS = {
    "CloningUser": ("/", "/cpu"),
    "SessionUser": ("/session/login", "/session/me"),
    "SplittingUser": ("/users", "/users/[id]", "/users?country=[cc]"),
    "AuthUser": ("/auth/register", "/auth/login"),
}
ALL_CLASSES = ("CloningUser", "SessionUser", "SplittingUser", "AuthUser", "MixedUser")


@dataclass
class Swarm:
    """What a swarm sent: per request name, requests and failures; the errors Locust recorded; the classes it ran."""

    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    classes: set[str] = field(default_factory=set)
    started: dict[str, Any] = field(default_factory=dict)

    def requests(self, name: str) -> int:
        return sum(row["requests"] for key, row in self.stats.items() if key == name or key.startswith(name + " ["))

    @property
    def failures(self) -> int:
        return sum(row["failures"] for row in self.stats.values())

    def silent(self, classes: tuple[str, ...]) -> dict[str, list[str]]:
        """Of each class's endpoints, those that got no request (a class with every one served is left out)."""
        missing = {cls: [name for name in ENDPOINTS.get(cls, ()) if self.requests(name) == 0] for cls in classes}
        return {cls: names for cls, names in missing.items() if names}

    def explain(self) -> str:
        return f"started: {self.started}\nclasses: {sorted(self.classes)}\nstats: {self.stats}\nerrors: {self.errors}"


class LocustWeb:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=15, trust_env=False)

    def close(self) -> None:
        self.http.close()

    def wait_ready(self, workers: int = 0, timeout: float = 120) -> None:
        """Until the UI answers (and, for a master, ``workers`` workers have connected)."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                report = self.http.get("/stats/requests").json()
                if report.get("worker_count", 0) >= workers:
                    return
                last = report.get("worker_count")
            except (httpx.HTTPError, ValueError) as exc:
                last = exc
            time.sleep(0.5)
        raise AssertionError(f"Locust's web UI not ready within {timeout} s (last: {last!r})")

    def swarm(
        self,
        classes: tuple[str, ...],
        *,
        users: int,
        seconds: float,
        host: str | None = None,
        spawn_rate: float | None = None,
    ) -> Swarm:
        """Start ``users`` of ``classes`` (the page's form), let them run ``seconds``, stop; what they sent."""
        form: dict[str, str | list[str]] = {
            "user_count": str(users),
            "spawn_rate": str(spawn_rate or users),
            "user_classes": list(classes),
        }
        if host:
            form["host"] = host
        started = self.http.post("/swarm", data=form).json()
        assert started.get("success"), started
        seen: set[str] = set()
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(1)
                per_class = self.http.get("/tasks").json().get("per_class", {})
                seen |= {name for name, ratio in per_class.items() if ratio.get("ratio", 0) > 0}
        finally:
            stopped = self.http.post("/stop").json()
        assert stopped.get("success"), stopped
        report = self.http.get("/stats/requests").json()
        stats = {
            row["name"]: {"requests": row["num_requests"], "failures": row["num_failures"]}
            for row in report["stats"]
            if row["name"] != "Aggregated"
        }
        return Swarm(stats, report.get("errors", []), seen, started)
