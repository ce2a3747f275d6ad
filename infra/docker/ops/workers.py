"""A container's cluster workers, from ``scalecube status --json`` run inside it (its control socket)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from docker.models.containers import Container

# Services whose containers run the cluster runtime (``scalecube serve``).
CLUSTER_SERVICES = ("api", "auth", "router", "shard-a", "shard-b")


@dataclass(frozen=True)
class Worker:
    id: int
    pid: int
    state: str
    requests: int
    rss_mb: float

    @classmethod
    def from_status(cls, worker: dict[str, Any]) -> Worker:
        return cls(
            int(worker["id"]),
            int(worker["pid"]),
            str(worker["state"]),
            int(worker.get("requests", 0)),
            float(worker.get("rss_mb", 0.0)),
        )


def parse_status(output: str) -> list[Worker]:
    """Workers from ``scalecube status --json`` output: ``{"stack": …, "clusters": [{"workers": […]}]}``."""
    document = json.loads(output)
    return [Worker.from_status(w) for cluster in document.get("clusters", []) for w in cluster.get("workers", [])]


def workers_of(container: Container) -> list[Worker] | None:
    """The container's workers, or None when it has no cluster that answers (not running, no master)."""
    if container.status != "running":
        return None
    exit_code, output = container.exec_run(["scalecube", "status", "--json"], demux=False)
    if exit_code != 0:
        return None
    try:
        return parse_status(output.decode(errors="replace"))
    except (ValueError, KeyError, TypeError):
        return None
