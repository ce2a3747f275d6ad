"""The router's environment (on top of every service's)."""

from __future__ import annotations

from pathlib import Path

from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt, field_validator

from services.common.settings import ServiceSettings
from services.router.shard_map import DEFAULT_MAP_FILE, ShardMapError, parse_shard_urls


class RouterSettings(ServiceSettings):
    router_redis_url: str = ""  # ROUTER_REDIS_URL: the directory and the map overrides (REDIS_URL when unset)
    shard_map: Path = DEFAULT_MAP_FILE  # SHARD_MAP: the map file
    shard_urls: str = ""  # SHARD_URLS: shard-a=http://127.0.0.1:8101,shard-b=http://127.0.0.1:8102
    shard_timeout: PositiveFloat = 2.0  # SHARD_TIMEOUT: seconds for a shard to answer
    shard_connect_timeout: PositiveFloat = 0.5  # SHARD_CONNECT_TIMEOUT
    shard_max_connections: PositiveInt = 16  # SHARD_MAX_CONNECTIONS: per shard, per worker
    map_cache_seconds: NonNegativeFloat = 1.0  # MAP_CACHE_SECONDS: how stale a worker's map may be
    move_wait_seconds: PositiveFloat = 5.0  # MOVE_WAIT_SECONDS: how long a write waits out a move's flip

    @field_validator("router_redis_url")
    @classmethod
    def _router_redis_url_is_redis(cls, value: str) -> str:
        return cls._redis_url_has_a_redis_scheme(value) if value else value

    @field_validator("shard_urls")
    @classmethod
    def _shard_urls_parse(cls, value: str) -> str:
        try:
            parse_shard_urls(value)
        except ShardMapError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def directory_url(self) -> str:
        return self.router_redis_url or self.redis_url

    @property
    def urls(self) -> dict[str, str]:
        return parse_shard_urls(self.shard_urls)
