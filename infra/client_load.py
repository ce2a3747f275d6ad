"""A small, bounded HTTP load generator: threads, real HTTP, every outcome recorded.

Used by the tests and by operations that must say what clients saw (``scalecube docker chaos``,
``rolling-restart --load``). Each request may use a fresh connection (like ``ab`` without -k,
what the guides measure) so connection-level balancing is exercised on every request.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

import httpx

MAX_FAILURE_TIMES = 10_000  # enough to place failures in time, bounded on a long run
MAX_LATENCIES = 200_000  # latency samples kept (the first ones): percentiles of a bounded run


@dataclass
class LoadTally:
    ok: int = 0
    failed: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    served_by: collections.Counter[str] = field(default_factory=collections.Counter)
    elapsed: float = 0.0
    # Seconds since the start at which requests failed (the first MAX_FAILURE_TIMES of them).
    failure_times: list[float] = field(default_factory=list)
    # Seconds each request took, failed or not (the first MAX_LATENCIES of them).
    latencies: list[float] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ok + self.failed

    @property
    def failed_fraction(self) -> float:
        return self.failed / self.total if self.total else 0.0

    def latency(self, quantile: float) -> float:
        """The latency below which ``quantile`` (0..1) of the requests finished; 0 with no request."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]

    def __str__(self) -> str:
        rate = self.total / self.elapsed if self.elapsed else 0.0
        return (
            f"{self.total} requests in {self.elapsed:.1f}s ({rate:.0f}/s), {self.failed} failed "
            f"({self.failed_fraction:.2%}) {dict(self.errors)}"
        )


class LoadGenerator:
    """Runs ``concurrency`` client threads until ``stop()``, ``max_requests`` or ``max_seconds``."""

    def __init__(
        self,
        url: str,
        *,
        concurrency: int = 8,
        keepalive: bool = False,
        max_requests: int = 20_000,
        max_seconds: float = 60.0,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.concurrency = concurrency
        self.keepalive = keepalive
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.timeout = timeout
        self.result = LoadTally()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = 0.0

    @property
    def started(self) -> float:
        """``time.monotonic()`` at start: ``failure_times`` count from here."""
        return self._started

    @property
    def running(self) -> bool:
        """True while any client thread still sends (limits not reached, not stopped)."""
        return any(thread.is_alive() for thread in self._threads)

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
                outcome, served, sent = None, None, time.monotonic()
                try:
                    response = client.get(self.url)
                    if response.status_code != 200:
                        # A failure by its status: a balancer's 502/503 page is HTML, not the app's JSON.
                        outcome = f"HTTP {response.status_code}"
                    else:
                        served = response.headers.get("x-served-by") or str(response.json().get("pid"))
                except (httpx.HTTPError, ValueError) as exc:  # ValueError: a 200 whose body is not JSON
                    outcome = type(exc).__name__
                took = time.monotonic() - sent
                with self._lock:
                    if len(self.result.latencies) < MAX_LATENCIES:
                        self.result.latencies.append(took)
                    if outcome is None:
                        self.result.ok += 1
                        self.result.served_by[served] += 1
                    else:
                        self.result.failed += 1
                        self.result.errors[outcome] += 1
                        if len(self.result.failure_times) < MAX_FAILURE_TIMES:
                            self.result.failure_times.append(time.monotonic() - self._started)

    def start(self) -> LoadGenerator:
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(self.concurrency)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadTally:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        self.result.elapsed = time.monotonic() - self._started
        return self.result

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
