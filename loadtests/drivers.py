"""Load drivers for benchmarks: wrk when installed (C, not the bottleneck), else Python threads.

Both return the same summary, and every report names the driver that produced it.
"""

from __future__ import annotations

import collections
import re
import statistics
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class LoadSummary:
    driver: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    error_kinds: dict[str, int] = field(default_factory=dict)  # wrk's: connect, read, write, timeout, non-2xx

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, *, seconds: float, connections: int, threads: int = 2, new_connections: bool = False,
            timeout: float | None = None) -> LoadSummary:  # fmt: skip
    """Load from wrk; errors = socket errors + non-2xx/3xx responses.

    ``new_connections``: every request on a connection of its own (``Connection: close``, wrk
    reconnects), the shape of the guides' ``ab -c200``; else keep-alive. ``timeout``: seconds
    before wrk gives up on a response (its default, 2 s, counts a slow answer as an error).
    """
    duration = max(1, round(seconds))  # wrk takes whole seconds only
    argv = ["wrk", "--latency", "-t", str(min(threads, connections)), "-c", str(connections), "-d", f"{duration}s"]
    if new_connections:
        argv += ["-H", "Connection: close"]
    if timeout is not None:
        argv += ["--timeout", f"{max(1, round(timeout))}s"]
    out = subprocess.run([*argv, url], capture_output=True, text=True, timeout=duration + 30 + (timeout or 0),
                         check=True).stdout  # fmt: skip
    found = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    requests, seconds = int(found.group(1)), _ms(found.group(2)) / 1000  # type: ignore[union-attr]
    kinds = {kind: int(n) for kind, n in re.findall(r"(connect|read|write|timeout) (\d+)", out) if int(n)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        kinds["non-2xx"] = int(non2xx.group(1))
    p50 = re.search(r"50%\s+([\d.]+\w+)", out)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    return LoadSummary("wrk", requests, sum(kinds.values()), seconds, _ms(p50.group(1)) if p50 else None,
                       _ms(p99.group(1)) if p99 else None, kinds)  # fmt: skip


def run_threads(url: str, *, seconds: float, connections: int, keepalive: bool = True) -> LoadSummary:
    """The fallback: Python threads with httpx (itself CPU-hungry: compare ratios, not absolutes)."""
    latencies: list[float] = []
    errors = collections.Counter[str]()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        limits = httpx.Limits(max_keepalive_connections=1 if keepalive else 0)
        with httpx.Client(timeout=10, limits=limits) as http:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    ok = http.get(url).status_code < 400
                except httpx.HTTPError:
                    ok = False
                with lock:
                    if ok:
                        latencies.append((time.perf_counter() - started) * 1000)
                    else:
                        errors["failed"] += 1

    threads = [threading.Thread(target=client) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()

    def pct(q: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None

    return LoadSummary("python threads (httpx)", len(latencies) + errors.total(), errors.total(), seconds,
                       pct(0.5), pct(0.99))  # fmt: skip


def run_load(url: str, *, seconds: float, connections: int) -> LoadSummary:
    if wrk_available():
        return run_wrk(url, seconds=seconds, connections=connections)
    return run_threads(url, seconds=seconds, connections=connections)


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def summarise(runs: list[LoadSummary]) -> dict[str, Any]:
    """Several runs of one target as medians (interleaved rounds make drift hit every target alike)."""
    return {"rps": median([r.rps for r in runs]), "p50_ms": median([r.p50_ms for r in runs]),
            "p99_ms": median([r.p99_ms for r in runs]), "errors": sum(r.errors for r in runs),
            "runs": [round(r.rps, 1) for r in runs]}  # fmt: skip
