"""The stack's stop timeouts come from their owners: the cluster's drain and kill grace, haproxy.cfg's
hard-stop-after, the Python balancer's shipped drain, Redis's own stop; none is a copy that could drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.config import KILL_GRACE, ClusterConfig
from infra.local import components, redis_server
from lb.config import load_config


def test_each_stop_timeout_is_its_owners_bound_and_a_margin() -> None:
    assert ClusterConfig.drain_timeout + ClusterConfig.settle + KILL_GRACE == components.CLUSTER_STOP_TIMEOUT
    assert load_config().timeouts.drain + components.STOP_MARGIN == components.PYTHON_LB_STOP_TIMEOUT
    assert components.HaproxyComponent.stop_steps[0][1] == components.HAPROXY_STOP_TIMEOUT
    assert components.REDIS_STOP_TIMEOUT == redis_server.STOP_TIMEOUT


def test_hard_stop_after_is_read_from_the_haproxy_config(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text("global\n    master-worker\n    hard-stop-after 12s\n")
    assert components._hard_stop_after(config) == 12.0
    config.write_text("global\n    master-worker\n")
    with pytest.raises(RuntimeError, match="hard-stop-after"):
        components._hard_stop_after(config)
