"""The master's own metrics, served on its health port (``/metrics``, Prometheus text format).

The services' ``/metrics`` counts requests per worker; what only the master knows is
here: workers by state, what each worker holds unanswered, restarts, and the
hand-off's totals — connections handed, reclaimed from dead workers, shed with a 503
(overload), and waiting right now. A custom collector reads the master's status when
scraped, so nothing is counted twice and the hand-off path pays nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric

PREFIX = "scalecube_cluster_"
DIR_PREFIX = "scalecube-metrics-"  # then the master's pid, a dash, and mkdtemp's random part
HANDOFF_COUNTERS = {
    "handed": "Connections the master handed to a worker.",
    "reclaimed": "Connections a dead worker never started, handed to another.",
    "shed": "Connections answered 503 by the master: every worker busy, the queue full or too slow.",
}


class ClusterCollector:
    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        status = self._status()
        master, workers = status["master"], status["workers"]
        for key, text in HANDOFF_COUNTERS.items():
            if key in master:
                yield CounterMetricFamily(PREFIX + key, text, value=master[key])
        if "queued" in master:
            yield GaugeMetricFamily(
                PREFIX + "queued", "Connections waiting in the master for a worker.", value=master["queued"]
            )
        states = GaugeMetricFamily(PREFIX + "workers", "Workers by state.", labels=["state"])
        for state in ("starting", "online", "listening", "draining"):
            states.add_metric([state], sum(1 for w in workers if w["state"] == state))
        yield states
        yield GaugeMetricFamily(PREFIX + "target_workers", "Workers the master keeps.", value=master["target_workers"])
        unanswered = GaugeMetricFamily(
            PREFIX + "worker_unanswered",
            "Connections handed to the worker, first response not sent yet.",
            labels=["worker"],
        )
        inflight = GaugeMetricFamily(
            PREFIX + "worker_inflight", "Requests in flight, as the worker last reported.", labels=["worker"]
        )
        restarts = CounterMetricFamily(
            PREFIX + "worker_restarts", "Times the slot's worker was replaced after a crash.", labels=["worker"]
        )
        for w in workers:
            slot = str(w["slot"])  # the `worker` label of the services' request metrics
            unanswered.add_metric([slot], w.get("unanswered", 0))
            inflight.add_metric([slot], w["inflight"])
            restarts.add_metric([slot], w["restarts"])
        yield from (unanswered, inflight, restarts)
        yield CounterMetricFamily(
            PREFIX + "recent_crashes", "Worker crashes within the crash window.", value=master["recent_crashes"]
        )


def metrics_text(status: Callable[[], dict[str, Any]]) -> Callable[[], bytes]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(status))  # type: ignore[arg-type]
    return lambda: generate_latest(registry)


def make_metrics_dir(parent: str | None = None) -> str:
    """A fresh directory for the workers' shared metrics files (``PROMETHEUS_MULTIPROC_DIR``), under the
    temp dir, named after this master's pid. The master removes it when it stops.

    A master killed outright (SIGKILL, the OOM killer) runs no cleanup and leaves its directory behind. So,
    first, this removes the directories earlier masters left: those of a pid that no longer runs, or whose pid
    is this master's own (a container restarted is PID 1 again). Only this user's; a directory whose pid was
    taken again by another process waits for a later master.
    """
    root = Path(parent or tempfile.gettempdir())
    for old in root.glob(f"{DIR_PREFIX}*-*"):
        pid = old.name.removeprefix(DIR_PREFIX).partition("-")[0]
        try:  # masters starting together sweep the same leftovers: one may remove it under another's feet
            mine = old.is_dir() and old.stat().st_uid == os.getuid()
        except OSError:
            continue
        if pid.isdigit() and mine and not _running(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}-", dir=root)


def _running(pid: int) -> bool:
    """Whether another process runs under ``pid`` (this process's own pid: no, its directory is not made yet)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's process
        return True
    return True
