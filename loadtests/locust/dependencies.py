"""What each request of the outage mix needs, and how one request is recorded (no Locust import here).

``scalecube demo outage`` fails one part of the stack at a time and then asks, of every
request sent meanwhile: did it need that part? A request that did may fail, but only with a
503 naming the part (``{"error": "dependency_unavailable", "dependency": "redis"}``); one that
did not must succeed. So the outage mix (``loadtests/locust/outage.py``) names each request
by its route and, for ``/users``, by the shard that holds the country it is about, and this
table says what every name needs. Parts are named as the local stack's components and
compose's services are: ``redis`` (the sessions Redis), ``auth``, ``shard-a``, ``directory-redis``...

The Locust process writes one JSON line per request (``RequestRecord``) to the file named by
``SCALECUBE_REQUEST_LOG``; the demo reads them back and cuts them by the fault's window.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from services.router.shard_map import DEFAULT_MAP_FILE, load_base_map

REQUEST_LOG_ENV = "SCALECUBE_REQUEST_LOG"
# The longest a client waits for an answer (Locust's network_timeout, the demo's probes): an answer
# that has not come by then is a hang. Above the balancers' own server timeout (10 s, a 504) and
# every service's dependency timeouts (Redis 2 s, auth 5 s, a shard 2 s): each of those answers first.
CLIENT_TIMEOUT = 15.0

SESSIONS_REDIS = "redis"  # the api's Redis: sessions, cache, pub/sub
AUTH = "auth"  # the auth service (its own Redis, auth-redis, is its business)
DIRECTORY_REDIS = "directory-redis"  # the router's Redis: which country each user id belongs to
ROUTER = "router"

# The api checks credentials at auth (AUTH_URL) and keeps the session in its Redis: both at every /session call.
_SESSIONS = frozenset({SESSIONS_REDIS, AUTH})


@cache
def shards() -> dict[str, tuple[str, ...]]:
    """Each shard of the packaged map and the countries it lists (a fresh stack's map: nothing moved)."""
    base = load_base_map(DEFAULT_MAP_FILE)
    return {shard: tuple(sorted(cc for cc, owner in base.assigned.items() if owner == shard)) for shard in base.shards}


def create_name(shard: str) -> str:
    return f"/users ({shard})"


def read_name(shard: str) -> str:
    return f"/users/[id] ({shard})"


def list_name(shard: str) -> str:
    return f"/users?country=[cc] ({shard})"


@cache
def needs_table() -> dict[str, frozenset[str]]:
    """Request name -> the parts it needs, besides the balancer and the service that answers it."""
    table: dict[str, frozenset[str]] = {
        "/": frozenset(),
        "/cpu": frozenset(),  # the api alone: no Redis, no auth
        "/session/login": _SESSIONS,
        "/session/me": _SESSIONS,
        "/auth/register": frozenset({AUTH}),
        "/auth/login": frozenset({AUTH}),
    }
    for shard in shards():
        # A new user's directory entry is written before the shard; a read looks the id up first. A list
        # needs only the owner: the router routes on its cached map when its Redis is down (LiveMap).
        table[create_name(shard)] = frozenset({ROUTER, DIRECTORY_REDIS, shard})
        table[read_name(shard)] = frozenset({ROUTER, DIRECTORY_REDIS, shard})
        table[list_name(shard)] = frozenset({ROUTER, shard})
    return table


# Routes the balancer sends straight to the part: when it is down, the balancer answers for it (its own
# 502/503/504, which names no dependency): no service of ours stands between to say which part is missing.
SERVED_BY_BALANCER = {"/auth/register": AUTH, "/auth/login": AUTH}


def route_of(name: str) -> str:
    """``/auth/login [429 rate limited]`` -> ``/auth/login``: an expected refusal keeps its route's needs."""
    return name.split(" [", 1)[0]


def needs(name: str) -> frozenset[str]:
    """What the request named ``name`` needs; ``KeyError`` for a name the outage mix never sends."""
    return needs_table()[route_of(name)]


@dataclass(frozen=True)
class RequestRecord:
    """One request as the client saw it."""

    name: str
    t: float  # when it was sent, seconds since the epoch
    ms: float  # until the answer, or until the client gave up
    status: int  # 0: no answer (refused, reset, timed out)
    ok: bool  # what the user class judged
    dependency: str | None = None  # the "dependency" of a JSON error body
    error: str | None = None  # the "error" of a JSON error body, or why there was no answer

    @property
    def done(self) -> float:
        return self.t + self.ms / 1000

    def overlaps(self, start: float, end: float) -> bool:
        """In flight at some moment of ``[start, end]``."""
        return self.t <= end and self.done >= start

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def error_fields(status: int, body: bytes | str | None) -> tuple[str | None, str | None]:
    """``(dependency, error)`` of a JSON error body; ``(None, None)`` for a success or a body that is not ours."""
    if status < 400 or not body:
        return None, None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    dependency, error = data.get("dependency"), data.get("error")
    return (dependency if isinstance(dependency, str) else None), (error if isinstance(error, str) else None)


def read_records(path: Path) -> list[RequestRecord]:
    """The JSON lines the Locust process wrote; [] if it wrote none."""
    return list(_records(path)) if path.is_file() else []


def _records(path: Path) -> Iterator[RequestRecord]:
    with open(path, encoding="utf-8") as file:
        for line in file:
            if line.strip():
                yield RequestRecord(**json.loads(line))
