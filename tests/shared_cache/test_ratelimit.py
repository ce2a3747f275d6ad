"""The sliding-window limiter against a real Redis.

The limiter takes its clock from Redis (``TIME``), so a test cannot stop time: it brackets each attempt
with this process's monotonic clock instead, and checks every ``retry_after`` against what really elapsed
between attempts (one clock for both ends of each span, both on this machine). Windows are seconds long
where a test needs an attempt to stay inside one: a loaded machine may stall a step by a good fraction of
a second, and a test must not depend on it not doing so.
"""

import asyncio
import math
import time

import pytest
import redis

from infra.local.processes import wait_until
from kit.errors import DependencyUnavailable
from shared_cache import RedisConnector, SlidingWindowLimiter
from shared_cache.ratelimit import Decision

PREFIX = "test:ratelimit:"
MS = 0.002  # the script works in whole milliseconds: rounding, at each end of a span


def limiter(url: str, *, limit: int, window: float) -> SlidingWindowLimiter:
    return SlidingWindowLimiter(RedisConnector(url), limit=limit, window=window, prefix=PREFIX)


class Timed:
    """An attempt and when it happened: Redis's TIME in the script lies between ``sent`` and ``answered``."""

    def __init__(self, decision: Decision, sent: float, answered: float) -> None:
        self.decision, self.sent, self.answered = decision, sent, answered


async def timed_hit(limits: SlidingWindowLimiter, key: str) -> Timed:
    sent = time.monotonic()
    decision = await limits.hit(key)
    return Timed(decision, sent, time.monotonic())


def assert_waits_for(refused: Timed, oldest: Timed, window: float) -> None:
    """``refused.retry_after`` is when ``oldest`` ages out, seen from ``refused``: ``window`` minus the
    time between the two attempts, which the brackets bound from both sides."""
    shortest = window - (refused.answered - oldest.sent)
    longest = window - (refused.sent - oldest.answered)
    assert shortest - MS <= refused.decision.retry_after <= longest + MS, (shortest, refused.decision, longest)


def test_allows_up_to_the_limit_then_refuses_with_a_retry_after(redis_url):
    limits = limiter(redis_url, limit=3, window=30)

    async def scenario():
        return [await timed_hit(limits, "ada") for _ in range(5)]

    attempts = asyncio.run(scenario())
    decisions = [a.decision for a in attempts]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0]
    assert decisions[0].retry_after == 0
    assert_waits_for(attempts[3], attempts[0], 30)  # the first attempt's expiry, however long the attempts took
    assert decisions[3].retry_after_header == str(math.ceil(decisions[3].retry_after))  # whole seconds, rounded up


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
    """Attempts at t=0 and t≈1 with limit 2 / 2 s: just after t=2 one slot is free, not two.

    The second attempt ages out about a second after the first: the room a stalled step has before the
    scenario no longer says what it claims (asserted: the spans really were inside the window)."""
    window = 2.0
    limits = limiter(redis_url, limit=2, window=window)

    async def scenario():
        first = await timed_hit(limits, "k")
        await asyncio.sleep(1.0)
        second = await timed_hit(limits, "k")
        refused = await timed_hit(limits, "k")
        await asyncio.sleep(refused.decision.retry_after + 0.05)  # the moment the first attempt ages out
        return first, second, refused, await timed_hit(limits, "k"), await timed_hit(limits, "k")

    first, second, refused, one_free, still_full = asyncio.run(scenario())
    assert first.decision.allowed and second.decision.allowed
    assert not refused.decision.allowed
    assert_waits_for(refused, first, window)  # the first attempt's expiry, not a whole window
    assert refused.decision.retry_after <= window - 1.0 + MS
    assert still_full.answered - second.sent < window, "stalled past the second attempt's expiry: nothing shown"
    assert one_free.decision.allowed and one_free.decision.remaining == 0
    assert not still_full.decision.allowed
    assert_waits_for(still_full, second, window)  # now waiting on the second attempt


def test_refused_attempts_do_not_extend_the_wait(redis_url):
    """Hammering while blocked records nothing: every refusal still points at the one allowed attempt's
    expiry (a recorded refusal would push it a whole window later), and that moment is when it opens."""
    window = 2.0
    limits = limiter(redis_url, limit=1, window=window)

    async def scenario():
        allowed = await timed_hit(limits, "k")
        refusals = []
        for _ in range(5):
            refusals.append(await timed_hit(limits, "k"))
            await asyncio.sleep(0.05)
        await asyncio.sleep(refusals[-1].decision.retry_after + 0.05)
        return allowed, refusals, await limits.hit("k")

    allowed, refusals, after = asyncio.run(scenario())
    assert allowed.decision.allowed
    for refused in refusals:
        assert not refused.decision.allowed
        assert_waits_for(refused, allowed, window)
    assert after.allowed


def test_concurrent_attempts_never_exceed_the_limit(redis_url):
    limits = limiter(redis_url, limit=10, window=30)

    async def scenario():
        return await asyncio.gather(*(limits.hit("crowd") for _ in range(60)))

    decisions = asyncio.run(scenario())
    assert sum(d.allowed for d in decisions) == 10


def test_keys_expire_once_idle_and_hold_at_most_limit_entries(redis_url):
    limits = limiter(redis_url, limit=3, window=2.0)

    async def scenario():
        for _ in range(10):
            await limits.hit("k")

    asyncio.run(scenario())
    with redis.Redis.from_url(redis_url) as client:
        assert client.zcard(PREFIX + "k") == 3  # refused attempts are not recorded
        assert 0 < client.pttl(PREFIX + "k") <= 2000  # expires a window after its last recorded attempt
        wait_until(lambda: client.exists(PREFIX + "k") == 0, 10, what="the idle key to expire")


def test_check_records_nothing_and_only_recorded_events_use_the_limit(redis_url):
    """check + record (failed logins): any number of checks leave the key as it was; ``limit`` records fill it."""
    limits = limiter(redis_url, limit=3, window=30)

    async def scenario():
        checks = [await limits.check("k") for _ in range(10)]  # e.g. successful logins: never counted
        counts = [await limits.record("k") for _ in range(5)]  # failures: recorded even past the limit
        sent = time.monotonic()
        refused = await limits.check("k")
        return checks, counts, Timed(refused, sent, time.monotonic())

    checks, counts, refused = asyncio.run(scenario())
    assert all(d.allowed and d.remaining == 3 for d in checks)
    assert counts == [1, 2, 3, 3, 3]  # the key keeps only the newest `limit` events
    assert not refused.decision.allowed and 0 < refused.decision.retry_after <= 30
    with redis.Redis.from_url(redis_url) as client:
        assert client.zcard(PREFIX + "k") == 3 and 0 < client.pttl(PREFIX + "k") <= 30_000


def test_a_check_allows_again_once_the_oldest_kept_event_ages_out(redis_url):
    limits = limiter(redis_url, limit=2, window=3.0)

    async def scenario():
        first_sent = time.monotonic()
        await limits.record("k")
        first = Timed(Decision(True, 0, 0), first_sent, time.monotonic())
        await asyncio.sleep(1.0)  # the second event ages out a second after the first: the check below sees it
        await limits.record("k")
        sent = time.monotonic()
        refused = Timed(await limits.check("k"), sent, time.monotonic())
        await asyncio.sleep(refused.decision.retry_after + 0.05)
        return first, refused, await limits.check("k")

    first, refused, later = asyncio.run(scenario())
    assert not refused.decision.allowed
    assert_waits_for(refused, first, 3.0)
    assert later.allowed and later.remaining == 1  # the first event aged out, the second not yet


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
