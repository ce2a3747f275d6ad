"""Which shard owns a country: the map file, the overrides moves write, and the moves under way.

The *live* map is the file's map (``SHARD_MAP``, default ``shard_map.toml`` here) plus the
overrides kept in the router's Redis. Every router worker and replica reads the same
overrides, so a move's flip is seen everywhere within ``MAP_CACHE_SECONDS``.

No correctness depends on that cache: a shard refuses writes (and listings) for a country
a move has fenced on it (``services.shard.store``), and a router that is refused, or gets a
404 for a user its directory knows, re-reads the map before answering. The cache only
decides how often that happens — about never, since a move waits out the cache age before
it cleans up the old shard.

Router Redis keys:

========================  ====  ==========================================================
``router:overrides``      hash  ``CC -> shard``: where a move put a country (wins over the file)
``router:moves``          hash  ``CC -> {"source", "target", "phase", ...}`` while a move runs
``router:directory``      hash  ``user id -> CC`` (``services.router.directory``)
========================  ====  ==========================================================
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import tomllib
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kit.errors import DependencyUnavailable
from services.shard.model import is_country
from shared_cache.connection import RedisConnector

log = logging.getLogger("scalecube.router.map")

DEFAULT_MAP_FILE = Path(__file__).with_name("shard_map.toml")
OVERRIDES_KEY = "router:overrides"
MOVES_KEY = "router:moves"
SHARD_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


class ShardMapError(ValueError):
    """The map file, or the shard URLs, cannot be used."""


def stable_hash(country: str) -> int:
    """CRC-32 of the code: the same in every process (unlike ``hash``, salted per interpreter)."""
    return zlib.crc32(country.encode("ascii"))


@dataclass(frozen=True)
class BaseMap:
    """The map file: the shards (sorted by name) and the countries it lists."""

    shards: tuple[str, ...]
    assigned: Mapping[str, str]

    def hashed_owner(self, country: str) -> str:
        return self.shards[stable_hash(country) % len(self.shards)]

    def owner(self, country: str) -> str:
        return self.assigned.get(country) or self.hashed_owner(country)


def load_base_map(path: Path | str) -> BaseMap:
    """Read and check a map file; ``ShardMapError`` says what is wrong with it."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ShardMapError(f"cannot read the shard map {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ShardMapError(f"{path} is not valid TOML: {exc}") from None
    shards = data.get("shards")
    if not isinstance(shards, dict) or not shards:
        raise ShardMapError(f"{path}: needs at least one [shards.NAME] table")
    assigned: dict[str, str] = {}
    for name, table in shards.items():
        if not set(name) <= SHARD_NAME_CHARS or not name:
            raise ShardMapError(f"{path}: shard name {name!r}: use lower-case letters, digits, '-' and '_'")
        countries = table.get("countries", []) if isinstance(table, dict) else None
        if not isinstance(countries, list) or not all(isinstance(c, str) for c in countries):
            raise ShardMapError(f"{path}: [shards.{name}] countries must be a list of codes")
        for code in countries:
            if code != code.upper() or not is_country(code):
                raise ShardMapError(f"{path}: [shards.{name}] {code!r} is not an ISO 3166-1 alpha-2 code (upper case)")
            if code in assigned:
                raise ShardMapError(f"{path}: {code} is listed under both {assigned[code]} and {name}")
            assigned[code] = name
    return BaseMap(tuple(sorted(shards)), assigned)


def parse_shard_urls(text: str) -> dict[str, str]:
    """``shard-a=http://127.0.0.1:8101,shard-b=http://...`` -> ``{name: url}``."""
    urls: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, url = item.partition("=")
        name, url = name.strip(), url.strip().rstrip("/")
        if not sep or not name or not url.startswith("http://"):  # shards are internal: plain HTTP
            raise ShardMapError(f"SHARD_URLS entry {item!r}: expected NAME=http://HOST:PORT")
        urls[name] = url
    return urls


def check_urls(base: BaseMap, urls: Mapping[str, str]) -> None:
    missing = [name for name in base.shards if name not in urls]
    if missing:
        raise ShardMapError(f"no URL for {', '.join(missing)} in SHARD_URLS (have: {', '.join(urls) or 'none'})")


@dataclass(frozen=True)
class Move:
    """A move under way, as recorded in ``router:moves``.

    ``token`` names the mover running it: every change of the record is a compare-and-set on
    (token, phase), so a move that was aborted, or taken over by a resumed run, cannot flip
    the map or re-open a source behind the new owner's back.
    """

    source: str
    target: str
    phase: str  # copying -> flipping -> cleaning (the map says target from "cleaning" on)
    token: str = ""
    started_at: float = 0.0
    by: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "source": self.source,
                "target": self.target,
                "phase": self.phase,
                "token": self.token,
                "started_at": self.started_at,
                "by": self.by,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Move:
        data = json.loads(text)
        return cls(
            data["source"],
            data["target"],
            data["phase"],
            str(data.get("token", "")),
            float(data.get("started_at", 0)),
            str(data.get("by", "")),
        )

    def but(self, **changes: Any) -> Move:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ShardMap:
    """One consistent view of the live map."""

    base: BaseMap
    overrides: Mapping[str, str] = field(default_factory=dict)
    moves: Mapping[str, Move] = field(default_factory=dict)

    @property
    def shards(self) -> tuple[str, ...]:
        return self.base.shards

    def owner(self, country: str) -> str:
        return self.overrides.get(country) or self.base.owner(country)

    def listed(self) -> dict[str, str]:
        """Every country placed explicitly (file or override) -> its shard."""
        return dict(sorted({**self.base.assigned, **self.overrides}.items()))

    def describe(self) -> dict[str, Any]:
        return {
            "shards": list(self.shards),
            "countries": self.listed(),
            "overrides": dict(sorted(self.overrides.items())),
            "moving": {
                cc: {"from": m.source, "to": m.target, "phase": m.phase} for cc, m in sorted(self.moves.items())
            },
            "unlisted": f"shards[crc32(code) % {len(self.shards)}] of {list(self.shards)}",
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class MapStore:
    """The overrides and moves in the router's Redis: read by routers, written by moves."""

    def __init__(self, connector: RedisConnector, base: BaseMap) -> None:
        self.connector = connector
        self.base = base

    async def read(self) -> ShardMap:
        async with self.connector.operation("read shard map"):
            async with self.connector.client.pipeline(transaction=True) as pipe:
                overrides, moves = await pipe.hgetall(OVERRIDES_KEY).hgetall(MOVES_KEY).execute()
        known = set(self.base.shards)
        valid: dict[str, str] = {}
        for country, shard in ((_text(k), _text(v)) for k, v in overrides.items()):
            if shard in known:
                valid[country] = shard
            else:
                log.warning("ignoring override %s -> %s: no such shard in the map file", country, shard)
        return ShardMap(self.base, valid, {_text(k): Move.from_json(v) for k, v in moves.items()})

    async def claim(self, country: str, move: Move) -> Move | None:
        """Record ``move`` unless one is recorded for ``country``: None if claimed, else the existing one."""
        async with self.connector.operation("claim move"):
            if await self.connector.client.hsetnx(MOVES_KEY, country, move.to_json()):
                return None
            existing = await self.connector.client.hget(MOVES_KEY, country)
        return Move.from_json(existing) if existing else None

    async def transition(self, country: str, expected: Move, new: Move | None, *, flip: bool = False) -> bool:
        """Replace the record (``None``: delete it) if it is still ``expected`` (same token and
        phase); ``flip``: in the same transaction, make ``new.target`` the country's owner.
        False (and nothing written) if someone else changed the record."""
        override = ""
        if flip:
            assert new is not None
            override = "-" if self.base.owner(country) == new.target else new.target  # "-": the file says so already
        async with self.connector.operation("update move"):
            done = await _TRANSITION(
                self.connector.client,
                MOVES_KEY,
                OVERRIDES_KEY,
                country,
                expected.token,
                expected.phase,
                new.to_json() if new else "",
                override,
            )
        return bool(done)


# KEYS: moves, overrides. ARGV: country, token, phase, new record ("" = delete), override ("" none, "-" delete).
_TRANSITION_LUA = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current then return 0 end
local move = cjson.decode(current)
if move.token ~= ARGV[2] or move.phase ~= ARGV[3] then return 0 end
if ARGV[4] == '' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[4]) end
if ARGV[5] == '-' then
  redis.call('HDEL', KEYS[2], ARGV[1])
elseif ARGV[5] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
end
return 1
"""


async def _TRANSITION(client: Any, *args: str) -> Any:
    return await client.eval(_TRANSITION_LUA, 2, *args)


class LiveMap:
    """A router worker's view of the map, re-read at most every ``max_age`` seconds.

    When the cached map expires, concurrent requests share one read. ``refresh()`` always
    reads anew (it is what a refused write or a surprising 404 asks for: a map at least as
    new as the refusal). If the router's Redis cannot be read, the last map read stays in
    use (the shards' fences keep that safe) and the next request tries again.
    """

    def __init__(self, store: MapStore, max_age: float = 1.0) -> None:
        self.store = store
        self.max_age = max_age
        self._map: ShardMap | None = None
        self._read_at = 0.0
        self._reading: asyncio.Future[ShardMap] | None = None

    async def current(self) -> ShardMap:
        if self._map is not None and time.monotonic() - self._read_at < self.max_age:
            return self._map
        try:
            if (
                self._reading is None
                or self._reading.done()
                or self._reading.get_loop() is not asyncio.get_running_loop()
            ):
                self._reading = asyncio.ensure_future(self.refresh())
            return await asyncio.shield(self._reading)
        except DependencyUnavailable:
            if self._map is None:
                raise
            log.warning("router redis unavailable: routing on the map read %.1fs ago", time.monotonic() - self._read_at)
            return self._map

    async def refresh(self) -> ShardMap:
        """Read the map now, and cache it."""
        started = time.monotonic()
        shard_map = await self.store.read()
        if started >= self._read_at:
            self._map, self._read_at = shard_map, started
        return shard_map
