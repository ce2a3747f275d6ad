"""The router's logic: look up the owner, then ask it.

**Write order of ``POST /users``** — so a crash anywhere leaves no user a client can see
without a directory entry:

1. the router chooses the id (128 random bits) and the creation time;
2. it writes the directory entry ``id -> country`` (``HSETNX``: an intent; nothing is
   confirmed yet) and waits for Redis to acknowledge it;
3. it upserts the user on the country's owner shard (``PUT /users/{id}``: idempotent);
4. only then it answers 201.

A crash (router, network, shard) between 2 and 3 leaves a directory entry whose user does
not exist: ``GET`` finds the entry, asks the shard, gets 404 and answers 404 — the truth, and
no client was ever told the user exists. The reverse, a user on a shard that the directory
does not know, cannot happen: the shard is written only after the entry is acknowledged. A
failed step 3 answers 503 naming the shard; if the shard had in fact written the user, it is
a complete user (entry and data), merely unconfirmed. So the directory is never missing an
entry for a confirmed user — as long as the router's Redis keeps what it acknowledged: run
it with ``appendonly yes`` (``appendfsync always`` to survive a power cut, not only a crash).
Entries left by step 2 alone cost a few bytes each; they make the directory count run ahead
of the shards' sum by the number of such crashes.

**Moves.** A write refused because the owner is fenced (``CountryFenced``: a move is
flipping the country) is retried against a freshly read map until ``MOVE_WAIT_SECONDS``:
clients of that country see a pause of a few milliseconds, never an error, unless a move
stalls (then 503 ``country_moving``). A 404 from the owner for an id the directory knows,
and a listing refused as "moved", are also retried once against a fresh map: a worker's
cached map may be up to ``MAP_CACHE_SECONDS`` old.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException

from services.router.directory import Directory
from services.router.shard_map import LiveMap
from services.router.shards import CountryFenced, ShardClient, ShardResponse

MAX_ID_ATTEMPTS = 3


def new_user_id() -> str:
    return secrets.token_hex(16)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CountryMoving(HTTPException):
    def __init__(self, country: str, waited: float) -> None:
        super().__init__(
            503,
            {
                "error": "country_moving",
                "country": country,
                "message": f"{country} is being moved between shards and its writes are paused "
                f"(waited {waited:.1f}s); retry shortly",
            },
            headers={"Retry-After": "1"},
        )


class UserRouting:
    def __init__(self, directory: Directory, live_map: LiveMap, shards: ShardClient, *, move_wait: float) -> None:
        self.directory = directory
        self.live_map = live_map
        self.shards = shards
        self.move_wait = move_wait

    async def create(self, name: str, country: str) -> tuple[dict[str, str], str]:
        """Directory entry first, then the shard (see the module docstring). ``(user, shard)``."""
        for _ in range(MAX_ID_ATTEMPTS):
            user_id = new_user_id()
            if await self.directory.record(user_id, country):
                break
        else:  # 128 random bits colliding three times: the random source is broken
            raise RuntimeError("could not allocate a fresh user id")
        user = {"id": user_id, "name": name, "country": country, "created_at": now_iso()}
        shard = await self._write(user)
        return user, shard

    async def _write(self, user: dict[str, str]) -> str:
        started = time.monotonic()
        shard_map = await self.live_map.current()
        delay = 0.005
        while True:
            shard = shard_map.owner(user["country"])
            try:
                await self.shards.put_user(shard, user)
                return shard
            except CountryFenced:
                waited = time.monotonic() - started
                if waited > self.move_wait:
                    raise CountryMoving(user["country"], waited) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
                shard_map = await self.live_map.refresh()

    async def count(self) -> int:
        """The users the directory holds: every id step 2 recorded. Entries are never removed and a move
        leaves them as they are, so this only grows, one per create; it runs ahead of the shards' sum
        by the creates that failed after step 2 (see the module docstring). ``GET /shards`` has both."""
        return await self.directory.count()

    async def get(self, user_id: str) -> tuple[ShardResponse, str] | None:
        """The owner's answer for a user (bytes passed through), or None: no such user."""
        country = await self.directory.country_of(user_id)
        if country is None:
            return None
        shard = (await self.live_map.current()).owner(country)
        response = await self.shards.get_user(shard, user_id)
        if response.status_code == 404:
            # Our map may predate a move's flip: ask the owner a fresh map names, if another.
            fresh = (await self.live_map.refresh()).owner(country)
            if fresh == shard:
                return None
            shard, response = fresh, await self.shards.get_user(fresh, user_id)
        if response.status_code != 200:
            return None
        return response, shard

    async def list(self, country: str, *, cursor: str | None, limit: int) -> tuple[ShardResponse, str]:
        shard_map = await self.live_map.current()
        started = time.monotonic()
        while True:
            shard = shard_map.owner(country)
            try:
                return await self.shards.list_users(shard, country, cursor=cursor, limit=limit), shard
            except CountryFenced:  # "moved": our map is older than the flip
                waited = time.monotonic() - started
                if waited > self.move_wait:
                    raise CountryMoving(country, waited) from None
                await asyncio.sleep(0.005)
                shard_map = await self.live_map.refresh()

    async def report(self) -> dict[str, Any]:
        """``GET /shards``: the live map, and each shard's users (a down shard is reported down)."""
        shard_map = await self.live_map.refresh()
        answers = await asyncio.gather(*(self.shards.stats(name) for name in shard_map.shards), return_exceptions=True)
        listed = shard_map.listed()
        shards: dict[str, Any] = {}
        for name, answer in zip(shard_map.shards, answers, strict=True):
            entry: dict[str, Any] = {
                "url": self.shards.urls[name],
                "countries": sorted(cc for cc, owner in listed.items() if owner == name),
            }
            if isinstance(answer, BaseException):
                if not isinstance(answer, Exception):
                    raise answer
                entry |= {"status": "down", "error": str(answer)[:200]}
            else:
                per_country: dict[str, int] = answer["per_country"]
                owned = {cc: n for cc, n in per_country.items() if shard_map.owner(cc) == name}
                entry |= {
                    "status": "up",
                    "users": sum(owned.values()),
                    "per_country": owned,
                    # copies held for countries another shard owns: a move's copy or cleanup under way
                    "not_owned": {cc: n for cc, n in per_country.items() if cc not in owned},
                    "fences": answer.get("fences", {}),
                }
            shards[name] = entry
        return {"shards": shards, "map": shard_map.describe(), "directory": {"entries": await self.directory.count()}}
