"""Fixtures shared by the whole test suite. Real servers only, no fakes."""

from collections.abc import Iterator

import pytest
import redis

# The helpers' asserts report their operands like the tests' own; it must be said before they are imported.
pytest.register_assert_rewrite("tests.support")

from infra.local.redis_server import RedisServer  # noqa: E402
from tests.support.fixtures import running_redis  # noqa: E402

# Fixtures other folders share (clusters, ...) live in their own module; engine_leaks checks that the suite
# leaves the Docker engine as it found it; parallel is how the suite runs in xdist workers (groups, locks, ports).
pytest_plugins = ["tests.support.fixtures", "tests.support.engine_leaks", "tests.support.parallel"]


# -- Redis ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the whole session (per xdist worker)."""
    yield from running_redis()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the shared server, emptied before each test."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A private redis-server, for tests that stop or restart it."""
    yield from running_redis()
