"""A shard as it really runs: a cluster, its own real Redis, real HTTP; one per test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from infra.local.ports import free_port
from infra.local.processes import ClusterProcess
from tests.support.fixtures import ready, running_redis
from infra.local.redis_server import RedisServer

SHARD = "services.shard.app:app"


@pytest.fixture(scope="module")
def shard_redis() -> Iterator[RedisServer]:
    yield from running_redis()


@pytest.fixture(scope="module")
def shard_cluster(shard_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    workdir = tmp_path_factory.mktemp("shard")
    env = {"SHARD_NAME": "shard-x", "SHARD_REDIS_URL": shard_redis.url, "SCALECUBE_RUN_DIR": str(workdir),
           "LOG_LEVEL": "warning", "MAX_PAGE": "50"}  # fmt: skip
    cluster = ready(ClusterProcess(SHARD, port=free_port(), workdir=workdir, workers=1, env=env))
    yield cluster
    cluster.stop()


@pytest.fixture
def shard(shard_cluster: ClusterProcess, shard_redis: RedisServer) -> Iterator[httpx.Client]:
    with redis.Redis.from_url(shard_redis.url) as client:
        client.flushall()
    with httpx.Client(base_url=shard_cluster.url, timeout=10) as client:
        yield client
