"""Where the users count comes from, and how it is read: no web framework here.

The master of an api cluster imports this (through ``services.api.master``) to read the
count once per interval and broadcast it; the workers import it through
``services.api.users_count``. See that module for the whole broadcast demo.

**Where the number comes from** (the answer's ``origin``):

- ``ROUTER_URL`` set (the whole stack): the router's ``GET /users/count``, the number of
  users its directory holds — the users created through ``POST /users``, one hash length
  (``services.router.users``). So the api's count and the router's users agree, within
  one interval.
- no router (``scalecube up --services api``): a stand-in, the api's own Redis set of the
  names that ever logged in (``scalecube:users``), named as such in every answer.

**The slow-source instrumentation** is the same for both (``CountedSource``): every read is
counted in the api's Redis (``READS_KEY``, and ``READERS_KEY``: reads per process, which
shows who pays for them) and made slower by ``USERS_SOURCE_DELAY``. The broadcast demo and
its test count those reads; they never look at the number itself.

**When the source fails** (router down, Redis down), the workers keep answering 200 with the
last value read, its age, and ``stale: true`` naming the part that failed; the next good read
clears it. Only if no read ever succeeded is the answer a 503 naming that part. The state the
master broadcasts is the whole of it (last value, last outcome), every interval, so a worker
started later, or one that missed a message, is right after the next one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from kit.errors import DependencyUnavailable
from shared_cache.connection import RedisConnector

if TYPE_CHECKING:
    from services.api.settings import ApiSettings

log = logging.getLogger("scalecube.api.users_count")  # one logger for the demo, on either side

USERS_KEY = "scalecube:users"  # the stand-in: every name that ever logged in
READS_KEY = "scalecube:users:source_reads"  # how many times the source was asked
READERS_KEY = "scalecube:users:source_readers"  # ... and by which process (pid -> reads): who pays for them
ROUTER_COUNT_PATH = "/users/count"
ROUTER = "router"  # the dependency's name in errors, as the stack names the component
_DETAIL_LIMIT = 160


class UsersSource(Protocol):
    origin: str  # said in every answer: where the number comes from

    async def count(self) -> int: ...


class LoginsSet:
    """The stand-in when no router is configured: the api's own set of the names that logged in."""

    origin = f"stand-in: names that logged in to this api (Redis set {USERS_KEY}); no ROUTER_URL configured"

    def __init__(self, connector: RedisConnector) -> None:
        self.connector = connector

    async def count(self) -> int:
        async with self.connector.operation("count users"):
            return int(await self.connector.client.scard(USERS_KEY))

    async def add(self, user: str) -> None:
        async with self.connector.operation("record user"):
            await self.connector.client.sadd(USERS_KEY, user)


class RouterUsers:
    """The users the router stores: ``GET {ROUTER_URL}/users/count`` (its directory's entries).

    One ``httpx.AsyncClient`` per process and event loop, made on first use: the app module is
    imported in the master (which reads in broadcast mode) and in every worker (worker mode).
    """

    def __init__(self, base_url: str, *, timeout: float) -> None:
        self.url = base_url.rstrip("/") + ROUTER_COUNT_PATH
        self.origin = f"router {self.url}"
        self._timeout = httpx.Timeout(timeout)
        self._client: httpx.AsyncClient | None = None
        self._owner: tuple[int, asyncio.AbstractEventLoop] | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        owner = (os.getpid(), asyncio.get_running_loop())
        if self._client is None or self._owner != owner:
            # trust_env off: an internal call, never through an HTTP(S)_PROXY from the environment. A refused
            # or timed-out connect never reached the router: tried once more.
            self._client = httpx.AsyncClient(
                timeout=self._timeout, trust_env=False, transport=httpx.AsyncHTTPTransport(retries=1)
            )
            self._owner = owner
        return self._client

    async def count(self) -> int:
        try:
            response = await self.client.get(self.url)
        except httpx.TimeoutException as exc:
            raise DependencyUnavailable(ROUTER, f"GET {self.url}: timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise DependencyUnavailable(ROUTER, f"GET {self.url}: {type(exc).__name__} {exc}"[:_DETAIL_LIMIT]) from exc
        try:
            if response.status_code != 200:
                raise ValueError(f"answered {response.status_code}")
            return int(response.json()["count"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DependencyUnavailable(ROUTER, f"GET {self.url}: {exc} {response.text}"[:_DETAIL_LIMIT]) from None

    async def aclose(self) -> None:
        client, self._client = self._client, None
        owner, self._owner = self._owner, None
        if client is not None and owner == (os.getpid(), asyncio.get_running_loop()):
            await client.aclose()


class CountedSource:
    """The slow-source instrumentation around any source: every read counted, by reader, and slowed.

    The count of reads goes to the api's Redis (what the broadcast demo reads). Recording it is
    best effort when the number itself comes from elsewhere: the api's Redis down must not stop
    the router's count from being read (the demo counts nothing then anyway).
    """

    def __init__(self, source: UsersSource, connector: RedisConnector, delay: float) -> None:
        self.source = source
        self.connector = connector
        self.delay = delay
        self.origin = source.origin

    async def count(self) -> int:
        try:
            await self._record_read()
        except DependencyUnavailable as exc:
            log.warning("users count read not recorded: %s", exc)
        count = await self.source.count()
        await asyncio.sleep(self.delay)  # the cost of a real query, made visible
        return count

    async def _record_read(self) -> None:
        async with self.connector.operation("record a users count read"):
            async with self.connector.client.pipeline(transaction=False) as pipe:
                await pipe.incr(READS_KEY).hincrby(READERS_KEY, str(os.getpid()), 1).execute()

    async def reads(self) -> int:
        async with self.connector.operation("read source counter"):
            return int(await self.connector.client.get(READS_KEY) or 0)


class Reading:
    """The reader's state: the last value read and the outcome of the last attempt.

    ``state()`` is what the master broadcasts and a worker keeps (``UsersCount.update``):
    ``{"count", "at", "origin", "failed": None | {"dependency", "at"}}``.
    """

    def __init__(self, source: UsersSource) -> None:
        self.source = source
        self._state: dict[str, Any] = {"count": None, "at": None, "origin": source.origin, "failed": None}

    async def refresh(self) -> dict[str, Any]:
        try:
            count = await self.source.count()
        except DependencyUnavailable as exc:
            log.warning("users count not refreshed (answering the last value, marked stale): %s", exc)
            self._state = {**self._state, "failed": {"dependency": exc.dependency, "at": time.time()}}
        else:
            self._state = {"count": count, "at": time.time(), "origin": self.source.origin, "failed": None}
        return self.state()

    def state(self) -> dict[str, Any]:
        return {**self._state}


def broadcast_from_master(cluster: Any, reading: Reading, interval: float) -> None:
    """In the master: read once per interval, tell every worker; new workers get the last state at once."""

    async def refresh() -> None:
        cluster.broadcast({"users_count": await reading.refresh()})

    cluster.every(interval, refresh)
    cluster.on("listening", lambda worker: worker.send({"users_count": reading.state()}))


def reading_from(settings: ApiSettings, connector: RedisConnector) -> tuple[Reading, LoginsSet, RouterUsers | None]:
    """The api's reading as its settings say: the router's count with ROUTER_URL, else the stand-in;
    either way counted and slowed the same way (what the broadcast demo measures). Also returns the
    logins set (sessions record names in it) and the router client (to close)."""
    logins = LoginsSet(connector)
    router_users = (
        RouterUsers(settings.router_url, timeout=settings.router_timeout_seconds) if settings.router_url else None
    )
    return Reading(CountedSource(router_users or logins, connector, settings.users_source_delay)), logins, router_users
