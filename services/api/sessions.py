"""Log in, stay logged in, log out — with the session wherever SESSION_BACKEND puts it.

``redis``: any worker of any container finds the session. ``memory``: only the
worker that created it does, which is the failure the guides describe (and what
sticky balancing papers over). The cookie holds nothing but an opaque random id,
HMAC-signed so a forged or tampered cookie is treated as no cookie at all.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from kit.errors import DependencyUnavailable
from kit.signing import Signer
from services.common.errors import error_responses
from services.common.identity import current_identity
from shared_cache.sessions import SessionStore

log = logging.getLogger("scalecube.api.sessions")

COOKIE_NAME = "scalecube_session"
USER_PATTERN = r"^[A-Za-z0-9_.@-]+$"


class LoginRequest(BaseModel):
    user: str = Field(
        min_length=1,
        max_length=64,
        pattern=USER_PATTERN,
        description="letters, digits and _ . @ - (1 to 64 characters)",
    )
    password: str | None = Field(default=None, max_length=256)


class Authenticator(Protocol):
    """Checks credentials. Pluggable: ``NameOnly``, or the auth service (``services.api.auth_client``)."""

    async def authenticate(self, user: str, password: str | None, client_ip: str | None) -> dict[str, Any] | None:
        """None for wrong credentials; else what the session keeps: ``user`` (the name to use),
        plus whatever ``verify`` and ``revoke`` need later."""
        ...

    async def verify(self, session: dict[str, Any]) -> bool:
        """At each ``/session/me``: do the session's credentials still hold?"""
        ...

    async def revoke(self, session: dict[str, Any]) -> None:
        """At logout."""
        ...

    async def aclose(self) -> None: ...


class NameOnly:
    """No credentials: a name is enough. Stands in until an auth service is configured (AUTH_URL)."""

    async def authenticate(self, user: str, password: str | None, client_ip: str | None) -> dict[str, Any] | None:
        return {"user": user}

    async def verify(self, session: dict[str, Any]) -> bool:
        return True

    async def revoke(self, session: dict[str, Any]) -> None:
        pass

    async def aclose(self) -> None:
        pass


class UserRecorder(Protocol):
    async def add(self, user: str) -> None: ...


class SessionService:
    def __init__(
        self,
        store: SessionStore,
        signer: Signer,
        authenticator: Authenticator,
        users: UserRecorder,
        *,
        ttl_seconds: int,
        secure_cookie: bool,
        backend: str,
    ) -> None:
        self.store = store
        self.signer = signer
        self.authenticator = authenticator
        self.users = users
        self.ttl_seconds = ttl_seconds
        self.secure_cookie = secure_cookie
        self.backend = backend

    def session_id(self, request: Request) -> str | None:
        token = request.cookies.get(COOKIE_NAME)
        return self.signer.unsign(token) if token else None

    async def login(self, request: Request, response: Response, credentials: LoginRequest) -> dict[str, Any]:
        client_ip = request.client.host if request.client else None
        identity = await self.authenticator.authenticate(credentials.user, credentials.password, client_ip)
        if identity is None:
            raise HTTPException(401, "wrong user name or password")
        previous = self.session_id(request)
        if previous:
            await self.store.delete(previous)  # a new id at every login: no session fixation
        me = current_identity()
        sid = await self.store.create({**identity, "created_at": time.time(), "created_by": me.served_by})
        await self._record_user(identity["user"])
        response.set_cookie(
            COOKIE_NAME,
            self.signer.sign(sid),
            max_age=self.ttl_seconds,
            httponly=True,
            samesite="lax",
            secure=self.secure_cookie,
            path="/",
        )
        return {"user": identity["user"], "backend": self.backend, "served_by": me.served_by}

    async def me(self, request: Request) -> dict[str, Any]:
        sid = self.session_id(request)
        session = await self.store.get(sid) if sid else None
        me = current_identity()
        if session is None:
            message = (
                "not logged in"
                if not sid
                else "no such session here (expired, logged out, or stored in another worker's memory)"
            )
            raise HTTPException(401, message)
        if not await self.authenticator.verify(session):
            await self.store.delete(sid)
            raise HTTPException(401, "this login is no longer valid (expired or revoked at auth); log in again")
        return {
            "user": session["user"],
            "backend": self.backend,
            "created_by": session.get("created_by"),
            "served_by": me.served_by,
        }

    async def logout(self, request: Request, response: Response) -> dict[str, Any]:
        sid = self.session_id(request)
        session = await self.store.get(sid) if sid else None
        if sid:
            await self.store.delete(sid)
        if session is not None:
            await self.authenticator.revoke(session)
        response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="lax", secure=self.secure_cookie)
        return {"logged_out": bool(sid)}

    async def _record_user(self, user: str) -> None:
        # The users count is a demo of its own; with memory sessions the api still works without Redis.
        try:
            await self.users.add(user)
        except DependencyUnavailable:
            if self.backend == "redis":
                raise
            log.warning("user %s not recorded in the users count: redis unavailable", user)


router = APIRouter(prefix="/session", tags=["sessions"])


def _service(request: Request) -> SessionService:
    return request.app.state.sessions


# Sessions live in Redis (SESSION_BACKEND=redis); credentials are checked by auth when AUTH_URL is set.
SESSIONS_DOWN = "the sessions' Redis (`redis`) or the auth service (`auth`) is unavailable"


@router.post(
    "/login",
    responses=error_responses(
        401,
        429,
        503,
        why={
            401: "wrong user name or password (with AUTH_URL)",
            429: "too many login attempts (auth's limit, with AUTH_URL): Retry-After says when to try again",
            503: SESSIONS_DOWN,
        },
    ),
)
async def login(credentials: LoginRequest, request: Request, response: Response) -> dict[str, Any]:
    return await _service(request).login(request, response, credentials)


@router.get(
    "/me",
    responses=error_responses(
        401,
        503,
        why={
            401: "not logged in, or the session expired, was logged out, or is in another worker's memory",
            503: SESSIONS_DOWN,
        },
    ),
)
async def me(request: Request) -> dict[str, Any]:
    return await _service(request).me(request)


@router.post("/logout", responses=error_responses(503, why={503: SESSIONS_DOWN}))
async def logout(request: Request, response: Response) -> dict[str, Any]:
    return await _service(request).logout(request, response)
