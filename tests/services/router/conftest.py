"""The sharded stack as it really runs: a router cluster, shard clusters, each with its own Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from infra.local.ports import free_port
from infra.local.processes import ClusterProcess
from infra.local.redis_server import RedisServer
from infra.paths import REPO

ROUTER = "services.router.app:app"
SHARD = "services.shard.app:app"
SHARD_NAMES = ("shard-a", "shard-b")
# Small and explicit; every other country is hashed over the two shards.
MAP = """
[shards.shard-a]
countries = ["FR", "DE"]

[shards.shard-b]
countries = ["US", "BR"]
"""


class ShardedStack:
    """Redis servers and clusters started here are stopped here, by pid (``close``)."""

    def __init__(
        self,
        workdir: Path,
        *,
        router_workers: int = 2,
        shard_workers: int = 1,
        router_env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.map_path = workdir / "shard_map.toml"
        self.map_path.write_text(MAP)
        self.redis: dict[str, RedisServer] = {}
        self.clusters: dict[str, ClusterProcess] = {}
        self.shard_ports = {name: free_port() for name in SHARD_NAMES}
        try:
            for name in ("router", *SHARD_NAMES):
                self.redis[name] = RedisServer()
                self.redis[name].start()
            for name in SHARD_NAMES:
                self.start_shard(name, workers=shard_workers, wait=False)
            self.clusters["router"] = ClusterProcess(
                ROUTER,
                port=free_port(),
                workdir=workdir,
                workers=router_workers,
                env={**self.router_env(), **(router_env or {})},
            )
            for cluster in self.clusters.values():
                cluster.wait_ready()
        except BaseException:
            self.close()
            raise

    # -- environment -------------------------------------------------------------

    @property
    def shard_urls(self) -> str:
        return ",".join(f"{name}=http://127.0.0.1:{port}" for name, port in self.shard_ports.items())

    def router_env(self) -> dict[str, str]:
        return {
            "ROUTER_REDIS_URL": self.redis["router"].url,
            "SHARD_MAP": str(self.map_path),
            "SHARD_URLS": self.shard_urls,
            "SCALECUBE_RUN_DIR": str(self.workdir),
            "LOG_LEVEL": "warning",
        }

    def start_shard(self, name: str, *, workers: int = 1, wait: bool = True) -> ClusterProcess:
        env = {
            "SHARD_NAME": name,
            "SHARD_REDIS_URL": self.redis[name].url,
            "SCALECUBE_RUN_DIR": str(self.workdir),
            "LOG_LEVEL": "warning",
        }
        cluster = ClusterProcess(SHARD, port=self.shard_ports[name], workdir=self.workdir, workers=workers, env=env)
        self.clusters[name] = cluster
        if wait:
            cluster.wait_ready()
        return cluster

    # -- access -----------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.clusters["router"].url

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kwargs)

    def shard_client(self, name: str) -> httpx.Client:
        return httpx.Client(base_url=self.clusters[name].url, timeout=10)

    def redis_client(self, name: str) -> redis.Redis:
        return redis.Redis.from_url(self.redis[name].url, decode_responses=True)

    def countries_stored(self, name: str) -> dict[str, int]:
        """What a shard's Redis really holds: users per country, from the user hashes themselves."""
        counts: dict[str, int] = {}
        with self.redis_client(name) as client:
            for key in client.scan_iter("shard:user:*", count=1000):
                country = client.hget(key, "country")
                counts[country] = counts.get(country, 0) + 1
        return counts

    def scalecube(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``scalecube ...`` with the router's environment, as an operator would run it."""
        env = {**os.environ, **self.router_env()}
        return subprocess.run(
            [sys.executable, "-m", "scalecube", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def flush(self) -> None:
        for server in self.redis.values():
            with redis.Redis.from_url(server.url) as client:
                client.flushall()

    def close(self) -> None:
        for cluster in self.clusters.values():
            cluster.stop()
        for server in self.redis.values():
            server.stop()


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShardedStack]:
    """One stack for the tests that leave it running as they found it (no moves, no stopped shards)."""
    stack = ShardedStack(tmp_path_factory.mktemp("sharded"))
    yield stack
    stack.close()


@pytest.fixture
def stack(shared_stack: ShardedStack) -> ShardedStack:
    """The shared stack, every Redis emptied first."""
    shared_stack.flush()
    return shared_stack


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Any]:
    """``own_stack(**options)``: a stack of its own, for tests that stop shards or move countries."""
    started: list[ShardedStack] = []

    def start(**options: Any) -> ShardedStack:
        started.append(ShardedStack(tmp_path, **options))
        return started[-1]

    yield start
    for stack in started:
        stack.close()
