"""Pub/sub broadcast to every worker of every container sharing one Redis.

Delivery is Redis pub/sub's: at most once, to whoever is subscribed at that
moment. Messages published while a listener is reconnecting are not replayed.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared_cache.connection import RedisConnector

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[None] | None]


class RedisBroadcast:
    """Publish JSON messages on one channel; ``listen`` delivers them to a handler."""

    def __init__(
        self,
        connector: RedisConnector,
        channel: str = "scalecube:broadcast",
        *,
        reconnect_cap: float = 2.0,
    ) -> None:
        self._redis = connector
        self._channel = channel
        self._reconnect_backoff = ExponentialBackoff(cap=reconnect_cap, base=0.05)

    @property
    def channel(self) -> str:
        return self._channel

    async def publish(self, message: Any) -> int:
        """Send ``message`` (JSON-serialisable); returns how many listeners got it."""
        payload = json.dumps(message)
        async with self._redis.operation("broadcast publish"):
            return int(await self._redis.client.publish(self._channel, payload))

    async def subscribers(self) -> int:
        """How many listeners are subscribed right now (across all processes)."""
        async with self._redis.operation("broadcast subscribers"):
            [(_, count)] = await self._redis.client.pubsub_numsub(self._channel)
        return int(count)

    async def listen(self, handler: Handler) -> None:
        """Call ``handler(message)`` for every message until cancelled.

        Survives Redis outages: reconnects with capped backoff, warning once per
        outage. A failing handler or an undecodable message is logged and skipped,
        never the end of the listener.
        """
        failures = 0
        while True:
            # Its own client: a subscribed connection is tied up for good and
            # must not be taken from (or returned to) the shared pool.
            client = self._redis.dedicated_client()
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    if failures:
                        log.info("broadcast listener on %r reconnected to redis", self._channel)
                    failures = 0
                    async for raw in pubsub.listen():
                        await self._deliver(handler, raw)
            except (RedisConnectionError, RedisTimeoutError, OSError) as error:
                if failures == 0:
                    log.warning(
                        "broadcast listener on %r lost redis (%s); reconnecting",
                        self._channel,
                        error,
                    )
                failures += 1
            finally:
                await client.aclose()
            await asyncio.sleep(self._reconnect_backoff.compute(failures))

    async def _deliver(self, handler: Handler, raw: dict) -> None:
        if raw.get("type") != "message":
            return
        try:
            message = json.loads(raw["data"])
        except ValueError:
            log.warning("ignoring undecodable broadcast message on %r", self._channel)
            return
        try:
            result = handler(message)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("broadcast handler failed on a message from %r", self._channel)
