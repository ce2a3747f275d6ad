"""A shard as it really runs: a cluster, its own real Redis, real HTTP (``conftest``)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from infra.local.ports import free_port
from infra.local.processes import ClusterProcess
from infra.local.redis_server import RedisServer
from services.shard.model import MAX_BATCH_USERS
from tests.services.shard.conftest import SHARD


def put(client: httpx.Client, user_id: str, country: str = "FR", name: str = "ada") -> httpx.Response:
    return client.put(
        f"/users/{user_id}", json={"name": name, "country": country, "created_at": "2024-01-01T00:00:00Z"}
    )


def test_create_is_an_idempotent_upsert_by_id(shard):
    assert put(shard, "u1").status_code == 201
    again = put(shard, "u1", name="ada lovelace")
    assert again.status_code == 200 and again.json()["name"] == "ada lovelace"
    assert shard.get("/users/u1").json() == {
        "id": "u1",
        "name": "ada lovelace",
        "country": "FR",
        "created_at": "2024-01-01T00:00:00Z",
    }
    assert shard.get("/stats").json() == {"shard": "shard-x", "total": 1, "per_country": {"FR": 1}, "fences": {}}
    missing = shard.get("/users/nobody")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_list_by_country_pages_with_a_cursor_and_counts_per_country(shard):
    for n in range(23):
        assert put(shard, f"fr{n}", "FR").status_code == 201
    for n in range(4):
        assert put(shard, f"de{n}", "de").status_code == 201  # lower case is normalised
    seen, cursor, pages = [], None, 0
    while True:
        params = {"country": "fr", "limit": 10} | ({"cursor": cursor} if cursor else {})
        body = shard.get("/users", params=params).json()
        seen += [user["id"] for user in body["users"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == [f"fr{n}" for n in range(23)]  # write order, each exactly once
    assert (
        shard.get("/users", params={"country": "DE", "limit": 500}).json()["next_cursor"] is None
    )  # capped at MAX_PAGE
    assert shard.get("/stats").json()["per_country"] == {"DE": 4, "FR": 23}


def test_export_after_a_sequence_returns_exactly_the_later_writes(shard):
    for n in range(5):
        put(shard, f"a{n}")
    first = shard.get("/admin/countries/FR/export", params={"after": 0, "limit": 100}).json()
    assert [u["id"] for u in first["users"]] == [f"a{n}" for n in range(5)] and first["more"] is False
    put(shard, "late")
    put(shard, "a1", name="rewritten")  # an overwrite is a new write too
    later = shard.get("/admin/countries/FR/export", params={"after": first["last"]}).json()
    assert [u["id"] for u in later["users"]] == ["late", "a1"]
    imported = shard.post(
        "/admin/users",
        json={
            "users": [
                {"id": "b1", "name": "b", "country": "US", "created_at": "t"},
                {"id": "late", "name": "x", "country": "FR", "created_at": "t"},
            ]
        },
    )
    assert imported.json() == {"created": 1, "updated": 1}


def test_fences_refuse_writes_then_listings_and_gate_deletion(shard):
    for n in range(7):
        put(shard, f"f{n}")
    put(shard, "d1", "DE")
    refused = shard.delete("/admin/countries/FR/users")
    assert refused.status_code == 409 and refused.json()["error"] == "not_fenced"  # it still owns FR

    assert shard.put("/admin/countries/FR/fence", json={"state": "frozen"}).status_code == 200
    frozen = put(shard, "f99")
    assert frozen.status_code == 409 and frozen.json() | {"message": ""} == {
        "error": "country_fenced",
        "country": "FR",
        "fence": "frozen",
        "message": "",
    }
    assert (
        shard.post(
            "/admin/users", json={"users": [{"id": "x", "name": "x", "country": "FR", "created_at": "t"}]}
        ).status_code
        == 409
    )
    assert put(shard, "d2", "DE").status_code == 201  # other countries unaffected
    assert shard.get("/users", params={"country": "FR"}).status_code == 200  # reads still served
    assert shard.get("/users/f1").status_code == 200

    shard.put("/admin/countries/FR/fence", json={"state": "moved"})
    assert shard.get("/users", params={"country": "FR"}).json()["error"] == "country_fenced"
    assert shard.get("/users/f1").status_code == 200  # by id: until the cleanup
    assert shard.delete("/admin/countries/FR/users", params={"limit": 5}).json()["remaining"] == 2
    assert shard.delete("/admin/countries/FR/users", params={"limit": 5}).json() == {
        "country": "FR",
        "deleted": 2,
        "remaining": 0,
    }
    assert shard.get("/users/f1").status_code == 404
    assert shard.get("/stats").json()["per_country"] == {"DE": 2}
    assert shard.delete("/admin/countries/FR/fence").json() == {"country": "FR", "fence": None}
    assert put(shard, "f100").status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"name": "a", "country": "UK", "created_at": "t"},  # reserved, not assigned
        {"name": "a", "country": "FRA", "created_at": "t"},
        {"name": "a", "country": " FR", "created_at": "t"},
        {"name": "a", "country": "Fr", "created_at": "t"},  # upper or lower case, as the schema's enum says
        {"name": "a", "country": 33, "created_at": "t"},
        {"name": "", "country": "FR", "created_at": "t"},
        {"country": "FR", "created_at": "t"},
        {"name": "a", "country": "FR", "created_at": "t", "admin": True},
    ],
)
def test_invalid_users_are_422(shard, body):
    response = shard.put("/users/u1", json=body)
    assert response.status_code == 422 and response.json()["error"] == "validation_error"


def test_invalid_ids_queries_and_fences_are_422(shard):
    assert put(shard, "has space").status_code == 422
    assert put(shard, "x" * 65).status_code == 422
    assert shard.get("/users").status_code == 422  # a country is required
    assert shard.get("/users", params={"country": "XX"}).status_code == 422
    assert shard.get("/users", params={"country": "FR", "cursor": "abc"}).status_code == 422
    assert shard.get("/users", params={"country": "FR", "limit": 0}).status_code == 422
    assert shard.put("/admin/countries/FR/fence", json={"state": "melted"}).status_code == 422
    assert shard.put("/admin/countries/ZZ/fence", json={"state": "moved"}).status_code == 422


def test_a_batch_holds_at_most_what_fits_in_the_body_limit(shard):
    """The schema's maxItems for a batch is exactly how many of the smallest users fit in the
    default body limit: one more is over it, whatever their size."""
    smallest = {"id": "a", "name": "a", "country": "FR", "created_at": "t"}

    def post(users: list[dict[str, str]]) -> httpx.Response:
        body = json.dumps({"users": users}, separators=(",", ":"))
        return shard.post("/admin/users", content=body, headers={"content-type": "application/json"})

    assert post([smallest] * MAX_BATCH_USERS).json() == {"created": 1, "updated": MAX_BATCH_USERS - 1}
    over = post([smallest] * (MAX_BATCH_USERS + 1))
    assert over.status_code == 413 and over.json()["error"] == "payload_too_large"


def test_redis_down_is_503_naming_it(tmp_path: Path, own_redis: RedisServer):
    env = {"SHARD_NAME": "shard-y", "SHARD_REDIS_URL": own_redis.url, "SCALECUBE_RUN_DIR": str(tmp_path)}
    cluster = ClusterProcess(SHARD, port=free_port(), workdir=tmp_path, workers=1, env=env)
    try:
        cluster.wait_ready()
        with httpx.Client(base_url=cluster.url, timeout=10) as client:
            assert put(client, "u1").status_code == 201
            own_redis.stop()
            down = client.get("/users/u1")
            assert down.status_code == 503 and down.json()["dependency"] == "redis"
            assert client.get("/readyz").json()["checks"]["redis"] is False  # reported, not failed on
    finally:
        cluster.stop()
