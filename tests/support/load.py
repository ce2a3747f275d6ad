"""A small, bounded load generator for tests: threads, real HTTP, every outcome recorded.

Each request may use a fresh connection (like ``ab`` without -k, what the
guides measure) so connection-level balancing is exercised on every request.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class LoadResult:
    ok: int = 0
    failed: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    served_by: collections.Counter[str] = field(default_factory=collections.Counter)
    elapsed: float = 0.0

    @property
    def total(self) -> int:
        return self.ok + self.failed

    @property
    def failed_fraction(self) -> float:
        return self.failed / self.total if self.total else 0.0

    def __str__(self) -> str:
        rate = self.total / self.elapsed if self.elapsed else 0.0
        return (f"{self.total} requests in {self.elapsed:.1f}s ({rate:.0f}/s), {self.failed} failed "
                f"({self.failed_fraction:.2%}) {dict(self.errors)}")  # fmt: skip


class LoadGenerator:
    """Runs ``concurrency`` client threads until ``stop()``, ``max_requests`` or ``max_seconds``."""

    def __init__(self, url: str, *, concurrency: int = 8, keepalive: bool = False,
                 max_requests: int = 20_000, max_seconds: float = 60.0, timeout: float = 10.0) -> None:  # fmt: skip
        self.url = url
        self.concurrency = concurrency
        self.keepalive = keepalive
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.timeout = timeout
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = 0.0

    def _client(self) -> httpx.Client:
        limits = httpx.Limits(max_keepalive_connections=1 if self.keepalive else 0)
        return httpx.Client(timeout=self.timeout, limits=limits)

    def _run(self) -> None:
        with self._client() as client:
            while not self._stop.is_set():
                if time.monotonic() - self._started > self.max_seconds:
                    return
                with self._lock:
                    if self.result.total >= self.max_requests:
                        return
                outcome, served = None, None
                try:
                    response = client.get(self.url)
                    if response.status_code != 200:
                        # A failure by its status: a balancer's 502/503 page is HTML, not the app's JSON.
                        outcome = f"HTTP {response.status_code}"
                    else:
                        served = response.headers.get("x-served-by") or str(response.json().get("pid"))
                except (httpx.HTTPError, ValueError) as exc:  # ValueError: a 200 whose body is not JSON
                    outcome = type(exc).__name__
                with self._lock:
                    if outcome is None:
                        self.result.ok += 1
                        self.result.served_by[served] += 1
                    else:
                        self.result.failed += 1
                        self.result.errors[outcome] += 1

    def start(self) -> LoadGenerator:
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.concurrency)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        self.result.elapsed = time.monotonic() - self._started
        return self.result

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
