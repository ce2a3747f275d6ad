"""The one place that owns a redis.asyncio client: pool, timeouts, retries, errors.

One Redis (``REDIS_URL``), or a primary with replicas watched by Redis Sentinel: with ``sentinels`` the client
is redis-py's ``Sentinel(...).master_for(name)``, whose pool asks the sentinels for the primary's address on
every new connection and drops a connection that finds a demoted primary (``ReadOnlyError``) — so after a
failover the same connector reaches the new primary by itself. ``wait_replicas`` makes ``replicated()``
writes wait (``WAIT``) until that many replicas hold them, so an acknowledged write survives the primary.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelManagedConnection
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kit.errors import DependencyUnavailable

# What "Redis is unreachable" looks like: redis-py's connection/timeout errors and
# the builtin TimeoutError raised when an operation overruns its deadline.
UNREACHABLE_ERRORS = (RedisConnectionError, RedisTimeoutError, TimeoutError)

_DETAIL_LIMIT = 160

Address = tuple[str, int]


def parse_sentinels(value: str) -> list[Address]:
    """``"host:port,host:port,..."`` (REDIS_SENTINELS) -> [(host, port), ...]; ValueError naming a bad entry."""
    addresses = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{entry!r} is not host:port")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def url_db(url: str) -> int:
    """The database number of a redis:// URL (``/0`` when absent): a sentinel-backed client uses it too."""
    return int(parse_url(url).get("db") or 0)


class _SentinelClient(aioredis.Redis):
    """``master_for``'s client, closing the sentinel connections it discovered the primary with."""

    sentinel: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        sentinel, self.sentinel = self.sentinel, None
        if sentinel is not None:
            await sentinel.aclose()


class _SentinelConnection(SentinelManagedConnection):
    """A connection to the primary the Sentinels name *now*, however it comes to (re)connect.

    redis-py asks the Sentinels only in ``connect()``; a connection the retry policy dropped is dialled again
    through ``connect_check_health()``, at the address it had (redis/redis-py#3874, open). After a failover the
    retry of a request whose pooled connection went to the old primary dialled the old primary again, so the
    request was a 503 however long after the failover it came: measured here with the primary's packets dropped
    (iptables), every stale connection reached after the switch was refused, its retry reconnecting to the old
    port. Each (re)connect to the primary now asks the Sentinels first — a SENTINEL MASTERS round trip, only when
    a connection is opened (pooled ones are reused)."""

    async def _connect_retry(self) -> None:
        if self._reader:
            return
        if not self.connection_pool.is_master:
            await super()._connect_retry()
            return
        await self.connect_check_health(check_health=self.connection_pool.check_connection, retry_socket_connect=False)

    async def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if not self.is_connected and self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super().connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)


class RedisConnector:
    """Builds and owns the asyncio Redis client of the current process and event loop.

    ``password`` is sent to a Redis that requires one (``requirepass``): the services pass their
    ``REDIS_PASSWORD`` setting, so no URL has to carry it (a password in the URL still wins).
    ``op_timeout`` bounds one whole operation (retries included) so a request gets
    its 503 in about that long instead of hanging on a dead or frozen Redis.
    Recovery after an outage is redis-py's job: broken pooled connections are
    dropped and re-dialled by the retry policy, so the same connector keeps working.

    One attempt waits ``attempt_timeout`` for its answer (redis-py's ``socket_timeout``), a share of
    ``op_timeout`` that leaves a retry room inside it. A pooled connection whose peer vanished — the old
    primary after a failover, a machine lost: no reset ever comes — fails only when it is next used; if
    that wait took the whole deadline, each such connection would cost a request its 503 long after the
    Sentinels had promoted a replica (the node-loss demo saw session routes refused 14 s after a kill whose
    failover was over in 4.6 s). With a share, it costs the request that one wait, and the retry dials the
    primary the Sentinels name now (redis-py then drops the pool's idle connections to the old one).

    ``sentinels`` ([(host, port), ...]) and ``sentinel_master`` (the name the sentinels monitor) make the
    client find the primary through Sentinel; ``url`` then only gives the database number (and a password,
    if it carries one). ``wait_replicas``/``wait_timeout`` are what ``replicated()`` waits for.
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
        sentinels: Sequence[Address] = (),
        sentinel_master: str = "",
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        if sentinels and not sentinel_master:
            raise ValueError("sentinels need the name of the primary they monitor (sentinel_master)")
        if wait_replicas and wait_timeout >= op_timeout:
            raise ValueError(f"wait_timeout {wait_timeout:g}s must be below op_timeout {op_timeout:g}s")
        self._url = url
        self._sentinels = [(host, int(port)) for host, port in sentinels]
        self._sentinel_master = sentinel_master
        self._wait_replicas = wait_replicas
        self._wait_timeout = wait_timeout
        self._password = password
        self._connect_timeout = connect_timeout
        self._op_timeout = op_timeout
        self._retries = retries
        self._health_check_interval = health_check_interval
        self._attempt_timeout = attempt_share(op_timeout, wait_timeout if wait_replicas else 0.0)
        self._client: aioredis.Redis | None = None
        self._owner: tuple[int, asyncio.AbstractEventLoop | None] | None = None

    @property
    def url(self) -> str:
        return self._url

    @property
    def attempt_timeout(self) -> float:
        """How long one attempt waits for its answer before the retry (see the class)."""
        return self._attempt_timeout

    @property
    def sentinels(self) -> list[Address]:
        return list(self._sentinels)

    @property
    def where(self) -> str:
        """Where this connector goes, for logs and health pages (no password)."""
        if not self._sentinels:
            return self._url.split("@")[-1]
        where = ",".join(f"{host}:{port}" for host, port in self._sentinels)
        return f"sentinel {self._sentinel_master} via {where} db {url_db(self._url)}"

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

    async def replicated(self, action: str, pipeline: Any) -> list[Any]:
        """Execute ``pipeline`` (from ``client.pipeline(transaction=False)``, holding writes) and, with
        ``wait_replicas``, a ``WAIT`` for that many replicas on the same connection; return the writes'
        results. Fewer replicas within ``wait_timeout`` is ``DependencyUnavailable("redis")``: a write the
        primary alone holds could die with it, so it is not acknowledged (it expires with its TTL).

        Call it inside ``operation()``, which bounds it and turns connection errors into 503s.
        """
        if self._wait_replicas:
            pipeline.wait(self._wait_replicas, max(1, int(self._wait_timeout * 1000)))
        results = await pipeline.execute()
        if not self._wait_replicas:
            return list(results)
        *writes, acked = results
        if int(acked) < self._wait_replicas:
            raise DependencyUnavailable(
                "redis",
                f"{action}: on {acked} of {self._wait_replicas} replicas within {self._wait_timeout:g}s"[
                    :_DETAIL_LIMIT
                ],
            )
        return writes

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
        options: dict[str, Any] = {
            "socket_connect_timeout": self._connect_timeout,
            "socket_timeout": self._attempt_timeout,
            "retry": Retry(
                ExponentialBackoff(cap=0.25, base=0.02),
                self._retries,
                supported_errors=(RedisConnectionError, RedisTimeoutError),
            ),
            "health_check_interval": self._health_check_interval,
        }
        if not self._sentinels:
            # redis-py: a password in the URL overrides this one
            return aioredis.Redis.from_url(self._url, password=self._password, **options)
        password = parse_url(self._url).get("password") or self._password
        # The Sentinels themselves: short timeouts and one try each — redis-py asks the next Sentinel, so a dead
        # one must not hold the request through redis-py's default retries and backoff (seconds) — and the same
        # password as the data nodes (compose and k8s protect them alike; the local stack sets none).
        sentinel = Sentinel(
            self._sentinels,
            sentinel_kwargs={
                "socket_connect_timeout": self._connect_timeout,
                "socket_timeout": self._connect_timeout,
                "retry": Retry(NoBackoff(), 0),
                "password": password,
            },
        )
        client = sentinel.master_for(
            self._sentinel_master,
            redis_class=_SentinelClient,
            connection_class=_SentinelConnection,
            db=url_db(self._url),
            password=password,
            **options,
        )
        client.sentinel = sentinel
        return client


WAIT_MARGIN = 0.25  # an attempt outlasts a WAIT by this much: the replicas' answer still has to come back


def attempt_share(op_timeout: float, wait_timeout: float = 0.0) -> float:
    """One attempt's share of an operation's ``op_timeout``: half of it, so a retry fits in the other half; but
    longer than a ``WAIT`` that may block ``wait_timeout`` (with ``WAIT_MARGIN``), so a write waiting for its
    replicas is never cut and retried; never longer than the operation. With the services' defaults (2 s, a 1 s
    WAIT) an attempt waits 1.25 s and a retry has 0.75 s: a reconnect and one command take milliseconds."""
    if wait_timeout:
        return min(op_timeout, max(op_timeout / 2, wait_timeout + WAIT_MARGIN))
    return op_timeout / 2


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
