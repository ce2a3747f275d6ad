"""Per-core worker cluster runtime: a master forks workers behind one port (see ``cluster.master``)."""

from cluster.config import ClusterConfig
from cluster.context import WorkerContext, current_worker

__all__ = ["ClusterConfig", "WorkerContext", "current_worker"]
