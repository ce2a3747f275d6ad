"""``GET /report`` through its cache, as the api really runs: a cluster of workers, a real Redis, real HTTP.

Computations are counted at the source (``REPORT_READS_KEY`` in the api's Redis, by reader), never timed.
"""

from __future__ import annotations

import asyncio
import collections
import time

import httpx
import redis

from services.api.report import REPORT_READERS_KEY, REPORT_READS_KEY
from tests.services.api.test_api import fresh

CONCURRENT = 60


def burst(url: str, path: str, count: int = CONCURRENT) -> list[httpx.Response]:
    """``count`` requests at once, each on its own new connection (rr spreads them over the workers)."""

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
            return await asyncio.gather(*(client.get(path) for _ in range(count)))

    return asyncio.run(run())


def source_counts(redis_url: str) -> tuple[int, dict[str, int]]:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        readers = {reader: int(n) for reader, n in client.hgetall(REPORT_READERS_KEY).items()}
        return int(client.get(REPORT_READS_KEY) or 0), readers


def metric(text: str, outcome: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("cache_lookups_total{") and f'outcome="{outcome}"' in line
    )


def test_redis_cache_computes_once_for_every_worker(start_api, redis_url):
    # A slow source keeps every request of the burst inside one computation's window.
    api = start_api(
        redis_url, workers=2, env={"CACHE_BACKEND": "redis", "REPORT_SOURCE_DELAY": "1", "CACHE_TTL_SECONDS": "60"}
    )
    answers = burst(api.url, "/report?key=hot")

    assert [r.status_code for r in answers] == [200] * CONCURRENT
    bodies = [r.json() for r in answers]
    assert len({b["served_by"] for b in bodies}) == 2  # both workers answered
    reads, readers = source_counts(redis_url)
    assert reads == 1 and sum(readers.values()) == 1, readers  # one computation for the whole cluster
    assert {b["computed_by"] for b in bodies} == set(readers)
    assert {b["cache"] for b in bodies} == {"redis"} and len({b["computed_at"] for b in bodies}) == 1
    outcomes = collections.Counter(b["outcome"] for b in bodies)
    assert outcomes["computed"] == 1 and set(outcomes) <= {"computed", "waited", "hit"}, outcomes
    with fresh(api.url) as client:
        text = client.get("/metrics").text
        assert client.get("/report?key=other").json()["outcome"] == "computed"  # another key, its own value
    assert metric(text, "computed") == 1 and sum(metric(text, o) for o in outcomes) == CONCURRENT
    assert source_counts(redis_url)[0] == 2


def test_memory_cache_computes_once_per_worker(start_api, redis_url):
    api = start_api(
        redis_url, workers=2, env={"CACHE_BACKEND": "memory", "REPORT_SOURCE_DELAY": "1", "CACHE_TTL_SECONDS": "60"}
    )
    answers = burst(api.url, "/report?key=hot")

    assert [r.status_code for r in answers] == [200] * CONCURRENT
    bodies = [r.json() for r in answers]
    workers = {b["served_by"] for b in bodies}
    assert len(workers) == 2
    reads, readers = source_counts(redis_url)
    # Each worker computed its own copy, once: stampede-safe within a process, not across them.
    assert reads == 2 and readers == dict.fromkeys(workers, 1), readers
    assert all(b["computed_by"] == b["served_by"] and b["cache"] == "memory" for b in bodies)
    assert collections.Counter(b["outcome"] for b in bodies)["computed"] == 2


def test_an_expired_report_is_recomputed_once(start_api, redis_url):
    api = start_api(
        redis_url, workers=2, env={"CACHE_BACKEND": "redis", "REPORT_SOURCE_DELAY": "0", "CACHE_TTL_SECONDS": "0.3"}
    )
    with fresh(api.url) as client:
        first = client.get("/report").json()
        assert first["key"] == "daily" and first["outcome"] == "computed" and first["ttl_seconds"] == 0.3
    reads = source_counts(redis_url)[0]
    assert reads == 1
    # Expired: asked until a new computation is seen (counted, not timed), then it is served to everyone.
    with fresh(api.url) as client:
        for _ in range(200):
            if client.get("/report").json()["computed_at"] != first["computed_at"]:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the report was never recomputed after its TTL")
    assert source_counts(redis_url)[0] == 2


def test_bad_keys_are_refused_with_json(start_api, redis_url):
    api = start_api(redis_url, workers=1)
    with fresh(api.url) as client:
        for key in ("Daily", "a b", "-lead", "x" * 33, ""):
            response = client.get("/report", params={"key": key})
            assert response.status_code == 422 and response.json()["error"] == "validation_error", key
            assert not key or key not in response.json()["message"]  # the rejected value is never echoed
    assert source_counts(redis_url)[0] == 0


def test_redis_down_the_redis_cache_answers_503_the_memory_cache_keeps_serving(start_api, own_redis):
    shared = start_api(own_redis.url, workers=1, env={"CACHE_BACKEND": "redis", "REPORT_SOURCE_DELAY": "0"})
    own = start_api(own_redis.url, workers=1, env={"CACHE_BACKEND": "memory", "REPORT_SOURCE_DELAY": "0"})
    own_redis.stop()
    with fresh(shared.url) as client:
        down = client.get("/report")
        assert down.status_code == 503 and down.headers["retry-after"] == "1"
        assert down.json()["error"] == "dependency_unavailable" and down.json()["dependency"] == "redis"
        assert client.get("/").status_code == 200 and client.get("/cpu?iterations=10").status_code == 200
    with fresh(own.url) as client:
        served = client.get("/report")  # computed in memory; only its counting at the source was lost
        assert served.status_code == 200 and served.json()["cache"] == "memory"
