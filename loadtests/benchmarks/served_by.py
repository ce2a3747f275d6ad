"""wrk with a Lua tally of ``X-Served-By``: load, latency and who served it, from one run.

wrk runs one Lua state per thread plus one for setup/done. ``setup(thread)`` keeps every
thread, ``response()`` counts per thread (no locking on the hot path), and ``done()``
merges the threads' tables with ``thread:get`` and prints them after wrk's own report,
on lines of their own that this module parses. The script is kept here as a string, so
it ships inside the package with no package data.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

TALLY = "scalecube-tally"  # prefix of the lines done() prints
UNKNOWN = "?"  # a response without X-Served-By

SCRIPT = f"""
local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  served = {{}}
end

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
class TalliedRun:
    """One wrk run: ``served`` maps each ``X-Served-By`` value (host/pid) to its responses."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    served: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def write_script(directory: Path) -> Path:
    path = directory / "served_by.lua"
    path.write_text(SCRIPT)
    return path


def run_wrk(url: str, *, script: Path, seconds: float, connections: int, threads: int = 2) -> TalliedRun:
    """Keep-alive load from wrk for whole seconds; errors = socket errors + responses >= 400."""
    duration = max(1, round(seconds))
    argv = ["wrk", "-t", str(max(1, min(threads, connections))), "-c", str(connections), "-d", f"{duration}s",
            "--timeout", "10s", "-s", str(script), url]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 30)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return parse(done.stdout)


def parse(output: str) -> TalliedRun:
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
    return TalliedRun(requests, duration_us / 1e6, sum(errors), p50_us / 1000 if requests else None,
                      p99_us / 1000 if requests else None, served)  # fmt: skip


def spread(served: dict[str, int], workers: int) -> float | None:
    """(max - min) / mean of the requests each of ``workers`` served; a worker never seen served 0.

    0 is a perfect split; with 2 workers 0.05 is 51.25 % / 48.75 %, and 2.0 is one worker doing all.
    """
    counts = [n for who, n in served.items() if who != UNKNOWN]
    counts += [0] * max(0, workers - len(counts))
    total = sum(counts)
    if not total:
        return None
    return (max(counts) - min(counts)) / (total / len(counts))
