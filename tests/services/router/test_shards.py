"""The router -> shard hop (``services.router.shards``): pooled, bounded, and failing by name.

Real router and shard clusters; a "hung" shard is a real one frozen with SIGSTOP.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import psutil

from infra.local.processes import ClusterProcess, wait_until


def shard_connections(cluster: ClusterProcess) -> int:
    """Established TCP connections on the shard's port: here only the router's pool opens any."""
    return sum(
        1
        for conn in psutil.net_connections(kind="tcp")
        if conn.laddr and conn.laddr.port == cluster.port and conn.status == psutil.CONN_ESTABLISHED
    )


def cluster_pids(cluster: ClusterProcess) -> list[int]:
    return [cluster.pid, *(worker["pid"] for worker in cluster.status()["workers"])]


def test_the_pool_per_shard_is_bounded_reused_and_leaks_nothing(own_stack):
    stack = own_stack(router_workers=1, router_env={"SHARD_MAX_CONNECTIONS": "4"})
    with stack.client() as client:
        user_id = client.post("/users", json={"name": "amelie", "country": "FR"}).json()["id"]

    def burst(_: int) -> list[int]:
        with stack.client() as client:  # one client connection per thread: 24 concurrent requests at the router
            return [client.get(f"/users/{user_id}").status_code for _ in range(25)]

    shard = stack.clusters["shard-a"]
    for _ in range(2):
        with ThreadPoolExecutor(24) as pool:
            statuses = [status for batch in pool.map(burst, range(24)) for status in batch]
        assert statuses == [200] * len(statuses)  # 24 callers queued for 4 connections, none timed out
        # Kept alive for the next requests (pooled, not one per request), and never more than the limit.
        assert 1 <= shard_connections(shard) <= 4
    assert shard_connections(stack.clusters["shard-b"]) == 0  # nothing asked shard-b: no connection to it


# Long against a request to a live shard (milliseconds, even with both cores busy), short against the
# client's 10 s: what the bounds below tell apart.
SHARD_TIMEOUT = 2.0


def test_a_frozen_shard_costs_a_bounded_wait_and_a_503_naming_it(own_stack):
    stack = own_stack(
        router_workers=1, router_env={"SHARD_TIMEOUT": str(SHARD_TIMEOUT), "SHARD_CONNECT_TIMEOUT": "0.5"}
    )
    with stack.client() as client:
        fr = client.post("/users", json={"name": "amelie", "country": "FR"}).json()
        us = client.post("/users", json={"name": "sam", "country": "US"}).json()
        assert client.get(f"/users/{us['id']}").status_code == 200  # a pooled connection to shard-b now exists
        frozen = cluster_pids(stack.clusters["shard-b"])
        try:
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
            for path in (f"/users/{us['id']}", f"/users/{us['id']}"):  # the pooled connection, then a new one
                started = time.monotonic()
                response = client.get(path)
                waited = time.monotonic() - started
                assert response.status_code == 503, response.text
                assert response.json()["dependency"] == "shard-b" and "shard-b" in response.json()["message"]
                # SHARD_TIMEOUT (one, not one per retry), not the client's 10 s; the router's timer may fire a
                # little early by our clock, and late on a busy machine.
                assert SHARD_TIMEOUT - 0.1 <= waited < SHARD_TIMEOUT + 3.0, waited
            started = time.monotonic()
            assert client.get(f"/users/{fr['id']}").status_code == 200  # shard-a's pool is not shard-b's
            assert time.monotonic() - started < SHARD_TIMEOUT - 0.1  # not held up by frozen shard-b
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        # The timed-out connections were dropped, not returned to the pool with a late answer in them.
        wait_until(lambda: client.get(f"/users/{us['id']}").status_code == 200, 10, what="shard-b answering again")
        for _ in range(20):
            found = client.get(f"/users/{us['id']}")
            assert found.status_code == 200 and found.json()["name"] == "sam"


def test_a_restarted_shard_is_served_at_once_on_fresh_connections(own_stack):
    stack = own_stack(router_workers=1)
    with stack.client() as client:
        fr = client.post("/users", json={"name": "amelie", "country": "FR"}).json()

    def read(_: int) -> int:
        with stack.client() as client:
            return client.get(f"/users/{fr['id']}").status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(read, range(32))) == {200}  # several pooled connections to shard-a
    stack.clusters["shard-a"].stop()
    stack.start_shard("shard-a")  # waits until it listens again; the pooled connections are all dead
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(read, range(32))) == [200] * 32  # no 503 from a dead pooled connection
