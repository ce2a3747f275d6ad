"""The cluster's defaults live in ClusterConfig alone: the worker gets its config whole, the CLI copies nothing."""

import dataclasses

import pytest
import typer.main
from typer.core import TyperOption

from cluster.config import WORKER_CONFIG_ENV, ClusterConfig, WorkerConfig
from cluster.handoff import HandoffLimits
from scalecube.cli import app


def test_worker_config_round_trips_through_json():
    config = ClusterConfig(app="pkg.mod:app", drain_timeout=7.5, settle=0.5, keep_alive=3.0)
    worker = config.worker_config(4, 1, channel_fd=9, listen_fd=None, max_requests=120)
    assert WorkerConfig.from_json(worker.to_json()) == worker
    assert WorkerConfig.from_environ({WORKER_CONFIG_ENV: worker.to_json()}) == worker
    assert (worker.app, worker.id, worker.slot, worker.listen_fd) == ("pkg.mod:app", 4, 1, None)
    assert (worker.drain_timeout, worker.settle, worker.keep_alive) == (7.5, 0.5, 3.0)


def test_worker_config_takes_every_value_from_the_cluster():
    worker = ClusterConfig(app="m:a").worker_config(1, 0, channel_fd=5, listen_fd=6, max_requests=0)
    defaults = ClusterConfig(app="m:a")
    assert worker.drain_timeout == defaults.drain_timeout and worker.settle == defaults.settle
    assert worker.keep_alive == defaults.keep_alive and worker.app_dir == str(defaults.app_dir)
    assert all(f.default is dataclasses.MISSING for f in dataclasses.fields(WorkerConfig))  # no defaults of its own


@pytest.mark.parametrize("text", ["", "{", '{"app": "m:a"}', '{"app": "m:a", "nope": 1}'])
def test_a_broken_worker_config_is_a_clear_error(text):
    with pytest.raises(ValueError, match=WORKER_CONFIG_ENV):
        WorkerConfig.from_environ({WORKER_CONFIG_ENV: text} if text else {})


def test_serve_defaults_are_the_cluster_config_defaults():
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    params = {p.name: p for p in serve.params if isinstance(p, TyperOption)}
    handoff = HandoffLimits()
    expected = {f.name: f.default for f in dataclasses.fields(ClusterConfig) if f.default is not dataclasses.MISSING}
    expected |= {"handoff_limit": handoff.limit, "max_queue": handoff.max_queue, "queue_timeout": handoff.queue_timeout}
    compared = 0
    for name, param in params.items():
        if name in expected and name not in ("workers", "control", "name", "log_dir"):  # "auto", and "unset"s
            assert param.default == expected[name], name
            compared += 1
    assert compared >= 14  # every tuning flag is compared, not a lucky few
