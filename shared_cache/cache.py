"""Read-through cache in Redis with stampede protection across processes.

When a key expires, exactly one caller in the whole deployment (every worker of
every container sharing the Redis) recomputes it: it holds a short Redis lock
(redis-py's ``Lock``: SET NX PX with a random token, released by a
compare-and-delete Lua script). Everyone else serves the previous value, which
is kept ``stale_grace`` seconds past its soft expiry for exactly this, or, when
there is none, polls until the winner's value appears.

Guarantee and its limit: one recomputation per expiry as long as ``compute``
finishes within ``lock_ttl``; past that the lock lapses and another caller may
start a second one (logged). Freshness is judged on each worker's wall clock,
so containers are assumed to have synchronised clocks.

``MemoryReadThroughCache`` is the same interface kept in one process's memory:
stampede-safe within that process (an asyncio lock per key), but every worker of
every container keeps, and recomputes, its own copy — the guides' "every worker
has its own memory", which the shared store fixes (``scalecube demo cache``).

``lookup`` says how each value was got (``Outcome``): served fresh, served stale
while another caller recomputed, waited for another caller's value, or computed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio.lock import Lock
from redis.backoff import EqualJitterBackoff
from redis.exceptions import LockNotOwnedError

from kit.errors import DependencyUnavailable
from shared_cache.connection import RedisConnector

log = logging.getLogger(__name__)


class CacheTimeout(DependencyUnavailable):
    """No value for a key after waiting ``wait_timeout`` for another caller's
    recomputation (and no stale value to serve meanwhile).

    A ``DependencyUnavailable`` so services answer 503, naming the dependency
    ``"cache"``: Redis itself answered; what is slow or failing is whatever the
    recomputation talks to.
    """

    def __init__(self, key: str, waited: float) -> None:
        super().__init__("cache", f"no value for {key!r} after waiting {waited:g}s for its recomputation")
        self.key = key


@dataclass(frozen=True)
class _Entry:
    value: Any
    fresh: bool


# hit: fresh; stale: the previous value, while another caller recomputes; waited: another caller's
# new value, after waiting for it (there was none to serve); computed: this caller recomputed it.
Outcome = Literal["hit", "stale", "waited", "computed"]
OUTCOMES: tuple[Outcome, ...] = ("hit", "stale", "waited", "computed")


@dataclass(frozen=True)
class Lookup:
    value: Any
    outcome: Outcome


class ReadThroughCache:
    """``get_or_compute`` over Redis; values must be JSON-serialisable."""

    def __init__(
        self,
        connector: RedisConnector,
        *,
        prefix: str = "scalecube:cache:",
        lock_ttl: float = 5.0,
        wait_timeout: float = 5.0,
        stale_grace: float = 30.0,
    ) -> None:
        self._redis = connector
        self._prefix = prefix
        self._lock_ttl = lock_ttl
        self._wait_timeout = wait_timeout
        self._stale_grace = stale_grace
        self._poll_backoff = EqualJitterBackoff(cap=0.2, base=0.01)

    async def get_or_compute(self, key: str, ttl: float, compute: Callable[[], Awaitable[Any]]) -> Any:
        """The cached value of ``key``, recomputed by one caller when it expires.

        Raises ``DependencyUnavailable("redis")`` when Redis is unreachable,
        ``CacheTimeout`` when the wait for another caller's value runs out, and
        whatever ``compute`` raises when this caller was the one computing.
        """
        return (await self.lookup(key, ttl, compute)).value

    async def lookup(self, key: str, ttl: float, compute: Callable[[], Awaitable[Any]]) -> Lookup:
        """``get_or_compute``, saying how the value was got (for metrics and answers)."""
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        entry = await self._read(key)
        if entry is not None and entry.fresh:
            return Lookup(entry.value, "hit")
        return await self._refresh(key, ttl, compute, stale=entry)

    async def invalidate(self, key: str) -> None:
        """Forget ``key``; the next read recomputes it (without a stale fallback)."""
        async with self._redis.operation("cache invalidate"):
            await self._redis.client.delete(self._data_key(key))

    # -- the protocol --------------------------------------------------------------

    async def _refresh(
        self, key: str, ttl: float, compute: Callable[[], Awaitable[Any]], stale: _Entry | None
    ) -> Lookup:
        deadline = time.monotonic() + self._wait_timeout
        polls = 0
        while True:
            lock = await self._try_lock(key)
            if lock is not None:
                return await self._recompute_holding(lock, key, ttl, compute)
            if stale is not None:
                return Lookup(stale.value, "stale")  # someone else is refreshing it right now
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CacheTimeout(key, self._wait_timeout)
            polls += 1
            await asyncio.sleep(min(self._poll_backoff.compute(polls), remaining))
            entry = await self._read(key)
            if entry is not None:
                return Lookup(entry.value, "waited")  # the winner's value (there was none before)
            # Still nothing: loop and try the lock again, in case the winner failed
            # or died and its lock is gone.

    async def _recompute_holding(
        self, lock: Lock, key: str, ttl: float, compute: Callable[[], Awaitable[Any]]
    ) -> Lookup:
        try:
            # Check again under the lock: the previous holder may have written the
            # value between our read and our lock, and must not be recomputed twice.
            entry = await self._read(key)
            if entry is not None and entry.fresh:
                return Lookup(entry.value, "waited")
            value = await compute()
            await self._write(key, value, ttl)
            return Lookup(value, "computed")
        finally:
            await self._release(lock, key)

    # -- Redis calls ---------------------------------------------------------------

    async def _read(self, key: str) -> _Entry | None:
        async with self._redis.operation("cache read"):
            raw = await self._redis.client.get(self._data_key(key))
        if raw is None:
            return None
        try:
            envelope = json.loads(raw)
            return _Entry(envelope["v"], time.time() < envelope["exp"])
        except (ValueError, KeyError, TypeError):
            log.warning("treating undecodable cache entry %r as missing", key)
            return None

    async def _write(self, key: str, value: Any, ttl: float) -> None:
        envelope = json.dumps({"v": value, "exp": time.time() + ttl})
        # Redis keeps it past its soft expiry so others can serve it while one recomputes.
        keep_ms = max(1, int((ttl + self._stale_grace) * 1000))
        async with self._redis.operation("cache write"):
            await self._redis.client.set(self._data_key(key), envelope, px=keep_ms)

    async def _try_lock(self, key: str) -> Lock | None:
        # A new Lock per attempt, not thread-local: concurrent tasks must not share a token.
        lock = self._redis.client.lock(self._lock_key(key), timeout=self._lock_ttl, blocking=False, thread_local=False)
        async with self._redis.operation("cache lock"):
            return lock if await lock.acquire() else None

    async def _release(self, lock: Lock, key: str) -> None:
        # Never raise from here: it runs in a finally, where it would mask the
        # computed value or compute's own error. A lock we cannot delete expires.
        try:
            async with self._redis.operation("cache unlock"):
                await lock.release()
        except LockNotOwnedError:
            log.warning(
                "recomputing %r outlived lock_ttl=%gs; another caller may have recomputed it too",
                key,
                self._lock_ttl,
            )
        except DependencyUnavailable as error:
            log.warning("could not release the cache lock of %r (%s); it will expire", key, error)

    def _data_key(self, key: str) -> str:
        return f"{self._prefix}data:{key}"

    def _lock_key(self, key: str) -> str:
        return f"{self._prefix}lock:{key}"


@dataclass(frozen=True)
class _MemoryEntry:
    value: Any
    expires: float  # this process's monotonic clock


class MemoryReadThroughCache:
    """``ReadThroughCache``'s interface in this process's memory: one recomputation per expiry per process.

    Within the process, one task recomputes an expired key (it holds the key's asyncio lock) while
    the others serve the previous value (kept ``stale_grace`` seconds past its expiry) or, when there
    is none, wait for the new one, at most ``wait_timeout`` (then ``CacheTimeout``). Nothing is
    shared: each worker of each container computes its own. At most ``max_entries`` keys are kept
    (the ones furthest past their expiry go first). Values are kept as given, not copied.
    """

    def __init__(
        self,
        *,
        wait_timeout: float = 5.0,
        stale_grace: float = 30.0,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wait_timeout = wait_timeout
        self._stale_grace = stale_grace
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, _MemoryEntry] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get_or_compute(self, key: str, ttl: float, compute: Callable[[], Awaitable[Any]]) -> Any:
        return (await self.lookup(key, ttl, compute)).value

    async def lookup(self, key: str, ttl: float, compute: Callable[[], Awaitable[Any]]) -> Lookup:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None and now < entry.expires:
            return Lookup(entry.value, "hit")
        lock = self._locks.setdefault(key, asyncio.Lock())
        if lock.locked() and entry is not None and now < entry.expires + self._stale_grace:
            return Lookup(entry.value, "stale")  # another task of this process is recomputing it
        waited = lock.locked()
        try:
            async with asyncio.timeout(self._wait_timeout):
                await lock.acquire()
        except TimeoutError:
            raise CacheTimeout(key, self._wait_timeout) from None
        try:
            # Check again under the lock: the task that held it has just written the value.
            entry = self._entries.get(key)
            if entry is not None and self._clock() < entry.expires:
                return Lookup(entry.value, "waited" if waited else "hit")
            value = await compute()
            self._entries[key] = _MemoryEntry(value, self._clock() + ttl)
            self._bound()
            return Lookup(value, "computed")
        finally:
            lock.release()

    async def invalidate(self, key: str) -> None:
        """Forget ``key`` in this process; the next read recomputes it (without a stale fallback)."""
        self._entries.pop(key, None)

    def _bound(self) -> None:
        if len(self._entries) <= self._max_entries:
            return
        now = self._clock()
        for key in [k for k, e in self._entries.items() if now >= e.expires + self._stale_grace]:
            del self._entries[key]
        while len(self._entries) > self._max_entries:
            del self._entries[min(self._entries, key=lambda k: self._entries[k].expires)]
        for key in [k for k, lock in self._locks.items() if k not in self._entries and not lock.locked()]:
            del self._locks[key]
