"""A shard of the users store (``scalecube serve services.shard.app:app``).

Environment: ``SHARD_NAME`` (``shard-a``), ``SHARD_REDIS_URL`` (its own Redis, holding only
its countries' users), ``MAX_PAGE``, and every service's (``LOG_LEVEL``, ...).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from services.common.app import create_service_app
from services.shard import routes
from services.shard.settings import ShardSettings
from services.shard.store import UserStore
from shared_cache.connection import RedisConnector

settings = ShardSettings.load()
connector = RedisConnector(settings.store_url, password=settings.redis_password_value)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await connector.close()


app = create_service_app(settings.shard_name, settings, readiness={"redis": connector.ping}, lifespan=lifespan)
app.state.store = UserStore(connector)
app.include_router(routes.router)
app.include_router(routes.admin)
