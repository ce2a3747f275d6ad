"""The api's ``/users/count`` is the router's users count: real api, router and shard clusters, real Redis.

Issue #11: users created through ``/users`` (the router) must show in the api's ``/users/count``,
read by the api's master once per interval (``ROUTER_URL``), the answer naming where it came
from; with the router down the api keeps answering the last value, 200, marked stale.
"""

from __future__ import annotations

from typing import Any

import httpx
import redis

from infra.local.processes import ClusterProcess, wait_until
from services.api.users_count import READERS_KEY
from tests.services.router.conftest import ROUTER

API = "services.api.app:app"
INTERVAL = 0.3
COUNTRIES = ["FR", "DE", "US", "BR", "JP"]  # both shards


def start_api(start_cluster: Any, redis_url: str, router_url: str, tmp_path: Any) -> ClusterProcess:
    env = {
        "REDIS_URL": redis_url,
        "SESSION_SECRET": "test-secret-long-enough-123",
        "SCALECUBE_RUN_DIR": str(tmp_path),
        "ROUTER_URL": router_url,
        "USERS_COUNT_INTERVAL": str(INTERVAL),
        "USERS_SOURCE_DELAY": "0",
        "LOG_LEVEL": "warning",
    }
    return start_cluster(API, workers=2, env=env)


def answers(url: str, n: int = 6) -> list[httpx.Response]:
    """``/users/count`` on fresh connections: rr hands them to every worker in turn."""
    with httpx.Client(base_url=url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        return [client.get("/users/count") for _ in range(n)]


def every_worker_says(url: str, **expected: Any) -> bool:
    bodies = [r.json() for r in answers(url) if r.status_code == 200]
    return len(bodies) == 6 and all(all(body.get(k) == v for k, v in expected.items()) for body in bodies)


def create_users(router_url: str, n: int, first: int = 0) -> None:
    with httpx.Client(base_url=router_url, timeout=10) as client:
        for i in range(first, first + n):
            created = client.post("/users", json={"name": f"counted {i}", "country": COUNTRIES[i % len(COUNTRIES)]})
            assert created.status_code == 201, created.text


def test_router_counts_the_users_its_directory_holds(stack):
    with stack.client() as client:
        assert client.get("/users/count").json()["count"] == 0
        create_users(stack.url, 7)
        counted = client.get("/users/count")
        assert counted.status_code == 200, counted.text  # not taken for a user id by /users/{id}
        assert counted.json()["count"] == 7
        assert "directory" in counted.json()["counted"]
        assert client.get("/shards").json()["directory"]["entries"] == 7
        shards = client.get("/shards").json()["shards"]
        assert sum(shard["users"] for shard in shards.values()) == 7  # every create completed: the two agree


def test_api_users_count_is_the_routers_users(stack, start_cluster, redis_url, tmp_path):
    api = start_api(start_cluster, redis_url, stack.url, tmp_path)
    origin = f"router {stack.url}/users/count"
    wait_until(
        lambda: every_worker_says(api.url, count=0, origin=origin, stale=False),
        60,
        interval=0.2,
        what="every worker answering the router's 0",
    )
    create_users(stack.url, 5)
    wait_until(lambda: every_worker_says(api.url, count=5), 60, interval=0.2, what="every worker answering 5")
    for body in (r.json() for r in answers(api.url)):
        assert body["source"] == "master broadcast"
        assert body["origin"] == origin
        assert body["stale"] is False and body["stale_reason"] is None
        assert body["read_at"].endswith("Z")
    # The slow-source instrumentation still counts every read, and only the master reads.
    with redis.Redis.from_url(redis_url) as source:
        readers = {int(pid): int(n) for pid, n in source.hgetall(READERS_KEY).items()}
    # Judged on this cluster's pids: an earlier test's stopped master may land one last read after the flush.
    master = api.status()["master"]["pid"]
    assert set(readers) & (api.listening_pids() | {master}) == {master}, readers
    assert readers[master] >= 2


def test_router_down_keeps_the_last_count_marked_stale(own_stack, start_cluster, redis_url, tmp_path):
    stack = own_stack()
    api = start_api(start_cluster, redis_url, stack.url, tmp_path)
    create_users(stack.url, 3)
    wait_until(lambda: every_worker_says(api.url, count=3, stale=False), 60, interval=0.2, what="the count of 3")

    router = stack.clusters["router"]
    router.stop()
    wait_until(lambda: every_worker_says(api.url, stale=True), 60, interval=0.2, what="every worker saying stale")
    for response in answers(api.url):
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == 3  # the last value read, still served
        assert body["stale_reason"].startswith("router unavailable")
        assert body["origin"] == f"router {stack.url}/users/count"

    # Back: the next read clears it.
    stack.clusters["router"] = ClusterProcess(
        ROUTER, port=router.port, workdir=stack.workdir, workers=1, env=stack.router_env()
    )
    stack.clusters["router"].wait_ready()
    create_users(stack.url, 1, first=3)
    wait_until(
        lambda: every_worker_says(api.url, count=4, stale=False),
        60,
        interval=0.2,
        what="a fresh count of 4 after the router is back",
    )
