"""A shard's environment (on top of every service's)."""

from __future__ import annotations

from pydantic import Field, field_validator

from services.common.settings import ServiceSettings


class ShardSettings(ServiceSettings):
    shard_name: str = Field(default="shard", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")  # SHARD_NAME: shard-a, ...
    # SHARD_REDIS_URL: the shard's own Redis, holding only its users (REDIS_URL when unset).
    shard_redis_url: str = ""
    max_page: int = Field(default=1000, ge=1, le=10_000)  # MAX_PAGE: largest page a listing or export returns

    @field_validator("shard_redis_url")
    @classmethod
    def _shard_redis_url_is_redis(cls, value: str) -> str:
        return cls._redis_url_has_a_redis_scheme(value) if value else value

    @property
    def store_url(self) -> str:
        return self.shard_redis_url or self.redis_url
