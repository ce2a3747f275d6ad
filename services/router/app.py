"""The router of the scale cube's Z axis (``scalecube serve services.router.app:app``).

Every user operation first looks up which shard owns the user's country, then asks that
shard only. Environment: ``ROUTER_REDIS_URL`` (the directory and the map overrides),
``SHARD_MAP`` (the map file; default ``shard_map.toml`` here), ``SHARD_URLS``
(``shard-a=http://…,shard-b=http://…``), ``SHARD_TIMEOUT``, ``MAP_CACHE_SECONDS``,
``MOVE_WAIT_SECONDS`` (``services.router.settings``). Write order and moves:
``services.router.routing`` and ``services.router.move``.

Readiness checks the router's Redis only: one shard down must not take the router out of a
balancer — the other shards' countries are still served.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from services.common.app import create_service_app
from services.common.settings import InvalidSettings
from services.router import users
from services.router.directory import Directory
from services.router.routing import UserRouting
from services.router.settings import RouterSettings
from services.router.shard_map import LiveMap, MapStore, ShardMapError, check_urls, load_base_map
from services.router.shards import ShardClient
from shared_cache.connection import RedisConnector

settings = RouterSettings.load()
try:
    base_map = load_base_map(settings.shard_map)
    check_urls(base_map, settings.urls)
except ShardMapError as exc:
    raise InvalidSettings(str(exc)) from None

connector = RedisConnector(settings.directory_url, password=settings.redis_password_value)
shard_client = ShardClient(
    settings.urls,
    timeout=settings.shard_timeout,
    connect_timeout=settings.shard_connect_timeout,
    max_connections=settings.shard_max_connections,
)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    shard_client.open()  # this worker's pool, before its first request
    try:
        yield
    finally:
        await shard_client.close()
        await connector.close()


app = create_service_app("router", settings, readiness={"redis": connector.ping}, lifespan=lifespan)
app.state.routing = UserRouting(
    Directory(connector),
    LiveMap(MapStore(connector, base_map), settings.map_cache_seconds),
    shard_client,
    move_wait=settings.move_wait_seconds,
)
app.include_router(users.router)
