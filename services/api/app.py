"""The api: the cloned service of the scale cube (``scalecube serve services.api.app:app``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from cluster import current_worker
from kit.signing import Signer
from services.api import announcements, chaos, clone, sessions, users_count, users_source
from services.api.auth_client import AuthServiceAuthenticator
from services.api.settings import ApiSettings
from services.common.app import create_service_app
from shared_cache.broadcast import RedisBroadcast
from shared_cache.sessions import MemorySessionStore, RedisSessionStore

settings = ApiSettings.load()
connector = settings.redis_connector()  # REDIS_URL, or the primary the REDIS_SENTINELS name
# With ROUTER_URL the users count is the router's (the users created through /users); without it, the stand-in.
reading, logins, router_users = users_source.reading_from(settings, connector)
# With AUTH_URL the auth service checks credentials (decomposing); without it a name is enough.
authenticator: sessions.Authenticator = (
    AuthServiceAuthenticator(
        settings.auth_url, timeout=settings.auth_timeout_seconds, connect_timeout=settings.auth_connect_timeout_seconds
    )
    if settings.auth_url
    else sessions.NameOnly()
)


def make_session_service() -> sessions.SessionService:
    store = (
        RedisSessionStore(connector, ttl_seconds=settings.session_ttl_seconds)
        if settings.session_backend == "redis"
        else MemorySessionStore(ttl_seconds=settings.session_ttl_seconds)
    )
    return sessions.SessionService(
        store,
        Signer(settings.session_secret_value, salt="session"),
        authenticator,
        logins,
        ttl_seconds=settings.session_ttl_seconds,
        secure_cookie=settings.cookie_secure,
        backend=settings.session_backend,
    )


def follows_master_broadcast() -> bool:
    return settings.users_count_mode == "broadcast" and current_worker() is not None


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    background: list[asyncio.Task[Any]] = []
    holder: users_count.UsersCount = app.state.users_count
    worker = current_worker()
    if follows_master_broadcast():
        assert worker is not None
        worker.on_message(
            lambda message: (
                isinstance(message, dict) and "users_count" in message and holder.update(message["users_count"])
            )
        )
    else:
        background.append(asyncio.create_task(users_count.poll_forever(reading, holder, settings.users_count_interval)))
    background.append(asyncio.create_task(app.state.broadcast.listen(app.state.last_heard.hear)))
    crash_timer = chaos.arm(chaos.parse_crash_after(settings.chaos_crash_after))  # the availability demo
    try:
        yield
    finally:
        if crash_timer is not None:
            crash_timer.cancel()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await authenticator.aclose()
        if router_users is not None:
            await router_users.aclose()
        await connector.close()


# /readyz reports Redis without failing on it (services.common.health): most of the api (/, /cpu,
# /users/count, ...) works without Redis or auth, so neither outage may take a replica out of the
# balancers. Only the requests that need them (login, /session/me) answer 503 naming them.
app = create_service_app("api", settings, readiness={"redis": connector.ping}, lifespan=lifespan)
app.state.sessions = make_session_service()
app.state.users_count = users_count.UsersCount(
    "master broadcast" if follows_master_broadcast() else "worker poll", reading.source.origin
)
app.state.broadcast = RedisBroadcast(connector, announcements.CHANNEL)
app.state.last_heard = announcements.LastHeard()
for module in (clone, users_count, sessions, announcements):
    app.include_router(module.router)
