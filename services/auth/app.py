"""The auth service (``scalecube serve services.auth.app:app``): credentials, login tokens, rate limits."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from services.auth import routes
from services.auth.accounts import Accounts, LoginLimits
from services.auth.passwords import Passwords
from services.auth.settings import AuthSettings
from services.auth.store import RATE_LIMIT_PREFIX, CredentialStore
from services.common.app import create_service_app
from shared_cache.connection import RedisConnector
from shared_cache.ratelimit import SlidingWindowLimiter

settings = AuthSettings.load()
connector = RedisConnector(settings.auth_redis_url, password=settings.redis_password_value)


def limiter(limit: int, window: float) -> SlidingWindowLimiter | None:
    return SlidingWindowLimiter(connector, limit=limit, window=window, prefix=RATE_LIMIT_PREFIX) if limit else None


passwords = Passwords(
    time_cost=settings.argon2_time_cost,
    memory_kib=settings.argon2_memory_kib,
    parallelism=settings.argon2_parallelism,
    threads=settings.hash_threads,
)
accounts = Accounts(
    CredentialStore(connector, token_ttl_seconds=settings.token_ttl_seconds),
    passwords,
    LoginLimits(
        per_username=limiter(settings.login_user_limit, settings.login_user_window_seconds),
        per_ip=limiter(settings.login_ip_limit, settings.login_ip_window_seconds),
        registrations_per_ip=limiter(settings.register_ip_limit, settings.register_ip_window_seconds),
    ),
)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await passwords.warm_up()
    try:
        yield
    finally:
        passwords.close()
        await connector.close()


app = create_service_app("auth", settings, readiness={"redis": connector.ping}, lifespan=lifespan)
app.state.accounts = accounts
app.include_router(routes.router)
