"""SplittingUser against the shard router (two shards, each with its Redis), AuthUser against auth."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.local.processes import ClusterProcess
from infra.local.redis_server import RedisServer
from tests.loadtests.locust.runner import run_locust
from tests.services.auth.conftest import AUTH, auth_env, start
from tests.services.router.conftest import ShardedStack


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShardedStack]:
    stack = ShardedStack(tmp_path_factory.mktemp("sharded"), router_workers=1)
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def auth_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    """auth on its own Redis, the suite's short limits, and 3 registrations per address per window of seconds."""
    server = RedisServer()
    server.start()
    try:
        workdir = tmp_path_factory.mktemp("auth")
        env = auth_env(server.url, workdir, LOG_LEVEL="warning", ACCESS_LOG="0", REGISTER_IP_LIMIT="3")
        cluster = start(AUTH, env, workdir)
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        server.stop()


def test_splitting_user_creates_and_reads_users_on_both_shards(sharded, tmp_path):
    # Each user finishes the task it is in when the run time is up (--stop-timeout): a create it had sent
    # is then counted, as well as stored (stopped at once, one was stored but never counted: 47 and 46).
    result = run_locust(tmp_path, sharded.url, "--stop-timeout", "10", classes=("SplittingUser",))
    assert result.code == 0, result.explain()
    assert result.failures("Aggregated") == 0, result.explain()
    assert result.names() == {"/users", "/users/[id]", "/users?country=[cc]"}, result.explain()
    created = result.requests("/users")
    stored = {name: sum(sharded.countries_stored(name).values()) for name in ("shard-a", "shard-b")}
    assert sum(stored.values()) == created  # every 201 is a user a shard really holds
    assert all(count > 0 for count in stored.values()), stored  # the country mix reaches both shards


def test_auth_user_registers_logs_in_and_counts_rate_limits_apart(auth_service, tmp_path):
    # Every Locust user comes from 127.0.0.1. Logins succeed, so the login limits (6 failures per address,
    # 3 per username and address) never answer; registrations are limited (3 per window here): 429s, apart.
    result = run_locust(tmp_path, auth_service.url, classes=("AuthUser",), run_time="3s")
    assert result.code == 0, result.explain()
    assert result.requests("/auth/register") > 0 and result.requests("/auth/login") > 0, result.explain()
    assert result.requests("/auth/register [429 rate limited]") > 0, result.explain()
    assert result.requests("/auth/login [429 rate limited]") == 0, result.explain()
    assert result.failures("Aggregated") == 0, result.explain()
