import asyncio
import multiprocessing
import time

import pytest
import redis

from scalecube.errors import DependencyUnavailable
from shared_cache import CacheTimeout, ReadThroughCache, RedisConnector
from tests.support.child_processes import running

PREFIX = "test:cache:"


class Source:
    """A slow backing service that counts how often it is asked."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls = 0
        self.delay = delay
        self.fail = fail

    async def __call__(self) -> dict:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ValueError("backend exploded")
        return {"generation": self.calls}


def _cache(url: str, **options) -> ReadThroughCache:
    return ReadThroughCache(RedisConnector(url), prefix=PREFIX, **options)


def _lock_keys(url: str) -> list[bytes]:
    with redis.Redis.from_url(url) as client:
        return list(client.scan_iter(f"{PREFIX}lock:*"))


def test_a_fresh_value_is_served_without_recomputing(redis_url):
    cache, source = _cache(redis_url), Source()

    async def scenario():
        return [await cache.get_or_compute("k", 60, source) for _ in range(3)]

    assert asyncio.run(scenario()) == [{"generation": 1}] * 3
    assert source.calls == 1


def test_an_expired_value_is_recomputed(redis_url):
    cache, source = _cache(redis_url), Source()

    async def scenario():
        first = await cache.get_or_compute("k", 0.2, source)
        await asyncio.sleep(0.3)
        return first, await cache.get_or_compute("k", 0.2, source)

    assert asyncio.run(scenario()) == ({"generation": 1}, {"generation": 2})


def test_invalidate_forces_a_recomputation(redis_url):
    cache, source = _cache(redis_url), Source()

    async def scenario():
        await cache.get_or_compute("k", 60, source)
        await cache.invalidate("k")
        return await cache.get_or_compute("k", 60, source)

    assert asyncio.run(scenario()) == {"generation": 2}


def test_the_stale_value_is_served_while_one_caller_recomputes(redis_url):
    cache, source = _cache(redis_url, stale_grace=30), Source()

    async def scenario():
        await cache.get_or_compute("k", 0.1, source)
        await asyncio.sleep(0.2)  # now stale, still in Redis
        source.delay = 1.0
        recompute = asyncio.create_task(cache.get_or_compute("k", 60, source))
        await asyncio.sleep(0.1)  # let it take the lock
        started = time.monotonic()
        served = await cache.get_or_compute("k", 60, source)
        waited = time.monotonic() - started
        return served, waited, await recompute

    served, waited, recomputed = asyncio.run(scenario())

    assert served == {"generation": 1} and waited < 0.5  # did not wait for the recompute
    assert recomputed == {"generation": 2}
    assert source.calls == 2


def test_a_failing_compute_releases_the_lock_and_raises(redis_url):
    cache = _cache(redis_url, lock_ttl=5.0)

    async def scenario():
        with pytest.raises(ValueError, match="backend exploded"):
            await cache.get_or_compute("k", 60, Source(fail=True))
        assert _lock_keys(redis_url) == []
        started = time.monotonic()
        value = await cache.get_or_compute("k", 60, Source())
        return value, time.monotonic() - started

    value, took = asyncio.run(scenario())

    assert value == {"generation": 1}
    assert took < 1  # did not sit out lock_ttl


def test_a_waiter_takes_over_when_the_computing_caller_fails(redis_url):
    cache = _cache(redis_url, wait_timeout=5.0)

    async def scenario():
        failing = asyncio.create_task(cache.get_or_compute("k", 60, Source(delay=0.3, fail=True)))
        await asyncio.sleep(0.1)
        waiter = await cache.get_or_compute("k", 60, Source())
        with pytest.raises(ValueError):
            await failing
        return waiter

    assert asyncio.run(scenario()) == {"generation": 1}


def test_waiting_without_a_stale_value_is_bounded(redis_url):
    cache = _cache(redis_url, wait_timeout=0.3)

    async def scenario():
        slow = asyncio.create_task(cache.get_or_compute("k", 60, Source(delay=0.8)))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        with pytest.raises(CacheTimeout) as caught:
            await cache.get_or_compute("k", 60, Source())
        waited = time.monotonic() - started
        await slow
        return caught.value, waited

    error, waited = asyncio.run(scenario())

    assert isinstance(error, DependencyUnavailable) and error.dependency == "cache"
    assert 0.3 <= waited < 1.0


def test_redis_down_is_reported_as_redis_unavailable(own_redis):
    cache, source = _cache(own_redis.url), Source()
    own_redis.stop()

    with pytest.raises(DependencyUnavailable) as caught:
        asyncio.run(cache.get_or_compute("k", 60, source))

    assert caught.value.dependency == "redis"
    assert source.calls == 0


# -- stampede: many processes, one expired key ------------------------------------

PROCESSES = 8
TASKS_PER_PROCESS = 4


def _stampede_worker(url, stale_grace, barrier, results) -> None:
    connector = RedisConnector(url)
    cache = ReadThroughCache(connector, prefix=PREFIX, stale_grace=stale_grace)

    async def compute() -> dict:
        # Counted at the source, in Redis, so every process adds to one number.
        runs = await connector.client.incr(f"{PREFIX}compute-runs")
        await asyncio.sleep(0.3)  # a slow backend keeps the stampede window open
        return {"generation": 1, "run": runs}

    async def hammer() -> list:
        return await asyncio.gather(
            *(cache.get_or_compute("hot", 60, compute) for _ in range(TASKS_PER_PROCESS))
        )

    barrier.wait(timeout=30)  # every process starts at once
    results.put(asyncio.run(hammer()))


@pytest.mark.parametrize("stale_grace", [0.0, 30.0], ids=["value-gone", "stale-value-kept"])
def test_an_expired_key_is_recomputed_once_across_processes(redis_url, stale_grace):
    cache = _cache(redis_url, stale_grace=stale_grace)

    async def prime_and_expire():
        await cache.get_or_compute("hot", 0.1, lambda: asyncio.sleep(0, {"generation": 0}))
        await asyncio.sleep(0.2)

    asyncio.run(prime_and_expire())
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(PROCESSES), spawn.Queue()
    workers = [
        spawn.Process(target=_stampede_worker, args=(redis_url, stale_grace, barrier, results))
        for _ in range(PROCESSES)
    ]

    with running(*workers):
        served = [value for _ in workers for value in results.get(timeout=30)]
        for worker in workers:
            worker.join(10)

    assert [worker.exitcode for worker in workers] == [0] * PROCESSES

    with redis.Redis.from_url(redis_url) as client:
        assert client.get(f"{PREFIX}compute-runs") == b"1"
    assert len(served) == PROCESSES * TASKS_PER_PROCESS
    fresh = {"generation": 1, "run": 1}
    if stale_grace:
        # Losers served the stale value instead of waiting; the winner the new one.
        assert fresh in served
        assert all(value in (fresh, {"generation": 0}) for value in served)
    else:
        assert served == [fresh] * len(served)
    assert asyncio.run(cache.get_or_compute("hot", 60, Source())) == fresh
