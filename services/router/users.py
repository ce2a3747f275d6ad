"""The router's HTTP API (clients reach users only through it).

- ``POST /users`` ``{name, country}`` -> 201 ``{id, name, country, created_at, shard}``
- ``GET /users/{id}`` -> the user, from the shard that owns its country (``X-Shard`` names it)
- ``GET /users?country=FR&cursor=…&limit=…`` -> that country's users, asking only its owner
- ``GET /users/count`` -> ``{"count", "counted"}``: how many users the directory holds (one ``HLEN``),
  for the api's once-per-interval read (``services.api.users_count``)
- ``GET /shards`` -> the live map and the users per shard

422 for an invalid body or country (lower case is accepted and normalised: ``fr`` -> ``FR``),
404 for an unknown user, 503 naming the shard when the one a request needs is down.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from services.common.errors import error_response, error_responses
from services.router.routing import UserRouting
from services.shard.model import ID_PATTERN, ID_RE, Country, NewUser, User

router = APIRouter(tags=["users"])
SHARD_HEADER = "x-shard"
MAX_PAGE = 1000
COUNTED = "directory entries: every user created through POST /users (and any creation whose shard write failed)"


# Every route reads the directory in the router's Redis; those that reach a shard need it up too.
UNAVAILABLE = {
    503: "the router's Redis (`redis`), or the shard that owns the country (named), is unavailable; "
    "or the country is being moved (`country_moving`): retry shortly"
}


class CreatedUser(User):
    shard: str = Field(description="the shard that stores the user (also in the X-Shard header)")


class UsersPage(BaseModel):
    country: str
    users: list[User]
    next_cursor: str | None = Field(description="pass it as `cursor` for the next page; null at the end")


class BareRoute(APIRoute):
    """Documented like any FastAPI route (``responses=``, ``openapi_extra`` for its parameters), served
    without FastAPI's per-request work: the handler is the endpoint itself, ``endpoint(request)``,
    nothing solved or validated, so the endpoint checks what it needs itself."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return self.endpoint


def _routing(request: Request) -> UserRouting:
    return request.app.state.routing


def _not_found() -> JSONResponse:
    return error_response(404, "not_found", "no such user")


@router.post("/users", status_code=201, response_model=CreatedUser, responses=error_responses(503, why=UNAVAILABLE))
async def create_user(body: NewUser, request: Request) -> JSONResponse:
    user, shard = await _routing(request).create(body.name, body.country)
    return JSONResponse(
        {**user, "shard": shard}, status_code=201, headers={"location": f"/users/{user['id']}", SHARD_HEADER: shard}
    )


@router.get("/users/count", responses=error_responses(503))
async def count_users(request: Request) -> dict[str, Any]:
    """Cheap by design (one ``HLEN``): the api's master asks it every interval. Registered before
    ``/users/{user_id}``, which would otherwise take ``count`` for an id."""
    return {"count": await _routing(request).count(), "counted": COUNTED}


async def get_user(request: Request) -> Response:
    """The hot path: the owner's bytes passed through, never decoded and re-encoded here.

    Served as a plain Starlette route (``BareRoute``), not a FastAPI one: there is nothing to
    validate but the id, and FastAPI's per-request parameter and dependency machinery
    measured about 1.7× Starlette's route handling for the same endpoint. Documented all the same:
    an id of any other shape is simply not found (404), never a 422.
    """
    user_id: str = request.path_params["user_id"]
    if not ID_RE.fullmatch(user_id):
        return _not_found()
    found = await _routing(request).get(user_id)
    if found is None:
        return _not_found()
    response, shard = found
    return Response(response.content, media_type="application/json", headers={SHARD_HEADER: shard})


router.add_api_route(
    "/users/{user_id}",
    get_user,
    methods=["GET"],
    route_class_override=BareRoute,
    response_model=User,
    summary="Get User",
    responses=error_responses(404, 503, why={404: "no such user", **UNAVAILABLE}),
    openapi_extra={
        "parameters": [
            {
                "name": "user_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": f"an id as POST /users gave it ({ID_PATTERN})",
            }
        ]
    },
)


@router.get("/users", response_model=UsersPage, responses=error_responses(503, why=UNAVAILABLE))
async def list_users(
    request: Request,
    country: Annotated[Country, Query(description="ISO 3166-1 alpha-2")],
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> Response:
    response, shard = await _routing(request).list(country, cursor=cursor, limit=limit)
    return Response(
        response.content, status_code=response.status_code, media_type="application/json", headers={SHARD_HEADER: shard}
    )


@router.get("/shards", responses=error_responses(503))
async def shards(request: Request) -> dict[str, Any]:
    return await _routing(request).report()
