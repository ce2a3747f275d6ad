"""A shard's HTTP API: the users store, and what a move needs.

Public (the router's data path):

- ``PUT /users/{id}`` ``{name, country, created_at}`` — create, or overwrite the same id:
  idempotent, so a retried write or a move's copy never duplicates a user. 201 created, 200 overwritten.
- ``GET /users/{id}`` — 200 or 404.
- ``GET /users?country=FR&cursor=…&limit=…`` — the country's users, oldest write first;
  ``next_cursor`` is null at the end.
- ``GET /stats`` — users per country, and the countries fenced by a move.

Admin (``scalecube shard move``; internal network only, like the shard itself):

- ``GET /admin/countries/{CC}/export?after=SEQ&limit=N`` — users written after sequence SEQ.
- ``POST /admin/users`` ``{users: [...]}`` — batch upsert (atomic per batch).
- ``PUT /admin/countries/{CC}/fence`` ``{state: frozen|moved}``, ``DELETE`` to lift it.
- ``DELETE /admin/countries/{CC}/users?limit=N`` — delete a batch of a fenced country's users.

A write to a fenced country is a 409 ``country_fenced`` naming the fence: the router
re-reads its map and goes to the new owner (see ``services.shard.store``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from services.common.errors import error_response, error_responses
from services.shard.model import MAX_BATCH_USERS, Country, User, UserFields, UserId
from services.shard.store import CountryFenced, NotFenced, UserStore

router = APIRouter(tags=["users"])
admin = APIRouter(prefix="/admin", tags=["moves"])

CountryPath = Annotated[Country, Path(description="ISO 3166-1 alpha-2, any case")]
Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$", description="next_cursor of the previous page")]
# Every route reads or writes the shard's Redis: down, it is a 503 naming it.
FENCED = "a move has fenced the country on this shard (`fence` names the state): go to its new owner"
USER_WRITTEN = {"model": User, "description": "Created"}


def _store(request: Request) -> UserStore:
    return request.app.state.store


def _limit(request: Request, limit: int) -> int:
    return min(limit, request.app.state.settings.max_page)


def fenced(exc: CountryFenced) -> JSONResponse:
    return error_response(
        409,
        "country_fenced",
        f"{exc.country} is {exc.state} on this shard: a move is taking it elsewhere",
        country=exc.country,
        fence=exc.state,
    )


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status_code=status, media_type="application/json")


@router.put(
    "/users/{user_id}",
    response_model=User,
    responses={201: USER_WRITTEN, **error_responses(409, 503, why={409: FENCED})},
    summary="Create or overwrite a user (idempotent): 201 created, 200 overwritten",
)
async def put_user(user_id: UserId, fields: UserFields, request: Request) -> Response:
    user = {"id": user_id, **fields.model_dump()}
    try:
        created, _ = await _store(request).upsert([user])
    except CountryFenced as exc:
        return fenced(exc)
    return _json(user, 201 if created else 200)


@router.get(
    "/users/{user_id}",
    response_model=User,
    responses=error_responses(404, 503, why={404: "No such user on this shard"}),
)
async def get_user(user_id: str, request: Request) -> Response:
    # Any string: an id that cannot exist is simply not found (and costs no validation on the hot path).
    user = await _store(request).get(user_id) if len(user_id) <= 64 else None
    if user is None:
        return error_response(404, "not_found", "no such user on this shard")
    return _json(user)


@router.get("/users", responses=error_responses(409, 503, why={409: "the country has moved to another shard"}))
async def list_users(
    request: Request,
    country: Annotated[Country, Query()],
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1)] = 100,
) -> Response:
    try:
        page = await _store(request).page(country, after=int(cursor or 0), limit=_limit(request, limit))
    except CountryFenced as exc:
        return fenced(exc)
    next_cursor = str(page.last) if page.more and page.last is not None else None
    return _json({"country": country, "users": page.users, "next_cursor": next_cursor})


@router.get("/stats", responses=error_responses(503))
async def stats(request: Request) -> dict[str, Any]:
    result = await _store(request).stats()
    return {
        "shard": request.app.state.settings.shard_name,
        "total": result.total,
        "per_country": dict(sorted(result.per_country.items())),
        "fences": result.fences,
    }


@admin.get("/countries/{country}/export", responses=error_responses(503))
async def export(
    country: CountryPath,
    request: Request,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1)] = 500,
) -> Response:
    page = await _store(request).page(country, after=after, limit=_limit(request, limit), refuse_moved=False)
    return _json({"country": country, "users": page.users, "last": page.last, "more": page.more, "fence": page.fence})


class Batch(BaseModel):
    users: list[User] = Field(max_length=MAX_BATCH_USERS, description="at most as many as fit in the body limit")


@admin.post("/users", responses=error_responses(409, 503, why={409: FENCED}))
async def import_users(batch: Batch, request: Request) -> Response:
    try:
        created, updated = await _store(request).upsert([user.model_dump() for user in batch.users])
    except CountryFenced as exc:
        return fenced(exc)
    return _json({"created": created, "updated": updated})


class Fence(BaseModel):
    state: Literal["frozen", "moved"]


@admin.put("/countries/{country}/fence", responses=error_responses(503))
async def fence(country: CountryPath, body: Annotated[Fence, Body()], request: Request) -> dict[str, Any]:
    await _store(request).fence(country, body.state)
    return {"country": country, "fence": body.state}


@admin.delete("/countries/{country}/fence", responses=error_responses(503))
async def unfence(country: CountryPath, request: Request) -> dict[str, Any]:
    await _store(request).unfence(country)
    return {"country": country, "fence": None}


@admin.delete(
    "/countries/{country}/users",
    responses=error_responses(409, 503, why={409: "the country is not fenced: this shard still owns it"}),
)
async def delete_country(country: CountryPath, request: Request, limit: Annotated[int, Query(ge=1)] = 500) -> Response:
    try:
        deleted, remaining = await _store(request).delete_country(country, limit=_limit(request, limit))
    except NotFenced as exc:
        return error_response(409, "not_fenced", str(exc), country=country)
    return _json({"country": country, "deleted": deleted, "remaining": remaining})
