"""``MemoryReadThroughCache``: ReadThroughCache's interface in one process's memory, in-process and fast.

The clock is a test's own (``Clock``): expiry is driven by moving it, never by sleeping.
"""

from __future__ import annotations

import asyncio

import pytest

from shared_cache import CacheTimeout, MemoryReadThroughCache
from tests.shared_cache.test_cache import Source


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cache(clock: Clock, **options) -> MemoryReadThroughCache:
    return MemoryReadThroughCache(clock=clock, **options)


def test_a_fresh_value_is_a_hit_and_an_expired_one_is_recomputed():
    clock, source = Clock(), Source()
    cache = _cache(clock)

    async def scenario():
        first = await cache.lookup("k", 10, source)
        again = await cache.lookup("k", 10, source)
        clock.now += 10  # exactly at expiry: no longer fresh
        expired = await cache.lookup("k", 10, source)
        return first, again, expired

    first, again, expired = asyncio.run(scenario())
    assert (first.value, first.outcome) == ({"generation": 1}, "computed")
    assert (again.value, again.outcome) == ({"generation": 1}, "hit")
    assert (expired.value, expired.outcome) == ({"generation": 2}, "computed")
    assert source.calls == 2


def test_concurrent_callers_of_a_cold_key_share_one_computation():
    clock, source = Clock(), Source().gated()
    cache = _cache(clock)

    async def scenario():
        tasks = [asyncio.create_task(cache.lookup("k", 10, source)) for _ in range(200)]
        await source.started()
        await asyncio.sleep(0.01)  # every other task is now waiting on the key's lock
        source.release()
        return await asyncio.gather(*tasks)

    found = asyncio.run(scenario())
    assert source.calls == 1
    assert {f.value["generation"] for f in found} == {1}
    outcomes = [f.outcome for f in found]
    assert outcomes.count("computed") == 1 and outcomes.count("waited") == 199


def test_the_stale_value_is_served_while_one_task_recomputes():
    clock, source = Clock(), Source()
    cache = _cache(clock, stale_grace=30)

    async def scenario():
        await cache.lookup("k", 10, source)
        clock.now += 11  # expired, within the grace
        source.gated()
        recompute = asyncio.create_task(cache.lookup("k", 10, source))
        await source.started(2)
        served = [await cache.lookup("k", 10, source) for _ in range(50)]
        still_recomputing = not recompute.done()
        source.release()
        return served, still_recomputing, await recompute

    served, still_recomputing, recomputed = asyncio.run(scenario())
    assert still_recomputing and {(f.value["generation"], f.outcome) for f in served} == {(1, "stale")}
    assert (recomputed.value, recomputed.outcome) == ({"generation": 2}, "computed")
    assert source.calls == 2


def test_past_the_grace_callers_wait_for_the_new_value_instead():
    clock, source = Clock(), Source()
    cache = _cache(clock, stale_grace=5)

    async def scenario():
        await cache.lookup("k", 10, source)
        clock.now += 16  # past expiry + grace: too old to serve
        source.gated()
        recompute = asyncio.create_task(cache.lookup("k", 10, source))
        await source.started(2)
        waiter = asyncio.create_task(cache.lookup("k", 10, source))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        source.release()
        return await recompute, await waiter

    recomputed, waited = asyncio.run(scenario())
    assert (waited.value, waited.outcome) == ({"generation": 2}, "waited")
    assert recomputed.outcome == "computed" and source.calls == 2


def test_a_waiter_takes_over_when_the_computing_task_fails():
    clock = Clock()
    cache = _cache(clock)

    async def scenario():
        doomed, own = Source(fail=True).gated(), Source()
        failing = asyncio.create_task(cache.lookup("k", 10, doomed))
        await doomed.started()
        waiter = asyncio.create_task(cache.lookup("k", 10, own))
        await asyncio.sleep(0.01)
        doomed.release()
        with pytest.raises(ValueError, match="backend exploded"):
            await failing
        return await waiter, own.calls

    found, calls = asyncio.run(scenario())
    assert (found.value, found.outcome, calls) == ({"generation": 1}, "computed", 1)


def test_waiting_without_a_value_is_bounded():
    clock, source = Clock(), Source().gated()
    cache = _cache(clock, wait_timeout=0.05)

    async def scenario():
        holder = asyncio.create_task(cache.lookup("k", 10, source))
        await source.started()
        with pytest.raises(CacheTimeout) as raised:
            await cache.lookup("k", 10, Source())
        source.release()
        await holder
        return raised.value

    error = asyncio.run(scenario())
    assert error.dependency == "cache" and error.key == "k"


def test_each_cache_is_its_own_memory():
    # Two workers' caches: each computes its own copy (what the Redis cache is there to avoid).
    clock, source = Clock(), Source()
    workers = [_cache(clock), _cache(clock)]

    async def scenario():
        return [await cache.lookup("k", 10, source) for cache in workers for _ in range(3)]

    found = asyncio.run(scenario())
    assert source.calls == 2 and [f.outcome for f in found].count("computed") == 2


def test_entries_are_bounded():
    clock, source = Clock(), Source()
    cache = _cache(clock, max_entries=3)

    async def scenario():
        for index in range(10):
            clock.now += 1
            await cache.lookup(f"k{index}", 100, source)
        return await cache.lookup("k9", 100, source), await cache.lookup("k0", 100, source)

    newest, oldest = asyncio.run(scenario())
    assert len(cache._entries) == 3
    assert newest.outcome == "hit" and oldest.outcome == "computed"  # the soonest to expire went first


def test_invalidate_and_ttl_validation():
    clock, source = Clock(), Source()
    cache = _cache(clock)

    async def scenario():
        await cache.lookup("k", 10, source)
        await cache.invalidate("k")
        with pytest.raises(ValueError, match="ttl"):
            await cache.lookup("k", 0, source)
        return await cache.get_or_compute("k", 10, source)

    assert asyncio.run(scenario()) == {"generation": 2}
