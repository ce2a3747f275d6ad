"""auth's HTTP surface, under ``/auth`` (the balancers route ``/auth/*`` here unchanged).

The token travels as ``Authorization: Bearer <token>`` (services, scripts) or as
the HttpOnly ``scalecube_auth`` cookie set at login (browsers). Error bodies
follow the kit: ``{"error": ..., "message": ...}``; a rejected value (a password)
is never echoed back.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from services.auth.accounts import Accounts, InvalidCredentials, RateLimited, UsernameTaken
from services.auth.policy import PASSWORD_MAX, PASSWORD_MIN, common_passwords, is_common
from services.common.errors import error_responses

COOKIE_NAME = "scalecube_auth"
USERNAME_RULE = "3 to 32 characters: lowercase letters, digits, and _ . -"
PASSWORD_RULE = (
    f"{PASSWORD_MIN} to {PASSWORD_MAX} characters ({PASSWORD_MIN} without the username in it), not one "
    f"of the {len(common_passwords()):,} most common passwords"
)
_USERNAME = re.compile(r"[a-z0-9_.-]{3,32}")
NO_STORE = {"Cache-Control": "no-store"}


def _lowercase(value: Any) -> Any:
    # Usernames are case-insensitive: "Ada" registers, and logs in, as "ada".
    return value.lower() if isinstance(value, str) else value


class RegisterRequest(BaseModel):
    # The schema shows the format (case-insensitive: "Ada" is "ada"); the validator below enforces it, naming the rule.
    username: str = Field(
        description=USERNAME_RULE,
        json_schema_extra={"pattern": "^[A-Za-z0-9_.-]{3,32}$", "minLength": 3, "maxLength": 32},
    )
    # The static rules as constraints: the OpenAPI schema shows them (minLength, maxLength).
    password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX, description=PASSWORD_RULE)

    _username_lowercase = field_validator("username", mode="before")(_lowercase)

    @field_validator("username")
    @classmethod
    def _username_format(cls, value: str) -> str:
        if not _USERNAME.fullmatch(value):
            raise PydanticCustomError("username_format", f"username must be {USERNAME_RULE}")
        return value

    @field_validator("password")
    @classmethod
    def _password_not_common(cls, value: str) -> str:
        if is_common(value):
            raise PydanticCustomError(
                "password_common",
                "password is one of the most common passwords (services/auth/common-passwords.txt): choose another",
            )
        return value

    @model_validator(mode="after")
    def _password_not_username(self) -> RegisterRequest:
        # "ada" may be in a password ("canada-geese-fly-south"), not most of it ("ada2026ada!").
        if len(self.password.lower().replace(self.username, "")) < PASSWORD_MIN:
            raise PydanticCustomError(
                "password_contains_username",
                f"password must be {PASSWORD_MIN} characters long without the username in it",
            )
        return self


class LoginRequest(BaseModel):
    # Only bounds here: a name or password that could never have registered is just wrong credentials.
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)

    _username_lowercase = field_validator("username", mode="before")(_lowercase)


router = APIRouter(prefix="/auth", tags=["auth"])


def _accounts(request: Request) -> Accounts:
    return request.app.state.accounts


def _client_ip(request: Request) -> str | None:
    # X-Forwarded-For counts only from a trusted forwarder (FORWARDED_ALLOW_IPS): see README.
    return request.client.host if request.client else None


def _too_many(limited: RateLimited, what: str) -> HTTPException:
    wait = limited.decision.retry_after_header
    return HTTPException(
        429,
        {
            "error": "too_many_requests",
            "message": f"{what}; retry in {wait} s",
            "limit": limited.scope,
            "retry_after": int(wait),
        },
        headers={"Retry-After": wait},
    )


@router.post("/register", status_code=201, responses=error_responses(409, 429, 503, why={409: "the username is taken"}))
async def register(body: RegisterRequest, request: Request) -> dict[str, str]:
    """409 tells that a name is taken, as it must for someone choosing one: rate-limited per address (README)."""
    try:
        await _accounts(request).register(body.username, body.password, _client_ip(request))
    except RateLimited as limited:
        raise _too_many(limited, "too many registrations from this address") from None
    except UsernameTaken:
        raise HTTPException(
            409, {"error": "username_taken", "message": f"the username {body.username!r} is taken"}
        ) from None
    return {"username": body.username}


@router.post("/login", responses=error_responses(401, 429, 503, why={401: "wrong username or password"}))
async def login(body: LoginRequest, request: Request, response: Response) -> dict[str, str]:
    try:
        token = await _accounts(request).login(body.username, body.password, _client_ip(request))
    except InvalidCredentials:
        raise HTTPException(401, {"error": "invalid_credentials", "message": "wrong username or password"}) from None
    except RateLimited as limited:
        what = (
            "too many failed logins from this address"
            if limited.scope == "ip"
            else "too many failed logins for this username from this address"
        )
        raise _too_many(limited, what) from None
    settings = request.app.state.settings
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=settings.token_ttl_seconds,
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
        path="/",
    )
    response.headers.update(NO_STORE)
    return {"username": body.username, "token": token}


@router.get(
    "/verify", responses=error_responses(401, 503, why={401: "no token, or an unknown, expired or revoked one"})
)
async def verify(request: Request) -> dict[str, str]:
    """Session introspection for other services: whose token is this?"""
    token = presented_token(request)
    if not token:
        raise HTTPException(
            401,
            {
                "error": "unauthorized",
                "message": f"no token: send Authorization: Bearer <token> or the {COOKIE_NAME} cookie",
            },
            headers={"WWW-Authenticate": "Bearer"},
        )
    username = await _accounts(request).verify(token)
    if username is None:
        raise HTTPException(
            401,
            {"error": "invalid_token", "message": "the token is unknown, expired or revoked"},
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return {"username": username}


@router.post("/logout", responses=error_responses(503))
async def logout(request: Request, response: Response) -> dict[str, bool]:
    token = presented_token(request)
    revoked = bool(token) and await _accounts(request).logout(token)
    settings = request.app.state.settings
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="lax", secure=settings.cookie_secure)
    return {"logged_out": revoked}


@router.get("/users/count", responses=error_responses(503))
async def users_count(request: Request) -> dict[str, int]:
    return {"count": await _accounts(request).count()}


def presented_token(request: Request) -> str | None:
    """``Authorization: Bearer <token>`` first, else the cookie."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.cookies.get(COOKIE_NAME) or None
