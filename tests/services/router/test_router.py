"""The router in front of two shards: real clusters, each with its own real Redis."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest

from infra.local.processes import wait_until
from infra.paths import REPO
from services.router.shard_map import BaseMap, stable_hash
from tests.services.router.conftest import SHARD_NAMES

FILE_MAP = BaseMap(SHARD_NAMES, {"FR": "shard-a", "DE": "shard-a", "US": "shard-b", "BR": "shard-b"})
# Listed ones, and unlisted ones the stable hash deals to each shard.
COUNTRIES = ["FR", "DE", "US", "BR", "JP", "ZA", "IT", "CA", "IN", "NG", "AR", "SE"]


def owner(country: str) -> str:
    return FILE_MAP.owner(country)


def test_unlisted_countries_are_dealt_by_a_stable_hash():
    unlisted = [cc for cc in COUNTRIES if cc not in FILE_MAP.assigned]
    assert {owner(cc) for cc in unlisted} == set(SHARD_NAMES)  # the sample exercises both shards
    # The same deal in another interpreter with another hash seed (Python's hash() would differ).
    code = (
        "from services.router.shard_map import BaseMap; import sys; "
        f"print(','.join(BaseMap({SHARD_NAMES!r}, {{}}).owner(cc) for cc in {unlisted!r}))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert other.split(",") == [BaseMap(SHARD_NAMES, {}).owner(cc) for cc in unlisted]
    assert stable_hash("JP") == zlib.crc32(b"JP")


def test_each_shard_redis_holds_only_its_countries_users(stack):
    with stack.client() as client:
        for n, country in enumerate(COUNTRIES * 3):
            created = client.post("/users", json={"name": f"user {n}", "country": country})
            assert created.status_code == 201, created.text
            assert created.json()["shard"] == owner(country)
    for name in SHARD_NAMES:
        stored = stack.countries_stored(name)
        assert stored == {cc: 3 for cc in COUNTRIES if owner(cc) == name}, name
        with stack.redis_client(name) as redis_client:
            assert all(key.startswith("shard:") for key in redis_client.scan_iter("*"))
    with stack.redis_client("router") as redis_client:
        assert set(redis_client.scan_iter("*")) == {"router:directory"}  # no user data in the router's Redis


def test_directory_is_right_under_concurrent_creates(stack):
    def create(n: int) -> dict:
        with stack.client() as client:
            response = client.post("/users", json={"name": f"c{n}", "country": COUNTRIES[n % len(COUNTRIES)]})
            assert response.status_code == 201, response.text
            return response.json()

    with ThreadPoolExecutor(8) as pool:
        users = list(pool.map(create, range(200)))
    assert len({user["id"] for user in users}) == 200

    with stack.client() as client:
        for user in users:
            found = client.get(f"/users/{user['id']}")
            assert found.status_code == 200
            assert found.headers["x-shard"] == owner(user["country"])
            assert found.json() == {k: user[k] for k in ("id", "name", "country", "created_at")}
        report = client.get("/shards").json()
    with stack.redis_client("router") as redis_client:
        assert redis_client.hlen("router:directory") == 200
    assert report["directory"]["entries"] == 200
    assert sum(shard["users"] for shard in report["shards"].values()) == 200
    expected = collections.Counter(owner(user["country"]) for user in users)
    assert {name: report["shards"][name]["users"] for name in SHARD_NAMES} == dict(expected)


def test_list_by_country_asks_only_the_owner(stack):
    with stack.client() as client:
        ids = [client.post("/users", json={"name": f"j{n}", "country": "jp"}).json()["id"] for n in range(12)]
        client.post("/users", json={"name": "other", "country": "US"})
        seen, cursor = [], None
        while True:
            page = client.get("/users", params={"country": "JP", "limit": 5} | ({"cursor": cursor} if cursor else {}))
            assert page.status_code == 200 and page.headers["x-shard"] == owner("JP")
            seen += [user["id"] for user in page.json()["users"]]
            if (cursor := page.json()["next_cursor"]) is None:
                break
        assert seen == ids
        empty = client.get("/users", params={"country": "NZ"})
        assert empty.status_code == 200 and empty.json()["users"] == []


def test_shards_report_the_live_map_and_counts(stack):
    with stack.client() as client:
        for country in ("FR", "FR", "US"):
            client.post("/users", json={"name": "x", "country": country})
        report = client.get("/shards").json()
    assert report["map"]["countries"] == {"BR": "shard-b", "DE": "shard-a", "FR": "shard-a", "US": "shard-b"}
    assert report["map"]["moving"] == {} and report["map"]["overrides"] == {}
    assert report["shards"]["shard-a"] | {"url": None} == {
        "url": None,
        "countries": ["DE", "FR"],
        "status": "up",
        "users": 2,
        "per_country": {"FR": 2},
        "not_owned": {},
        "fences": {},
    }
    assert report["shards"]["shard-b"]["users"] == 1
    assert report["directory"] == {"entries": 3}


@pytest.mark.parametrize(
    "body",
    [
        {"name": "a", "country": "UK"},
        {"name": "a", "country": "EU"},
        {"name": "a", "country": "XK"},
        {"name": "a", "country": "F"},
        {"name": "a", "country": "FRA"},
        {"name": "a", "country": ""},
        {"name": "a", "country": " FR"},
        {"name": "a", "country": 250},
        {"name": "a"},
        {"country": "FR"},
        {"name": "", "country": "FR"},
        {"name": "x" * 101, "country": "FR"},
        {"name": "a", "country": "FR", "id": "mine"},
        [],
        "FR",
    ],
)
def test_invalid_bodies_are_422_and_write_nothing(stack, body):
    with stack.client() as client:
        response = client.post("/users", json=body)
        assert response.status_code == 422
        assert response.json()["error"] == "validation_error"
    with stack.redis_client("router") as redis_client:
        assert redis_client.hlen("router:directory") == 0


def test_invalid_queries_and_unknown_users(stack):
    with stack.client() as client:
        assert client.post("/users", content=b"{nope", headers={"content-type": "application/json"}).status_code == 422
        lower = client.post("/users", json={"name": "a", "country": "fr"})
        assert lower.status_code == 201 and lower.json()["country"] == "FR"  # normalised, documented
        for path in ("/users/0123456789abcdef0123456789abcdef", "/users/not-an-id", "/users/%20", "/users/" + "a" * 65):
            missing = client.get(path)
            assert missing.status_code == 404 and missing.json()["error"] == "not_found", path
        for params in (
            {},
            {"country": "ZZ"},
            {"country": "FR", "limit": 0},
            {"country": "FR", "limit": 5000},
            {"country": "FR", "cursor": "x"},
        ):
            assert client.get("/users", params=params).status_code == 422, params


def test_one_shard_down_affects_only_its_countries(own_stack):
    stack = own_stack()
    with stack.client() as client:
        fr = client.post("/users", json={"name": "amelie", "country": "FR"}).json()
        us = client.post("/users", json={"name": "sam", "country": "US"}).json()
        stack.clusters["shard-b"].stop()

        for response in (
            client.post("/users", json={"name": "x", "country": "US"}),
            client.get(f"/users/{us['id']}"),
            client.get("/users", params={"country": "BR"}),
        ):
            assert response.status_code == 503, response.text
            assert response.json()["dependency"] == "shard-b" and "shard-b" in response.json()["message"]
            assert response.headers["retry-after"] == "1"
        assert client.post("/users", json={"name": "y", "country": "FR"}).status_code == 201
        assert client.get(f"/users/{fr['id']}").status_code == 200
        assert client.get("/users", params={"country": "DE"}).status_code == 200
        report = client.get("/shards")
        assert report.status_code == 200
        assert report.json()["shards"]["shard-b"]["status"] == "down"
        assert report.json()["shards"]["shard-a"]["status"] == "up"
        assert client.get("/readyz").status_code == 200  # the router stays in rotation for the other shard

        stack.start_shard("shard-b")  # same port, same Redis: it comes back with its users
        wait_until(lambda: client.get(f"/users/{us['id']}").status_code == 200, 15, what="shard-b back")
        for _ in range(4):  # every router worker recovered
            assert client.post("/users", json={"name": "z", "country": "US"}).status_code == 201
        report = client.get("/shards").json()
    assert report["shards"]["shard-b"]["users"] == 5 and report["shards"]["shard-a"]["users"] == 2
    assert report["directory"]["entries"] == 8  # one intent whose shard write failed: never visible, see routing.py

    stack.redis["router"].stop()  # the directory itself: every user operation needs it
    with stack.client() as client:
        for response in (client.post("/users", json={"name": "x", "country": "FR"}), client.get(f"/users/{fr['id']}")):
            assert response.status_code == 503 and response.json()["dependency"] == "redis"
        assert client.get("/readyz").json()["checks"]["redis"] is False  # reported, still in rotation
