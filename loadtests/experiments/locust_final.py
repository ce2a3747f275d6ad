"""A Locust plugin (loaded with ``-f locustfile.py,locust_final.py``): the final stats, as JSON.

Locust rewrites its CSV files once a second, so they miss up to the last second of a run —
and a failure in that second is exactly what a "zero failed requests" claim must see.
This writes the totals, percentiles and errors at quit, after the last request, to the
file named by ``SCALECUBE_FINAL_STATS_FILE``. Only the Locust process imports this module.
"""

from __future__ import annotations

import json
import os
from typing import Any

from locust import events
from locust.runners import WorkerRunner
from locust.stats import StatsEntry, StatsError

ENV = "SCALECUBE_FINAL_STATS_FILE"
PERCENTILES = {"p50_ms": 0.5, "p95_ms": 0.95, "p99_ms": 0.99}


def entry_summary(entry: StatsEntry) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "method": entry.method,
        "name": entry.name,
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "avg_ms": entry.avg_response_time,
        "start_time": entry.start_time,
        "last_request_timestamp": entry.last_request_timestamp,
    }
    for key, percent in PERCENTILES.items():
        summary[key] = entry.get_response_time_percentile(percent) if entry.num_requests else None
    return summary


_environment: list[Any] = []  # the quit event does not pass it: kept from init


@events.init.add_listener
def remember_environment(environment: Any, **_: Any) -> None:
    _environment[:] = [environment]


@events.quit.add_listener
def write_final_stats(**_: Any) -> None:
    path = os.environ.get(ENV)
    runner = _environment[0].runner if _environment else None
    if not path or runner is None or isinstance(runner, WorkerRunner):
        return
    stats = runner.stats
    data = {
        "total": entry_summary(stats.total),
        "entries": [entry_summary(entry) for entry in stats.entries.values()],
        "errors": [
            {
                "method": error.method,
                "name": error.name,
                "error": StatsError.parse_error(error.error),
                "occurrences": error.occurrences,
            }
            for error in stats.errors.values()
        ],
    }
    with open(path, "w", encoding="utf-8") as file:
        json.dump(data, file, indent=1)
