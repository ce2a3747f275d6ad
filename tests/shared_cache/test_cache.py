from __future__ import annotations

import asyncio
import collections
import multiprocessing
import time

import pytest
import redis

from kit.errors import DependencyUnavailable
from shared_cache import CacheTimeout, ReadThroughCache, RedisConnector
from tests.support.child_processes import running

PREFIX = "test:cache:"


class Source:
    """A backing service that counts how often it is asked.

    ``gated()`` makes it answer only once ``release()`` is called: a test can then hold a recomputation
    (and the lock it takes) open for exactly as long as it needs, however slow the machine, instead of
    hoping a delay outlasts what it does meanwhile.
    """

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail
        self._gate: asyncio.Event | None = None

    def gated(self) -> Source:
        self._gate = asyncio.Event()
        return self

    def release(self) -> None:
        assert self._gate is not None
        self._gate.set()

    async def started(self, calls: int = 1) -> None:
        """Until ``calls`` computations have begun (the first has taken the lock by then)."""
        async with asyncio.timeout(10):
            while self.calls < calls:
                await asyncio.sleep(0.005)

    async def __call__(self) -> dict:
        self.calls += 1
        if self._gate is not None:
            await self._gate.wait()
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
        source.gated()
        recompute = asyncio.create_task(cache.get_or_compute("k", 60, source))
        await source.started(2)  # the recomputation holds the lock, and cannot finish until released
        served = await asyncio.wait_for(cache.get_or_compute("k", 60, source), 10)
        still_recomputing = not recompute.done()
        source.release()
        return served, still_recomputing, await recompute

    served, still_recomputing, recomputed = asyncio.run(scenario())

    assert served == {"generation": 1} and still_recomputing  # answered without waiting for the recompute
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
    # A lock left behind would be sat out: a wait of lock_ttl (5 s), or a CacheTimeout after wait_timeout
    # (5 s). A free lock costs a few Redis round trips: milliseconds, so 5 s is generous on a busy machine.
    assert took < 5


def test_a_waiter_takes_over_when_the_computing_caller_fails(redis_url):
    cache = _cache(redis_url, wait_timeout=30.0)

    async def scenario():
        doomed, own = Source(fail=True).gated(), Source()
        failing = asyncio.create_task(cache.get_or_compute("k", 60, doomed))
        await doomed.started()  # it holds the lock
        waiter = asyncio.create_task(cache.get_or_compute("k", 60, own))
        await asyncio.sleep(0.2)  # the waiter polls meanwhile (no value, the lock taken): it cannot finish
        assert not waiter.done() and own.calls == 0
        doomed.release()  # the computing caller fails, and lets the lock go
        with pytest.raises(ValueError):
            await failing
        return await asyncio.wait_for(waiter, 10), own.calls

    assert asyncio.run(scenario()) == ({"generation": 1}, 1)  # the waiter computed it itself


def test_waiting_without_a_stale_value_is_bounded(redis_url):
    cache = _cache(redis_url, wait_timeout=0.3)

    async def scenario():
        slow = Source().gated()  # a recomputation that never ends while the other caller waits
        computing = asyncio.create_task(cache.get_or_compute("k", 60, slow))
        await slow.started()
        started = time.monotonic()
        with pytest.raises(CacheTimeout) as caught:
            # Unbounded, the wait would last as long as the gate stays shut: wait_for's 10 s would end it.
            await asyncio.wait_for(cache.get_or_compute("k", 60, Source()), 10)
        waited = time.monotonic() - started
        slow.release()
        await computing
        return caught.value, waited

    error, waited = asyncio.run(scenario())

    assert isinstance(error, DependencyUnavailable) and error.dependency == "cache"
    # It waited its wait_timeout, then gave up by itself (a CacheTimeout, above). The upper bound only tells
    # 0.3 s from the 5 s of lock_ttl or of the default wait_timeout: ten times over, for a busy machine.
    assert 0.3 <= waited < 3.0


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
        found = await asyncio.gather(*(cache.lookup("hot", 60, compute) for _ in range(TASKS_PER_PROCESS)))
        return [(f.value, f.outcome) for f in found]

    barrier.wait(timeout=60)  # every process starts at once (8 interpreters starting on a busy machine)
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
        found = [pair for _ in workers for pair in results.get(timeout=60)]
        for worker in workers:
            worker.join(10)
    served = [value for value, _ in found]
    outcomes = collections.Counter(outcome for _, outcome in found)

    assert [worker.exitcode for worker in workers] == [0] * PROCESSES

    with redis.Redis.from_url(redis_url) as client:
        assert client.get(f"{PREFIX}compute-runs") == b"1"
    assert len(served) == PROCESSES * TASKS_PER_PROCESS
    fresh = {"generation": 1, "run": 1}
    if stale_grace:
        # Losers served the stale value instead of waiting; the winner the new one.
        assert fresh in served
        assert all(value in (fresh, {"generation": 0}) for value in served)
        # One caller in the whole deployment said it computed; the others served stale (or, arriving
        # after the write, the fresh value: a hit, or the re-check under a lock just freed).
        assert outcomes["computed"] == 1 and set(outcomes) <= {"computed", "stale", "hit", "waited"}, outcomes
    else:
        assert served == [fresh] * len(served)
        assert outcomes["computed"] == 1 and set(outcomes) <= {"computed", "waited", "hit"}, outcomes
    assert asyncio.run(cache.get_or_compute("hot", 60, Source())) == fresh
