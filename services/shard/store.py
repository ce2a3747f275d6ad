"""The users of one shard, in the shard's own Redis.

Keys (``shard:`` prefix; a shard owns its whole Redis, so the shard's name is not in them):

==========================  ======  ===============================================
``shard:user:{id}``         hash    ``id name country created_at``
``shard:country:{CC}``      zset    the country's user ids, scored by write sequence
``shard:countries``         set     countries that have (had) users here
``shard:seq``               string  the write sequence: +1 per user written
``shard:fences``            hash    ``CC -> frozen|moved`` while a move takes CC away
==========================  ======  ===============================================

The zset per country makes "list by country" a range read, "count" a ``ZCARD``, and
"what was written after sequence S" — what a move's catch-up asks — a range read too:
every write (create or overwrite) takes the next sequence number, so a copy that
walks a country by sequence sees every write that committed before it reached the end.

Fences are what make a move safe without trusting anyone's cached map. They are checked
inside the same Lua script that writes, so every write either committed before the fence
(and the move's final catch-up, which runs after the fence, copies it) or is refused:

- ``frozen``: writes for the country are refused (``CountryFenced``); reads still served.
- ``moved``: the country now lives elsewhere: writes and listings are refused (a stale
  router re-reads the map and asks the new owner); get-by-id still answers until cleanup,
  and the country's users may then be deleted (``delete_country`` refuses an unfenced one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from shared_cache.connection import RedisConnector

PREFIX = "shard:"
FENCES_KEY = PREFIX + "fences"
USER_FIELDS = ("name", "country", "created_at")
FENCE_STATES = ("frozen", "moved")


class CountryFenced(Exception):
    """A write (or listing) refused because a move is taking the country away from this shard."""

    def __init__(self, country: str, state: str) -> None:
        super().__init__(f"{country} is {state} on this shard")
        self.country = country
        self.state = state


class NotFenced(Exception):
    """``delete_country`` on a country this shard still owns: refused."""


class LuaScript:
    """A Lua script run by SHA, loaded on first use on each server (and again after a restart)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, client: aioredis.Redis, *args: Any) -> Any:
        try:
            return await client.evalsha(self.sha, 0, *args)
        except NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, 0, *args)


# ARGV: prefix, then (id, name, country, created_at) per user. All or nothing: one fenced
# country (the new one, or the one an overwritten user leaves) refuses the whole batch.
UPSERT = LuaScript("""
local p = ARGV[1]
for i = 2, #ARGV, 4 do
  local state = redis.call('HGET', p .. 'fences', ARGV[i + 2])
  if state then return {-1, ARGV[i + 2], state} end
  local old = redis.call('HGET', p .. 'user:' .. ARGV[i], 'country')
  if old and old ~= ARGV[i + 2] then
    state = redis.call('HGET', p .. 'fences', old)
    if state then return {-1, old, state} end
  end
end
local created, updated = 0, 0
for i = 2, #ARGV, 4 do
  local id, country = ARGV[i], ARGV[i + 2]
  local key = p .. 'user:' .. id
  local old = redis.call('HGET', key, 'country')
  local seq = redis.call('INCR', p .. 'seq')
  if old then
    updated = updated + 1
    if old ~= country then redis.call('ZREM', p .. 'country:' .. old, id) end
  else
    created = created + 1
  end
  redis.call('HSET', key, 'id', id, 'name', ARGV[i + 1], 'country', country, 'created_at', ARGV[i + 3])
  redis.call('ZADD', p .. 'country:' .. country, seq, id)
  redis.call('SADD', p .. 'countries', country)
end
return {created, updated}
""")

# ARGV: prefix, country, after (exclusive sequence), limit, refuse_moved (1|0).
# Returns {status, fence, scanned, last_seq, id, name, country, created_at, id, ...}; status -1: refused.
RANGE = LuaScript("""
local p, cc = ARGV[1], ARGV[2]
local fence = redis.call('HGET', p .. 'fences', cc) or ''
if ARGV[5] == '1' and fence == 'moved' then return {-1, fence} end
local ids = redis.call('ZRANGEBYSCORE', p .. 'country:' .. cc, '(' .. ARGV[3], '+inf',
                       'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[4]))
local out = {0, fence, #ids / 2, ids[#ids] or ''}
for i = 1, #ids, 2 do
  local f = redis.call('HMGET', p .. 'user:' .. ids[i], 'name', 'country', 'created_at')
  if f[2] then
    out[#out + 1] = ids[i]; out[#out + 1] = f[1]; out[#out + 1] = f[2]; out[#out + 1] = f[3]
  end
end
return out
""")

# ARGV: prefix, country, limit. Returns {deleted, remaining}, or {-1, 0} when not fenced.
DELETE_COUNTRY = LuaScript("""
local p, cc = ARGV[1], ARGV[2]
if not redis.call('HGET', p .. 'fences', cc) then return {-1, 0} end
local zkey = p .. 'country:' .. cc
local ids = redis.call('ZRANGE', zkey, 0, tonumber(ARGV[3]) - 1)
for _, id in ipairs(ids) do
  local key = p .. 'user:' .. id
  if redis.call('HGET', key, 'country') == cc then redis.call('DEL', key) end
  redis.call('ZREM', zkey, id)
end
local remaining = redis.call('ZCARD', zkey)
if remaining == 0 then redis.call('SREM', p .. 'countries', cc) end
return {#ids, remaining}
""")

# ARGV: prefix. Returns {country, count, ...} for countries with users, then '--', then fences.
STATS = LuaScript("""
local p = ARGV[1]
local out = {}
for _, cc in ipairs(redis.call('SMEMBERS', p .. 'countries')) do
  local n = redis.call('ZCARD', p .. 'country:' .. cc)
  if n > 0 then out[#out + 1] = cc; out[#out + 1] = n end
end
out[#out + 1] = '--'
for _, v in ipairs(redis.call('HGETALL', p .. 'fences')) do out[#out + 1] = v end
return out
""")


@dataclass(frozen=True)
class Page:
    """Users in write order; ``last``: the sequence of the last one (continue after it);
    ``more``: the page was full, so more may follow right away."""

    users: list[dict[str, str]]
    last: int | None
    more: bool
    fence: str | None


@dataclass(frozen=True)
class Stats:
    per_country: dict[str, int]
    fences: dict[str, str]

    @property
    def total(self) -> int:
        return sum(self.per_country.values())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class UserStore:
    def __init__(self, connector: RedisConnector) -> None:
        self.connector = connector

    async def upsert(self, users: Sequence[dict[str, str]]) -> tuple[int, int]:
        """Create or overwrite each user by id, atomically; ``(created, updated)``.

        Raises ``CountryFenced`` (and writes nothing) if a move is taking a country away.
        """
        if not users:
            return 0, 0
        args: list[str] = [PREFIX]
        for user in users:
            args += [user["id"], user["name"], user["country"], user["created_at"]]
        async with self.connector.operation("upsert users"):
            reply = await UPSERT(self.connector.client, *args)
        if int(reply[0]) < 0:
            raise CountryFenced(_text(reply[1]), _text(reply[2]))
        return int(reply[0]), int(reply[1])

    async def get(self, user_id: str) -> dict[str, str] | None:
        async with self.connector.operation("get user"):
            name, country, created_at = await self.connector.client.hmget(PREFIX + "user:" + user_id, USER_FIELDS)
        if country is None:
            return None
        return {"id": user_id, "name": _text(name), "country": _text(country), "created_at": _text(created_at)}

    async def page(self, country: str, *, after: int = 0, limit: int = 100, refuse_moved: bool = True) -> Page:
        """The country's users written after sequence ``after``, oldest first.

        ``refuse_moved``: the public listing refuses a country that has moved away
        (``CountryFenced``), so a stale router asks the new owner; a move's export does not.
        """
        async with self.connector.operation("list users"):
            reply = await RANGE(self.connector.client, PREFIX, country, after, limit, int(refuse_moved))
        if int(reply[0]) < 0:
            raise CountryFenced(country, _text(reply[1]))
        fence = _text(reply[1]) or None
        scanned, last = int(reply[2]), _text(reply[3])
        rows = reply[4:]
        users = [
            {
                "id": _text(rows[i]),
                "name": _text(rows[i + 1]),
                "country": _text(rows[i + 2]),
                "created_at": _text(rows[i + 3]),
            }
            for i in range(0, len(rows), 4)
        ]
        return Page(users, int(float(last)) if last else None, scanned >= limit, fence)

    async def stats(self) -> Stats:
        async with self.connector.operation("count users"):
            reply = [_text(v) for v in await STATS(self.connector.client, PREFIX)]
        split = reply.index("--")
        counts, fences = reply[:split], reply[split + 1 :]
        return Stats(
            per_country={counts[i]: int(counts[i + 1]) for i in range(0, len(counts), 2)},
            fences={fences[i]: fences[i + 1] for i in range(0, len(fences), 2)},
        )

    async def fence(self, country: str, state: str) -> None:
        if state not in FENCE_STATES:
            raise ValueError(f"fence state must be one of {FENCE_STATES}")
        async with self.connector.operation("fence country"):
            await self.connector.client.hset(FENCES_KEY, country, state)

    async def unfence(self, country: str) -> None:
        async with self.connector.operation("unfence country"):
            await self.connector.client.hdel(FENCES_KEY, country)

    async def delete_country(self, country: str, *, limit: int = 500) -> tuple[int, int]:
        """Delete up to ``limit`` of a fenced country's users: ``(deleted, remaining)``."""
        async with self.connector.operation("delete users"):
            deleted, remaining = await DELETE_COUNTRY(self.connector.client, PREFIX, country, limit)
        if int(deleted) < 0:
            raise NotFenced(f"{country} is not fenced on this shard: it still owns it")
        return int(deleted), int(remaining)
