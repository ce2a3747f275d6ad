"""The api's side of decomposing: the auth service checks credentials, over HTTP.

Enabled by ``AUTH_URL``. At ``/session/login`` the api asks auth's ``/auth/login``;
on success it creates its own session (the shared session store, as always) holding
auth's token, and every ``/session/me`` asks auth's ``/auth/verify`` whether that
token still holds. The token never reaches the client: it lives in the session.

What auth's answers become here:

    200                        the user is in (auth's canonical name is the session's user)
    401 / 422                  wrong credentials: 401 (a name or password auth refuses cannot be right)
    429                        429 with auth's Retry-After
    anything else, a timeout,  DependencyUnavailable("auth"): 503 naming auth. Only the requests
    no connection              that need auth fail; the rest of the api does not depend on it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
from fastapi import HTTPException

from kit.errors import DependencyUnavailable

log = logging.getLogger("scalecube.api.auth")
# httpx logs every request at INFO (noise: one line per login and per /session/me), and httpcore logs
# response headers at DEBUG, auth's Set-Cookie with a login token among them: tokens must never be
# logged, whatever LOG_LEVEL says.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)

DEPENDENCY = "auth"
_DETAIL_LIMIT = 160


class AuthServiceAuthenticator:
    """An ``Authenticator`` (``services.api.sessions``) backed by the auth service.

    One pooled ``httpx.AsyncClient`` per worker process and event loop, created on
    first use (the app module is imported in the master too, which must not own it).
    """

    def __init__(
        self, base_url: str, *, connect_timeout: float = 1.0, timeout: float = 5.0, max_connections: int = 100
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections // 5)
        self._client: httpx.AsyncClient | None = None
        self._owner: tuple[int, asyncio.AbstractEventLoop] | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        owner = (os.getpid(), asyncio.get_running_loop())
        if self._client is None or self._owner != owner:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=self._timeout,
                trust_env=False,  # auth is an internal service: never through an HTTP(S)_PROXY from the environment
                # One client serves every user: it must never keep auth's cookie from one login
                # and send it along with the next user's requests.
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
                # A refused or timed-out connect never reached auth: safe to try once more.
                transport=httpx.AsyncHTTPTransport(retries=1, limits=self._limits),
            )
            self._owner = owner
        return self._client

    async def authenticate(self, user: str, password: str | None, client_ip: str | None) -> dict[str, Any] | None:
        if password is None:
            return None  # auth always wants a password
        # auth's per-IP login limit must count the real client, not this api replica.
        headers = {"X-Forwarded-For": client_ip} if client_ip else {}
        response = await self._call(
            "POST", "/auth/login", json={"username": user, "password": password}, headers=headers
        )
        if response.status_code == 200:
            body = response.json()
            return {"user": body["username"], "auth_token": body["token"]}
        if response.status_code in (401, 422):
            return None
        if response.status_code == 429:
            retry_after = response.headers.get("retry-after", "1")
            raise HTTPException(
                429,
                {"error": "too_many_requests", "message": _message(response, "too many login attempts")},
                headers={"Retry-After": retry_after},
            )
        raise self._unavailable("login", response)

    async def verify(self, session: dict[str, Any]) -> bool:
        token = session.get("auth_token")
        if not token:
            return False  # a session made before AUTH_URL was set: log in again
        response = await self._call("GET", "/auth/verify", headers={"Authorization": f"Bearer {token}"})
        if response.status_code == 200:
            return True
        if response.status_code == 401:
            return False
        raise self._unavailable("verify", response)

    async def revoke(self, session: dict[str, Any]) -> None:
        """Best effort: the api session is gone either way, and the token, which only that session
        held, expires at auth by itself."""
        token = session.get("auth_token")
        if not token:
            return
        try:
            response = await self._call("POST", "/auth/logout", headers={"Authorization": f"Bearer {token}"})
            if response.status_code != 200:
                raise self._unavailable("logout", response)
        except DependencyUnavailable as exc:
            log.warning("token not revoked at auth (it will expire there): %s", exc)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        owner, self._owner = self._owner, None
        if client is not None and owner == (os.getpid(), asyncio.get_running_loop()):
            await client.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self.client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise DependencyUnavailable(DEPENDENCY, f"{method} {path}: timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            detail = f"{method} {path}: {type(exc).__name__} {exc}"[:_DETAIL_LIMIT]
            raise DependencyUnavailable(DEPENDENCY, detail) from exc

    @staticmethod
    def _unavailable(action: str, response: httpx.Response) -> DependencyUnavailable:
        return DependencyUnavailable(
            DEPENDENCY, f"{action}: auth answered {response.status_code} {_message(response, '')}"[:_DETAIL_LIMIT]
        )


def _message(response: httpx.Response, default: str) -> str:
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        return default
    return message if isinstance(message, str) else default
