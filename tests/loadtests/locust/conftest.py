"""Real api clusters for the Locust profiles: one on Redis sessions, one on per-worker memory sessions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.ports import free_port
from infra.local.processes import ClusterProcess
from infra.local.redis_server import RedisServer
from tests.support.fixtures import ready

API = "services.api.app:app"


def start_api(redis_url: str, workdir: Path, *, session_backend: str) -> ClusterProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        "REDIS_URL": redis_url,
        "SESSION_SECRET": "test-secret-long-enough-123",
        "SESSION_BACKEND": session_backend,
        "SCALECUBE_RUN_DIR": str(workdir),
        "LOG_LEVEL": "warning",
    }
    return ready(
        ClusterProcess(
            API, port=free_port(), workdir=workdir, workers=2, policy="rr", env=env, args=["--drain-timeout", "2"]
        )
    )


@pytest.fixture(scope="session")
def api_redis_sessions(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    """2 workers behind rr, sessions in Redis: any worker finds any session."""
    cluster = start_api(redis_server.url, tmp_path_factory.mktemp("api-redis"), session_backend="redis")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def api_memory_sessions(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterProcess]:
    """2 workers behind rr, sessions in each worker's memory: only the worker that made one knows it."""
    cluster = start_api(redis_server.url, tmp_path_factory.mktemp("api-memory"), session_backend="memory")
    yield cluster
    cluster.stop()
