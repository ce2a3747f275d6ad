"""Talking to the shards: one pooled ``httpx.AsyncClient`` per process, timeouts, and errors
that name the shard.

A shard that cannot be reached, times out, or answers 5xx (its Redis down, say) raises
``DependencyUnavailable("shard-b")``: a 503 naming it, for the requests that needed that
shard only. Every request the router makes to a shard is idempotent (users are upserted by
id), so a request that failed on a pooled connection the shard had just closed is sent once more.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from scalecube.errors import DependencyUnavailable

# The shard closed a kept-alive connection just as we reused it: safe to send again (idempotent).
STALE_CONNECTION_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
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


class ShardClient:
    """One pooled ``httpx.AsyncClient`` per shard, per process.

    A pool per shard is a bulkhead: a shard that hangs holds only its own connections until
    they time out, and requests for the other shards never queue behind them.
    """

    def __init__(self, urls: Mapping[str, str], *, timeout: float = 2.0, connect_timeout: float = 0.5,
                 max_connections: int = 16) -> None:  # fmt: skip
        self.urls = dict(urls)
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout, pool=timeout)
        self._max_connections = max_connections
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._owner: tuple[int, asyncio.AbstractEventLoop] | None = None

    def client(self, shard: str) -> httpx.AsyncClient:
        """This process's client for ``shard`` (its pool belongs to the event loop that made it)."""
        owner = (os.getpid(), asyncio.get_running_loop())
        if self._owner != owner:
            self._clients, self._owner = {}, owner
        client = self._clients.get(shard)
        if client is None:
            limits = httpx.Limits(max_connections=self._max_connections, max_keepalive_connections=self._max_connections)
            client = self._clients[shard] = httpx.AsyncClient(base_url=self.urls[shard], timeout=self._timeout,
                                                              limits=limits, trust_env=False)  # fmt: skip
        return client

    async def close(self) -> None:
        clients, owner = list(self._clients.values()), self._owner
        self._clients, self._owner = {}, None
        if owner is not None and owner == (os.getpid(), _running_loop()):
            for client in clients:
                await client.aclose()

    async def request(self, shard: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request to ``shard``; any answer below 500 is returned, anything else raises
        ``DependencyUnavailable(shard)``."""
        client = self.client(shard)
        try:
            try:
                response = await client.request(method, path, **kwargs)
            except STALE_CONNECTION_ERRORS:
                response = await client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise DependencyUnavailable(shard, f"{type(exc).__name__}: {exc}"[:_DETAIL_LIMIT]) from exc
        if response.status_code >= 500:
            raise DependencyUnavailable(shard, f"{method} {path} answered {response.status_code}: "
                                               f"{_error_of(response)}"[:_DETAIL_LIMIT])  # fmt: skip
        return response

    # -- the data path -----------------------------------------------------------

    async def put_user(self, shard: str, user: Mapping[str, str]) -> httpx.Response:
        fields = {"name": user["name"], "country": user["country"], "created_at": user["created_at"]}
        response = await self.request(shard, "PUT", f"/users/{user['id']}", json=fields)
        self._raise_if_fenced(shard, response)
        if response.status_code not in (200, 201):
            raise ShardRefused(shard, response.status_code, _error_of(response))
        return response

    async def get_user(self, shard: str, user_id: str) -> httpx.Response:
        return await self.request(shard, "GET", f"/users/{user_id}")

    async def list_users(self, shard: str, country: str, *, cursor: str | None, limit: int) -> httpx.Response:
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
        body = self._ok(shard, await self.request(shard, "GET", f"/admin/countries/{country}/export",
                                                   params={"after": after, "limit": limit}))  # fmt: skip
        return ExportPage(body["users"], body["last"], body["more"])

    async def import_users(self, shard: str, users: list[dict[str, str]]) -> dict[str, int]:
        response = await self.request(shard, "POST", "/admin/users", json={"users": users})
        self._raise_if_fenced(shard, response)
        return self._ok(shard, response)

    async def fence(self, shard: str, country: str, state: str) -> None:
        self._ok(shard, await self.request(shard, "PUT", f"/admin/countries/{country}/fence", json={"state": state}))

    async def unfence(self, shard: str, country: str) -> None:
        self._ok(shard, await self.request(shard, "DELETE", f"/admin/countries/{country}/fence"))

    async def delete_users(self, shard: str, country: str, *, limit: int) -> tuple[int, int]:
        body = self._ok(shard, await self.request(shard, "DELETE", f"/admin/countries/{country}/users",
                                                   params={"limit": limit}))  # fmt: skip
        return int(body["deleted"]), int(body["remaining"])

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _raise_if_fenced(shard: str, response: httpx.Response) -> None:
        if response.status_code == 409:
            body = _json_or_empty(response)
            if body.get("error") == "country_fenced":
                raise CountryFenced(shard, str(body.get("country")), str(body.get("fence")))

    @staticmethod
    def _ok(shard: str, response: httpx.Response) -> Any:
        if response.status_code != 200:
            raise ShardRefused(shard, response.status_code, _error_of(response))
        return response.json()


class ShardRefused(Exception):
    """A shard answered a request the router considers well-formed with a 4xx."""

    def __init__(self, shard: str, status: int, error: str) -> None:
        super().__init__(f"{shard} answered {status}: {error}")
        self.shard = shard
        self.status = status
        self.error = error


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_of(response: httpx.Response) -> str:
    body = _json_or_empty(response)
    return str(body.get("message") or body.get("error") or response.reason_phrase)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
