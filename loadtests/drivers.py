"""The two load drivers of the benchmarks and demos: wrk (C, not the bottleneck) and Python threads.

Both return a ``LoadSummary``, and every report names the driver that produced it.

wrk always runs with a Lua script whose ``done()`` prints the summary on a line of its own
(exact numbers, no parsing of wrk's human report). With ``tally`` the script also counts
``X-Served-By`` per response: wrk runs one Lua state per thread plus one for setup/done;
``setup(thread)`` keeps every thread, ``response()`` counts per thread (no locking on the hot
path) and ``done()`` merges the threads' tables with ``thread:get``. Without ``tally`` there is
no ``response()``, so wrk keeps its fast path (it parses no headers for a script that has none).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.client_load import LoadGenerator

TALLY = "scalecube-tally"  # prefix of the lines done() prints
UNKNOWN = "?"  # a response without X-Served-By
WRK_ERRORS = ("connect", "read", "write", "non-2xx", "timeout")  # the order done() prints them in

_RESPONSE = f"""
function response(status, headers, body)
  local who = headers["x-served-by"] or headers["X-Served-By"]
  if who == nil then
    -- Header names arrive as each server spelled them.
    for name, value in pairs(headers) do
      if string.lower(name) == "x-served-by" then who = value end
    end
  end
  who = who or "{UNKNOWN}"
  served[who] = (served[who] or 0) + 1
end
"""

_SCRIPT = f"""
local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  served = {{}}
end
-- response --
function done(summary, latency, requests)
  local merged = {{}}
  for _, thread in ipairs(threads) do
    for who, count in pairs(thread:get("served") or {{}}) do
      merged[who] = (merged[who] or 0) + count
    end
  end
  for who, count in pairs(merged) do
    io.write(string.format("{TALLY} served %d %s\\n", count, who))
  end
  local e = summary.errors
  io.write(string.format("{TALLY} summary %d %d %d %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass
class LoadSummary:
    """One run of one driver: ``served`` maps each ``X-Served-By`` value (host/pid) to its responses,
    when the driver tallied them."""

    driver: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float | None
    p99_ms: float | None
    error_kinds: dict[str, int] = field(default_factory=dict)  # wrk's: connect, read, write, timeout, non-2xx
    served: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def write_script(directory: Path, *, tally: bool = True) -> Path:
    """The Lua script ``run_wrk`` runs, written once for many runs."""
    path = directory / ("served_by.lua" if tally else "summary.lua")
    path.write_text(_SCRIPT.replace("-- response --", _RESPONSE if tally else ""))
    return path


def run_wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 2,
    new_connections: bool = False,
    timeout: float | None = None,
    script: Path | None = None,
) -> LoadSummary:
    """Load from wrk for whole seconds; errors = socket errors + responses >= 400.

    ``new_connections``: every request on a connection of its own (``Connection: close``, wrk
    reconnects), the shape of the guides' ``ab -c200``; else keep-alive. ``timeout``: seconds
    before wrk gives up on a response (its default, 2 s, counts a slow answer as an error).
    ``script``: from ``write_script`` (with the served-by tally); default: the summary alone.
    """
    duration = max(1, round(seconds))  # wrk takes whole seconds only
    argv = ["wrk", "-t", str(max(1, min(threads, connections))), "-c", str(connections), "-d", f"{duration}s"]
    if new_connections:
        argv += ["-H", "Connection: close"]
    if timeout is not None:
        argv += ["--timeout", f"{max(1, round(timeout))}s"]
    with tempfile.TemporaryDirectory(prefix="scwrk-") as scratch:
        script = script or write_script(Path(scratch), tally=False)
        done = subprocess.run(
            [*argv, "-s", str(script), url], capture_output=True, text=True, timeout=duration + 30 + (timeout or 0)
        )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return parse(done.stdout)


def parse(output: str) -> LoadSummary:
    """The lines the script's ``done()`` printed -> a ``LoadSummary`` (wrk's own report is ignored)."""
    served: dict[str, int] = {}
    summary: list[int] | None = None
    for line in output.splitlines():
        if not line.startswith(TALLY + " "):
            continue
        kind, rest = line[len(TALLY) + 1 :].split(" ", 1)
        if kind == "served":
            count, who = rest.split(" ", 1)
            served[who] = served.get(who, 0) + int(count)
        elif kind == "summary":
            summary = [int(n) for n in rest.split()]
    if summary is None:
        raise RuntimeError(f"wrk printed no tally (is its Lua support there?):\n{output}")
    requests, duration_us, *errors, p50_us, p99_us = summary
    kinds = {kind: n for kind, n in zip(WRK_ERRORS, errors, strict=True) if n}
    return LoadSummary(
        "wrk",
        requests,
        sum(errors),
        duration_us / 1e6,
        p50_us / 1000 if requests else None,
        p99_us / 1000 if requests else None,
        kinds,
        served,
    )


def run_threads(url: str, *, seconds: float, connections: int, keepalive: bool = True) -> LoadSummary:
    """The fallback: ``LoadGenerator``'s Python threads with httpx (itself CPU-hungry: compare ratios,
    not absolutes)."""
    load = LoadGenerator(url, concurrency=connections, keepalive=keepalive, max_requests=10**9, max_seconds=seconds)
    load.start()
    while load.running:
        time.sleep(0.05)
    result = load.stop()

    def ms(quantile: float) -> float | None:
        return result.latency(quantile) * 1000 if result.latencies else None

    return LoadSummary(
        "python threads (httpx)",
        result.total,
        result.failed,
        seconds,
        ms(0.5),
        ms(0.99),
        dict(result.errors),
        dict(result.served_by),
    )


def run_load(url: str, *, seconds: float, connections: int) -> LoadSummary:
    if wrk_available():
        return run_wrk(url, seconds=seconds, connections=connections)
    return run_threads(url, seconds=seconds, connections=connections)


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def summarise(runs: list[LoadSummary]) -> dict[str, Any]:
    """Several runs of one target as medians (interleaved rounds make drift hit every target alike)."""
    return {
        "rps": median([r.rps for r in runs]),
        "p50_ms": median([r.p50_ms for r in runs]),
        "p99_ms": median([r.p99_ms for r in runs]),
        "errors": sum(r.errors for r in runs),
        "runs": [round(r.rps, 1) for r in runs],
    }
