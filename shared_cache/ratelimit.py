"""Rate limiting in Redis: a sliding-window log, shared by every worker of every container.

Each key is a sorted set of the attempts it made within the last ``window``
seconds (score: the time of the attempt). One Lua script drops the attempts
that have aged out, counts the rest and, if there is room, records the new one —
atomically, so concurrent attempts from any number of processes never let more
than ``limit`` through in any window.

Why a log rather than a fixed-window counter: a fixed window lets ``2 × limit``
through around a window boundary, and its Retry-After points at the boundary
rather than at the moment an attempt really becomes possible. The log is exact,
and bounded: a refused attempt is not recorded, so a key never holds more than
``limit`` entries (a few dozen bytes each), and it expires once idle for a window.

Two ways to use it. ``hit(key)``: every attempt counts, and one that would exceed the limit is
refused (registrations). ``check(key)`` then ``record(key)``: only what the caller records counts
— failed logins — and ``check`` refuses once ``limit`` of them fall within the window; ``check``
records nothing, so a successful login never uses up the limit.

Time comes from the Redis server (``TIME`` in the script), not from the callers:
containers with drifting clocks still agree.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

from shared_cache.connection import RedisConnector

# Every script: KEYS[1] the attempts of one key (a sorted set scored by Redis's own clock, in ms);
# ARGV: window (ms), limit, and for the writing ones a unique member for this attempt. It starts by
# forgetting what left the window.
_PRUNE = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
"""
# Full: the next attempt fits once the oldest of the last `limit` attempts ages out.
_FULL = """
local oldest = redis.call('ZRANGE', KEYS[1], used - limit, used - limit, 'WITHSCORES')
return {0, 0, tonumber(oldest[2]) + window - now}
"""

# Record the attempt if there is room. Returns {allowed (0|1), attempts left, ms until one could be allowed}.
_HIT = (
    _PRUNE
    + """
if used < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, limit - used - 1, 0}
end
"""
    + _FULL
)

# The same answer, read only (the prune aside): whether one more would fit.
_CHECK = (
    _PRUNE
    + """
if used < limit then
  return {1, limit - used, 0}
end
"""
    + _FULL
)

# Record one event whatever the count; keep only the newest `limit` (all a check needs). Returns the count.
_RECORD = (
    _PRUNE
    + """
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(limit + 1))
redis.call('PEXPIRE', KEYS[1], window)
return redis.call('ZCARD', KEYS[1])
"""
)


@dataclass(frozen=True)
class Decision:
    """The outcome of one attempt."""

    allowed: bool
    remaining: int  # attempts still allowed in the current window (after this one)
    retry_after: float  # seconds until an attempt could be allowed again; 0 when allowed

    @property
    def retry_after_header(self) -> str:
        """``Retry-After`` in whole seconds, rounded up: never invites a retry that is still too early."""
        return str(max(1, math.ceil(self.retry_after)))


class SlidingWindowLimiter:
    """At most ``limit`` attempts per key in any ``window``-second span.

    ``hit(key)`` records an attempt if there is room and says whether it may
    proceed; ``check(key)`` says whether one more would fit, recording nothing;
    ``record(key)`` records one, room or not; ``reset(key)`` forgets a key's
    attempts (after a successful login, say). Raises ``DependencyUnavailable("redis")`` when Redis is unreachable:
    a limiter that cannot count must not silently let everything through.
    """

    def __init__(self, connector: RedisConnector, *, limit: int, window: float, prefix: str) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if window <= 0:
            raise ValueError("window must be positive")
        self._redis = connector
        self.limit = limit
        self.window = window
        self._window_ms = max(1, round(window * 1000))
        self._prefix = prefix

    async def hit(self, key: str) -> Decision:
        member = secrets.token_hex(8)  # unique, so attempts in the same millisecond all count
        async with self._redis.operation("rate limit"):
            script = self._redis.client.register_script(_HIT)  # EVALSHA, loading the script if Redis lacks it
            allowed, remaining, retry_ms = await script(
                keys=[self.key(key)], args=[self._window_ms, self.limit, member]
            )
        return Decision(bool(allowed), int(remaining), max(0, int(retry_ms)) / 1000)

    async def check(self, key: str) -> Decision:
        async with self._redis.operation("rate limit check"):
            script = self._redis.client.register_script(_CHECK)
            allowed, remaining, retry_ms = await script(keys=[self.key(key)], args=[self._window_ms, self.limit])
        return Decision(bool(allowed), int(remaining), max(0, int(retry_ms)) / 1000)

    async def record(self, key: str) -> int:
        """Count one event (a failed login); returns how many the window now holds (at most ``limit``)."""
        member = secrets.token_hex(8)
        async with self._redis.operation("rate limit record"):
            script = self._redis.client.register_script(_RECORD)
            return int(await script(keys=[self.key(key)], args=[self._window_ms, self.limit, member]))

    async def reset(self, key: str) -> None:
        async with self._redis.operation("rate limit reset"):
            await self._redis.client.delete(self.key(key))

    def key(self, key: str) -> str:
        return self._prefix + key
