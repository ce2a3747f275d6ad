"""Sessions in a worker's memory (SESSION_BACKEND=memory) survive balancing only if the client is sticky.

Sticky pins a client to a *replica*. Inside a replica the cluster hands each new
connection to its next worker, so memory sessions also need one worker per
replica — the last test shows what happens with two.
"""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.lb.conftest import API, api_env, fresh_client, loopback_topology, replicas_serving

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
TWO_WORKERS = "127.0.0.5"


@pytest.fixture(scope="module")
def memory(tmp_path_factory, redis_server):
    env = api_env(redis_server.url, session_backend="memory")  # Redis still backs /readyz and the users count
    with loopback_topology(tmp_path_factory.mktemp("memory")) as topology:
        for host in HOSTS:
            topology.start("api", host, API, workers=1, env=env)
        topology.start("api-2w", TWO_WORKERS, API, workers=2, env=env)
        topology.wait_ready()
        yield topology


def log_in_and_ask(url: str, times: int = 12) -> list[httpx.Response]:
    """Log in, then ask who I am, each request on a new connection (the cookie jar persists)."""
    with fresh_client() as client:
        assert client.post(url + "/session/login", json={"user": "grace"}).status_code == 200
        return [client.get(url + "/session/me") for _ in range(times)]


def test_memory_sessions_get_lost_without_sticky(kind, memory, start_balancer):
    lb = start_balancer(kind, memory)
    statuses = collections.Counter(r.status_code for r in log_in_and_ask(lb.url))
    # Round robin over 3 replicas: only the one that created the session knows it.
    assert set(statuses) == {200, 401} and statuses[401] >= 6, statuses


def test_memory_sessions_work_with_sticky(kind, memory, start_balancer):
    lb = start_balancer(kind, memory, sticky=True)
    answers = log_in_and_ask(lb.url)
    assert [r.status_code for r in answers] == [200] * len(answers)
    assert len(set(replicas_serving(memory, answers))) == 1


def test_sticky_pins_the_replica_not_the_worker(kind, memory, start_balancer):
    lb = start_balancer(kind, memory, sticky=True, service="api-2w")
    # One client at a time may ride a single pooled balancer->replica connection, hence one worker, and
    # look fine. Concurrent clients make the balancer open more connections, which the cluster spreads.
    with ThreadPoolExecutor(8) as pool:
        answers = [r for batch in pool.map(lambda _: log_in_and_ask(lb.url, 15), range(8)) for r in batch]
    statuses = collections.Counter(r.status_code for r in answers)
    assert statuses[200] and statuses[401], statuses
    assert set(replicas_serving(memory, answers)) == {TWO_WORKERS}
