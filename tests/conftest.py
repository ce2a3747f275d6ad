"""Fixtures shared by the whole test suite. Real servers only, no fakes."""

from collections.abc import Iterator

import pytest
import redis

# The helpers' asserts report their operands like the tests' own; it must be said before they are imported.
pytest.register_assert_rewrite("tests.support")

from infra.local.redis_server import RedisServer  # noqa: E402
from tests.support.fixtures import running_redis  # noqa: E402

# Fixtures other folders share (clusters, ...) live in their own module; engine_leaks checks that the suite
# leaves the Docker engine as it found it.
pytest_plugins = ["tests.support.fixtures", "tests.support.engine_leaks"]


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


# -- Groups --------------------------------------------------------------------

_DOCKER_TESTS = "tests/infra/docker/"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow Docker group: everything under tests/infra/docker, and any test that starts a container.

    In an xdist worker (``make test-local``), the ``slow`` tests go first: a run's wall time is that of its
    busiest worker, and a minute-long demo smoke picked up last leaves the other workers idle while it runs.
    Every worker sorts the same collection the same way (xdist requires it); a plain run keeps the file order.
    """
    for item in items:
        if _DOCKER_TESTS in item.nodeid or "sleeper" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A private redis-server, for tests that stop or restart it."""
    yield from running_redis()
