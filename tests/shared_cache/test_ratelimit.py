import asyncio
import time

import pytest
import redis

from scalecube.errors import DependencyUnavailable
from shared_cache import RedisConnector, SlidingWindowLimiter

PREFIX = "test:ratelimit:"


def limiter(url: str, *, limit: int, window: float) -> SlidingWindowLimiter:
    return SlidingWindowLimiter(RedisConnector(url), limit=limit, window=window, prefix=PREFIX)


def test_allows_up_to_the_limit_then_refuses_with_a_retry_after(redis_url):
    limits = limiter(redis_url, limit=3, window=30)

    async def scenario():
        return [await limits.hit("ada") for _ in range(5)]

    decisions = asyncio.run(scenario())
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0]
    assert decisions[0].retry_after == 0
    refused = decisions[3]
    assert 29 < refused.retry_after <= 30
    assert refused.retry_after_header == "30"


def test_keys_are_counted_apart_and_reset_forgets_one(redis_url):
    limits = limiter(redis_url, limit=2, window=30)

    async def scenario():
        for _ in range(2):
            await limits.hit("ada")
        blocked = await limits.hit("ada")
        other = await limits.hit("grace")
        await limits.reset("ada")
        return blocked, other, await limits.hit("ada")

    blocked, other, after_reset = asyncio.run(scenario())
    assert not blocked.allowed
    assert other.allowed and other.remaining == 1
    assert after_reset.allowed and after_reset.remaining == 1


def test_the_window_slides_one_attempt_at_a_time(redis_url):
    """Attempts at t=0 and t=0.4 with limit 2 / 1 s: at t≈1.05 one slot is free, not two."""
    limits = limiter(redis_url, limit=2, window=1.0)

    async def scenario():
        await limits.hit("k")
        await asyncio.sleep(0.4)
        await limits.hit("k")
        refused = await limits.hit("k")
        await asyncio.sleep(max(0.0, refused.retry_after) + 0.05)  # the moment the first attempt ages out
        return refused, await limits.hit("k"), await limits.hit("k")

    refused, one_free, still_full = asyncio.run(scenario())
    assert not refused.allowed and 0.4 < refused.retry_after <= 0.6  # the first attempt's expiry, not the window's
    assert one_free.allowed and one_free.remaining == 0
    assert not still_full.allowed and 0.2 < still_full.retry_after <= 0.4  # now waiting on the t=0.4 attempt


def test_refused_attempts_do_not_extend_the_wait(redis_url):
    limits = limiter(redis_url, limit=1, window=0.5)

    async def scenario():
        await limits.hit("k")
        for _ in range(5):  # hammering while blocked records nothing
            assert not (await limits.hit("k")).allowed
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        return await limits.hit("k")

    assert asyncio.run(scenario()).allowed


def test_concurrent_attempts_never_exceed_the_limit(redis_url):
    limits = limiter(redis_url, limit=10, window=30)

    async def scenario():
        return await asyncio.gather(*(limits.hit("crowd") for _ in range(60)))

    decisions = asyncio.run(scenario())
    assert sum(d.allowed for d in decisions) == 10


def test_keys_expire_once_idle_and_hold_at_most_limit_entries(redis_url):
    limits = limiter(redis_url, limit=3, window=0.3)

    async def scenario():
        for _ in range(10):
            await limits.hit("k")

    asyncio.run(scenario())
    with redis.Redis.from_url(redis_url) as client:
        assert client.zcard(PREFIX + "k") == 3
        assert 0 < client.pttl(PREFIX + "k") <= 300
        time.sleep(0.4)
        assert client.exists(PREFIX + "k") == 0


def test_bad_parameters_are_refused(redis_url):
    with pytest.raises(ValueError):
        limiter(redis_url, limit=0, window=1)
    with pytest.raises(ValueError):
        limiter(redis_url, limit=1, window=0)


def test_redis_down_is_a_dependency_error_not_a_free_pass(own_redis):
    async def scenario():
        limits = limiter(own_redis.url, limit=5, window=30)
        assert (await limits.hit("k")).allowed
        await asyncio.to_thread(own_redis.stop)
        with pytest.raises(DependencyUnavailable) as caught:
            await limits.hit("k")
        await asyncio.to_thread(own_redis.start)  # a restarted Redis has no scripts cached: reloaded by itself
        return caught.value, await limits.hit("k")

    error, after = asyncio.run(scenario())
    assert error.dependency == "redis"
    assert after.allowed
