"""The one place that owns a redis.asyncio client: pool, timeouts, retries, errors."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kit.errors import DependencyUnavailable

# What "Redis is unreachable" looks like: redis-py's connection/timeout errors and
# the builtin TimeoutError raised when an operation overruns its deadline.
UNREACHABLE_ERRORS = (RedisConnectionError, RedisTimeoutError, TimeoutError)

_DETAIL_LIMIT = 160


class RedisConnector:
    """Builds and owns the asyncio Redis client of the current process and event loop.

    ``password`` is sent to a Redis that requires one (``requirepass``): the services pass their
    ``REDIS_PASSWORD`` setting, so no URL has to carry it (a password in the URL still wins).
    ``op_timeout`` bounds one whole operation (retries included) so a request gets
    its 503 in about that long instead of hanging on a dead or frozen Redis.
    Recovery after an outage is redis-py's job: broken pooled connections are
    dropped and re-dialled by the retry policy, so the same connector keeps working.
    """

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        connect_timeout: float = 1.0,
        op_timeout: float = 2.0,
        retries: int = 2,
        health_check_interval: int = 15,
    ) -> None:
        self._url = url
        self._password = password
        self._connect_timeout = connect_timeout
        self._op_timeout = op_timeout
        self._retries = retries
        self._health_check_interval = health_check_interval
        self._client: aioredis.Redis | None = None
        self._owner: tuple[int, asyncio.AbstractEventLoop | None] | None = None

    @property
    def url(self) -> str:
        return self._url

    @property
    def client(self) -> aioredis.Redis:
        """The shared client, created lazily for the calling process and event loop.

        Its sockets and pool locks belong to the loop that created it, so a worker
        forked after the connector was built, or a new event loop, gets its own
        client rather than inheriting one that cannot work there.
        """
        owner = (os.getpid(), _running_loop())
        if self._client is None or self._owner != owner:
            self._client = self._build_client()
            self._owner = owner
        return self._client

    def dedicated_client(self) -> aioredis.Redis:
        """A new client with its own pool, for long-lived blocking use like pub/sub.

        The caller owns it and must ``aclose()`` it.
        """
        return self._build_client()

    @asynccontextmanager
    async def operation(self, action: str) -> AsyncIterator[None]:
        """Bound a block of Redis calls by ``op_timeout`` and turn "Redis is
        unreachable" into ``DependencyUnavailable("redis", ...)``.

        Wrap Redis calls only: user code inside would inherit the deadline and
        could have its own timeouts blamed on Redis.
        """
        try:
            async with asyncio.timeout(self._op_timeout):
                yield
        except UNREACHABLE_ERRORS as error:
            reason = str(error) or f"timed out after {self._op_timeout:g}s"
            raise DependencyUnavailable("redis", f"{action}: {reason}"[:_DETAIL_LIMIT]) from error

    async def ping(self) -> bool:
        """Whether Redis answers right now; never raises (for health checks)."""
        try:
            async with self.operation("ping"):
                return bool(await self.client.ping())
        except (DependencyUnavailable, RedisError, OSError):
            return False

    async def close(self) -> None:
        """Close this loop's client; a later use builds a fresh one."""
        client, self._client = self._client, None
        owner, self._owner = self._owner, None
        if client is not None and owner == (os.getpid(), _running_loop()):
            await client.aclose()

    def _build_client(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(
            self._url,
            password=self._password,  # redis-py: a password in the URL overrides this one
            socket_connect_timeout=self._connect_timeout,
            socket_timeout=self._op_timeout,
            retry=Retry(
                ExponentialBackoff(cap=0.25, base=0.02),
                self._retries,
                supported_errors=(RedisConnectionError, RedisTimeoutError),
            ),
            health_check_interval=self._health_check_interval,
        )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
