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

from scalecube.errors import DependencyUnavailable
from scalecube.signing import Signer
from services.common.identity import current_identity
from shared_cache.sessions import SessionStore

log = logging.getLogger("scalecube.api.sessions")

COOKIE_NAME = "scalecube_session"
USER_PATTERN = r"^[A-Za-z0-9_.@-]+$"


class LoginRequest(BaseModel):
    user: str = Field(min_length=1, max_length=64, pattern=USER_PATTERN,
                      description="letters, digits and _ . @ - (1 to 64 characters)")  # fmt: skip
    password: str | None = Field(default=None, max_length=256)


class Authenticator(Protocol):
    """Checks credentials. Pluggable: the auth service (decomposing) slots in here."""

    async def authenticate(self, user: str, password: str | None) -> bool: ...


class NameOnly:
    """No credentials: a name is enough. Stands in until an auth service is configured."""

    async def authenticate(self, user: str, password: str | None) -> bool:
        return True


class UserRecorder(Protocol):
    async def add(self, user: str) -> None: ...


class SessionService:
    def __init__(self, store: SessionStore, signer: Signer, authenticator: Authenticator, users: UserRecorder,
                 *, ttl_seconds: int, secure_cookie: bool, backend: str) -> None:  # fmt: skip
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
        if not await self.authenticator.authenticate(credentials.user, credentials.password):
            raise HTTPException(401, "wrong user name or password")
        previous = self.session_id(request)
        if previous:
            await self.store.delete(previous)  # a new id at every login: no session fixation
        me = current_identity()
        sid = await self.store.create({"user": credentials.user, "created_at": time.time(), "created_by": me.served_by})
        await self._record_user(credentials.user)
        response.set_cookie(COOKIE_NAME, self.signer.sign(sid), max_age=self.ttl_seconds, httponly=True,
                            samesite="lax", secure=self.secure_cookie, path="/")  # fmt: skip
        return {"user": credentials.user, "backend": self.backend, "served_by": me.served_by}

    async def me(self, request: Request) -> dict[str, Any]:
        sid = self.session_id(request)
        session = await self.store.get(sid) if sid else None
        me = current_identity()
        if session is None:
            message = "not logged in" if not sid else "no such session here (expired, logged out, or stored in another worker's memory)"
            raise HTTPException(401, message)
        return {"user": session["user"], "backend": self.backend, "created_by": session.get("created_by"),
                "served_by": me.served_by}  # fmt: skip

    async def logout(self, request: Request, response: Response) -> dict[str, Any]:
        sid = self.session_id(request)
        if sid:
            await self.store.delete(sid)
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


@router.post("/login")
async def login(credentials: LoginRequest, request: Request, response: Response) -> dict[str, Any]:
    return await _service(request).login(request, response, credentials)


@router.get("/me")
async def me(request: Request) -> dict[str, Any]:
    return await _service(request).me(request)


@router.post("/logout")
async def logout(request: Request, response: Response) -> dict[str, Any]:
    return await _service(request).logout(request, response)
