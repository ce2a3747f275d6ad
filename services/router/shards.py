"""Talking to the shards: one pooled ``aiohttp.ClientSession`` per worker, timeouts, and errors
that name the shard.

A shard that cannot be reached, times out, or answers 5xx (its Redis down, say) raises
``DependencyUnavailable("shard-b")``: a 503 naming it, for the requests that needed that
shard only. Every request the router makes to a shard is idempotent (users are upserted by
id), so a request that failed on a pooled connection the shard had just closed is sent once more
(aiohttp does it itself for GET/PUT/DELETE; here for the rest).

Why aiohttp and not httpx: on this hop httpx/httpcore cost more CPU than the shard's whole
request (its pool checks every idle connection's socket on every request); aiohttp's
connector keeps idle connections in a list per host and parses responses in C.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from json import dumps, loads
from typing import Any

import aiohttp
from aiohttp.client import IDEMPOTENT_METHODS

from kit.errors import DependencyUnavailable
from services.common.settings import DEFAULT_MAX_BODY_BYTES
from services.shard.model import MAX_BATCH_USERS

# The shard closed a kept-alive connection just as we reused it: safe to send again (idempotent).
STALE_CONNECTION_ERRORS = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
# Below the servers' keep-alive (``scalecube serve --keep-alive``, 20 s): we drop an idle
# connection before the shard does, so reuse rarely races the shard's close.
IDLE_KEEPALIVE_SECONDS = 10.0
_DETAIL_LIMIT = 160


class CountryFenced(Exception):
    """The shard refused: a move has fenced the country there (409 ``country_fenced``)."""

    def __init__(self, shard: str, country: str, state: str) -> None:
        super().__init__(f"{country} is {state} on {shard}")
        self.shard = shard
        self.country = country
        self.state = state


@dataclass(frozen=True)
class ExportPage:
    users: list[dict[str, str]]
    last: int | None
    more: bool


@dataclass(frozen=True, slots=True)
class ShardResponse:
    """A shard's whole answer, read: the connection is back in the pool before anyone looks at it."""

    status_code: int
    content: bytes
    reason_phrase: str

    def json(self) -> Any:
        return loads(self.content)


class ShardClient:
    """One ``aiohttp.ClientSession`` per process (and event loop), pooling keep-alive connections.

    ``max_connections`` is per shard (the connector's per-host limit): a bulkhead, so a
    shard that hangs holds only its own connections until they time out, and requests for
    the other shards never queue behind them. ``timeout`` bounds a whole request, waiting
    for a pooled connection included; ``connect_timeout`` bounds dialling a shard.
    """

    def __init__(
        self, urls: Mapping[str, str], *, timeout: float = 2.0, connect_timeout: float = 0.5, max_connections: int = 16
    ) -> None:
        self.urls = {name: url.rstrip("/") for name, url in urls.items()}
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._owner: tuple[int, asyncio.AbstractEventLoop] | None = None

    def open(self) -> aiohttp.ClientSession:
        """This process's session (its pool belongs to the event loop that made it).

        Called from the app's lifespan so the first request does not pay for it; anything
        else (``scalecube shard move``) gets one on first use.
        """
        owner = (os.getpid(), asyncio.get_running_loop())
        if self._session is None or self._owner != owner:
            # Plain HTTP on loopback or a private network: no cookies, no proxies from the environment.
            connector = aiohttp.TCPConnector(
                limit=self._max_connections * max(1, len(self.urls)),
                limit_per_host=self._max_connections,
                keepalive_timeout=IDLE_KEEPALIVE_SECONDS,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
            )
            self._owner = owner
        return self._session

    async def close(self) -> None:
        session, owner = self._session, self._owner
        self._session, self._owner = None, None
        if session is not None and owner == (os.getpid(), _running_loop()):
            await session.close()

    async def request(
        self, shard: str, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None
    ) -> ShardResponse:
        """One request to ``shard``; any answer below 500 is returned, anything else raises
        ``DependencyUnavailable(shard)``."""
        session = self.open()
        url = self.urls[shard] + path
        try:
            try:
                response = await self._send(session, method, url, json, params)
            except STALE_CONNECTION_ERRORS:
                if method in IDEMPOTENT_METHODS:
                    raise  # aiohttp already sent it a second time
                response = await self._send(session, method, url, json, params)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DependencyUnavailable(shard, self._describe(exc)[:_DETAIL_LIMIT]) from exc
        if response.status_code >= 500:
            raise DependencyUnavailable(
                shard, f"{method} {path} answered {response.status_code}: {_error_of(response)}"[:_DETAIL_LIMIT]
            )
        return response

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, TimeoutError) and not str(exc):  # the whole request's deadline
            return f"no answer within {self._timeout.total:g}s"
        return f"{type(exc).__name__}: {exc}"

    @staticmethod
    async def _send(
        session: aiohttp.ClientSession, method: str, url: str, body: Any, params: Mapping[str, Any] | None
    ) -> ShardResponse:
        async with session.request(method, url, json=body, params=params) as response:
            return ShardResponse(response.status, await response.read(), response.reason or "")

    # -- the data path -----------------------------------------------------------

    async def put_user(self, shard: str, user: Mapping[str, str]) -> ShardResponse:
        fields = {"name": user["name"], "country": user["country"], "created_at": user["created_at"]}
        response = await self.request(shard, "PUT", f"/users/{user['id']}", json=fields)
        self._raise_if_fenced(shard, response)
        if response.status_code not in (200, 201):
            raise ShardRefused(shard, response.status_code, _error_of(response))
        return response

    async def get_user(self, shard: str, user_id: str) -> ShardResponse:
        return await self.request(shard, "GET", f"/users/{user_id}")

    async def list_users(self, shard: str, country: str, *, cursor: str | None, limit: int) -> ShardResponse:
        params: dict[str, Any] = {"country": country, "limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        response = await self.request(shard, "GET", "/users", params=params)
        self._raise_if_fenced(shard, response)
        return response

    async def stats(self, shard: str) -> dict[str, Any]:
        return self._ok(shard, await self.request(shard, "GET", "/stats"))

    # -- what a move needs ---------------------------------------------------------

    async def export(self, shard: str, country: str, *, after: int, limit: int) -> ExportPage:
        body = self._ok(
            shard,
            await self.request(
                shard, "GET", f"/admin/countries/{country}/export", params={"after": after, "limit": limit}
            ),
        )
        return ExportPage(body["users"], body["last"], body["more"])

    async def import_users(self, shard: str, users: list[dict[str, str]]) -> dict[str, int]:
        """Upsert ``users`` on ``shard`` in as many batches as its body limit needs (each batch is
        atomic on the shard; the whole is idempotent, so a move that stops midway copies again)."""
        totals = {"created": 0, "updated": 0}
        for batch in batches_within(users, DEFAULT_MAX_BODY_BYTES):
            response = await self.request(shard, "POST", "/admin/users", json={"users": batch})
            self._raise_if_fenced(shard, response)
            answer = self._ok(shard, response)
            totals = {key: totals[key] + int(answer[key]) for key in totals}
        return totals

    async def fence(self, shard: str, country: str, state: str) -> None:
        self._ok(shard, await self.request(shard, "PUT", f"/admin/countries/{country}/fence", json={"state": state}))

    async def unfence(self, shard: str, country: str) -> None:
        self._ok(shard, await self.request(shard, "DELETE", f"/admin/countries/{country}/fence"))

    async def delete_users(self, shard: str, country: str, *, limit: int) -> tuple[int, int]:
        body = self._ok(
            shard, await self.request(shard, "DELETE", f"/admin/countries/{country}/users", params={"limit": limit})
        )
        return int(body["deleted"]), int(body["remaining"])

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _raise_if_fenced(shard: str, response: ShardResponse) -> None:
        if response.status_code == 409:
            body = _json_or_empty(response)
            if body.get("error") == "country_fenced":
                raise CountryFenced(shard, str(body.get("country")), str(body.get("fence")))

    @staticmethod
    def _ok(shard: str, response: ShardResponse) -> Any:
        if response.status_code != 200:
            raise ShardRefused(shard, response.status_code, _error_of(response))
        return response.json()


def batches_within(users: list[dict[str, str]], max_bytes: int) -> Iterator[list[dict[str, str]]]:
    """``users`` in order, in batches whose ``{"users": [...]}`` body (as aiohttp encodes it) fits in
    ``max_bytes`` and that hold at most ``MAX_BATCH_USERS`` each."""
    envelope = len(dumps({"users": []}))
    batch: list[dict[str, str]] = []
    size = envelope
    for user in users:
        cost = len(dumps(user)) + (2 if batch else 0)  # ", " between items
        if batch and (size + cost > max_bytes or len(batch) == MAX_BATCH_USERS):
            yield batch
            batch, size, cost = [], envelope, cost - 2
        batch.append(user)
        size += cost
    if batch:
        yield batch


class ShardRefused(Exception):
    """A shard answered a request the router considers well-formed with a 4xx."""

    def __init__(self, shard: str, status: int, error: str) -> None:
        super().__init__(f"{shard} answered {status}: {error}")
        self.shard = shard
        self.status = status
        self.error = error


def _json_or_empty(response: ShardResponse) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_of(response: ShardResponse) -> str:
    body = _json_or_empty(response)
    return str(body.get("message") or body.get("error") or response.reason_phrase)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
