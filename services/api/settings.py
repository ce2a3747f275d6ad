"""The api's environment (on top of every service's: REDIS_URL, SESSION_*, ...)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import NonNegativeFloat, PositiveFloat, field_validator

from services.api.chaos import parse_crash_after
from services.common.settings import ServiceSettings


class ApiSettings(ServiceSettings):
    requires_session_secret = True  # it signs the session cookies: no secret, no start
    users_count_interval: PositiveFloat = 10.0  # USERS_COUNT_INTERVAL: how often the count is refreshed
    # broadcast: the master reads once per interval and tells every worker (the guides' way);
    # worker: every worker reads for itself — N reads per interval, what broadcasting avoids.
    users_count_mode: Literal["broadcast", "worker"] = "broadcast"
    users_source_delay: NonNegativeFloat = 0.2  # USERS_SOURCE_DELAY: every read of the count is slowed on purpose
    # ROUTER_URL (e.g. http://router:8000): the users count is the router's (GET /users/count, the users
    # created through /users); unset, a stand-in (the names that logged in here), named as such.
    router_url: str | None = None
    router_timeout_seconds: PositiveFloat = 2.0  # ROUTER_TIMEOUT_SECONDS: one read of the router's count
    # GET /report's cache (the cache demo): redis, one copy for the whole deployment, recomputed once per
    # expiry; memory, a copy per worker process, recomputed by each — the guides' "every worker has its own memory".
    cache_backend: Literal["redis", "memory"] = "redis"  # CACHE_BACKEND
    cache_ttl_seconds: PositiveFloat = 5.0  # CACHE_TTL_SECONDS: how long a computed report is served as fresh
    report_source_delay: NonNegativeFloat = 0.5  # REPORT_SOURCE_DELAY: every computation of a report, slowed on purpose
    cookie_secure: bool = False  # COOKIE_SECURE=1 behind TLS
    # AUTH_URL (e.g. http://auth:8000): logins are checked by the auth service; unset, a name is enough.
    auth_url: str | None = None
    auth_timeout_seconds: PositiveFloat = 5.0  # AUTH_TIMEOUT_SECONDS: one call to auth (a login hashes: ~20 ms)
    auth_connect_timeout_seconds: PositiveFloat = 1.0  # AUTH_CONNECT_TIMEOUT_SECONDS
    # CHAOS_CRASH_AFTER="MIN,MAX": each worker exits abruptly after a random delay (services/api/chaos.py)
    chaos_crash_after: str | None = None

    @field_validator("chaos_crash_after")
    @classmethod
    def _crash_window_is_valid(cls, value: str | None) -> str | None:
        return value if parse_crash_after(value) else None

    @field_validator("auth_url", "router_url")
    @classmethod
    def _url_is_http(cls, value: str | None) -> str | None:
        if not value:
            return None
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value
