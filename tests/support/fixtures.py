"""Fixtures shared across test folders (registered by the root conftest as a plugin)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.local.ports import free_port
from infra.local.processes import ClusterProcess
from infra.local.redis_server import RedisServer
from infra.local.sentinel import SentinelGroup


def ready(cluster: ClusterProcess) -> ClusterProcess:
    """``cluster`` once it answers ``/readyz``; stopped (by pid) if it never does."""
    try:
        cluster.wait_ready()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def running_redis() -> Iterator[RedisServer]:
    """A private redis-server for a fixture's scope: ``yield from running_redis()``."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sentinel_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """A primary, a replica and three Sentinels (real processes), one per test module: a failover test moves
    the primary, so tests ask ``group.wait_settled()`` who it is rather than assuming."""
    with SentinelGroup(Path(tmp_path_factory.mktemp("sentinel"))) as group:
        yield group


def running_cluster(
    app: str, tmp_path_factory: pytest.TempPathFactory, env: dict[str, str], *, workers: int = 1
) -> Iterator[ClusterProcess]:
    """A ready cluster of ``app`` for a fixture's scope, with its own run dir: ``yield from running_cluster(...)``."""
    workdir = tmp_path_factory.mktemp(app.split(".")[1])
    env = {"SCALECUBE_RUN_DIR": str(workdir), "LOG_LEVEL": "warning", **env}
    cluster = ready(ClusterProcess(app, port=free_port(), workdir=workdir, workers=workers, env=env))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator[Any]:
    """Start ``scalecube serve`` clusters; every one is stopped (by pid) at teardown."""
    started: list[ClusterProcess] = []

    def start(
        app: str = "tests.cluster.apps:app",
        *,
        workers: int = 2,
        policy: str = "rr",
        args: list[str] | None = None,
        wait: bool = True,
        **kwargs: Any,
    ) -> ClusterProcess:
        cluster = ClusterProcess(
            app, port=free_port(), workdir=tmp_path, workers=workers, policy=policy, args=args, **kwargs
        )
        started.append(cluster)
        if wait:
            cluster.wait_ready()
        return cluster

    yield start
    for cluster in started:
        cluster.stop()
