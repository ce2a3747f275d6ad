"""A shard as it really runs: a cluster, its own real Redis, real HTTP; one per test module."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from infra.local.processes import ClusterProcess
from infra.local.redis_server import RedisServer
from tests.support.fixtures import running_cluster, running_redis

SHARD = "services.shard.app:app"


@pytest.fixture(scope="module")
def shard_redis() -> Iterator[RedisServer]:
    yield from running_redis()


@pytest.fixture(scope="module")
def shard_cluster(shard_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    env = {"SHARD_NAME": "shard-x", "SHARD_REDIS_URL": shard_redis.url, "MAX_PAGE": "50"}
    yield from running_cluster(SHARD, tmp_path_factory, env)


@pytest.fixture
def shard(shard_cluster: ClusterProcess, shard_redis: RedisServer) -> Iterator[httpx.Client]:
    with redis.Redis.from_url(shard_redis.url) as client:
        client.flushall()
    with httpx.Client(base_url=shard_cluster.url, timeout=10) as client:
        yield client
