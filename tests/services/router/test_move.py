"""``scalecube shard move``: a country's users change shard online, under load, losing and duplicating none."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from infra.local.processes import wait_until
from services.router.move import MoveError, run_move
from services.router.shard_map import MOVES_KEY, Move
from tests.services.router.conftest import ShardedStack

LOAD_SECONDS_MAX = 90.0  # every load thread stops by itself after this, whatever happens


def fresh(url: str) -> httpx.Client:
    """A new connection per request: the cluster hands each to the next worker (rr)."""
    return httpx.Client(base_url=url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


def create_many(stack: ShardedStack, country: str, count: int) -> list[str]:
    with stack.client() as client:
        return [
            client.post("/users", json={"name": f"{country} {n}", "country": country}).json()["id"]
            for n in range(count)
        ]


def stored_ids(stack: ShardedStack, shard: str) -> dict[str, str]:
    """id -> country of every user hash in a shard's Redis."""
    with stack.redis_client(shard) as client:
        return {
            key.removeprefix("shard:user:"): client.hget(key, "country")
            for key in client.scan_iter("shard:user:*", count=1000)
        }


@dataclass
class Traffic:
    """Creates, reads and listings from threads, every outcome kept; bounded in time."""

    url: str
    readable: list[str]
    created: list[tuple[str, str, float]] = field(default_factory=list)  # (id, country, confirmed at)
    failures: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"create": 0, "read": 0, "list": 0})
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _record(self, kind: str, response: httpx.Response | None, error: str | None = None) -> None:
        with self.lock:
            self.counts[kind] += 1
            if error or response is None or response.status_code not in (200, 201):
                self.failures.append(f"{kind}: {error or (response.status_code, response.text[:200])}")

    def _loop(self, step) -> None:
        deadline = time.monotonic() + LOAD_SECONDS_MAX
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set() and time.monotonic() < deadline:
                step(client)

    def creator(self, countries: tuple[str, ...]) -> None:
        rng = random.Random()

        def step(client: httpx.Client) -> None:
            country = rng.choice(countries)
            try:
                response = client.post("/users", json={"name": "during the move", "country": country})
            except httpx.HTTPError as exc:
                return self._record("create", None, repr(exc))
            self._record("create", response)
            if response.status_code == 201:
                with self.lock:
                    self.created.append((response.json()["id"], country, time.monotonic()))
                    self.readable.append(response.json()["id"])

        self._loop(step)

    def reader(self) -> None:
        rng = random.Random()

        def step(client: httpx.Client) -> None:
            with self.lock:
                user_id = rng.choice(self.readable)
            try:
                self._record("read", client.get(f"/users/{user_id}"))
            except httpx.HTTPError as exc:
                self._record("read", None, repr(exc))

        self._loop(step)

    def lister(self, country: str) -> None:
        def step(client: httpx.Client) -> None:
            try:
                self._record("list", client.get("/users", params={"country": country, "limit": 50}))
            except httpx.HTTPError as exc:
                self._record("list", None, repr(exc))
            time.sleep(0.01)

        self._loop(step)

    def flowing(self, since: dict[str, int], reads: int, lists: int, creates: int) -> bool:
        """At least this many more of each kind than ``since`` (a copy of ``counts``)."""
        with self.lock:
            now = dict(self.counts)
        return (
            now["read"] - since["read"] >= reads
            and now["list"] - since["list"] >= lists
            and now["create"] - since["create"] >= creates
        )

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.creator, args=(("FR", "FR", "US"),)) for _ in range(3)]
        threads += [threading.Thread(target=self.reader) for _ in range(3)]
        threads += [threading.Thread(target=self.lister, args=("FR",))]
        for thread in threads:
            thread.start()
        return threads


def test_move_under_load_loses_and_duplicates_no_user(own_stack):
    stack = own_stack()
    before = {
        "FR": create_many(stack, "FR", 300),
        "DE": create_many(stack, "DE", 30),
        "US": create_many(stack, "US", 30),
    }
    traffic = Traffic(stack.url, readable=[i for ids in before.values() for i in ids])
    threads = traffic.start()
    nothing = {"read": 0, "list": 0, "create": 0}
    try:
        # Every kind of traffic flows before the move begins and again after it ends: waited for, by count.
        wait_until(lambda: traffic.flowing(nothing, 50, 5, 10), 30, what="traffic before the move")
        started = time.monotonic()
        moved = stack.scalecube("shard", "move", "fr", "shard-b", "--batch", "25", "--throttle", "0.02", "--json")
        finished = time.monotonic()
        with traffic.lock:
            at_end = dict(traffic.counts)
        wait_until(lambda: traffic.flowing(at_end, 50, 5, 10), 30, what="traffic after the move")
    finally:
        traffic.stop.set()
        for thread in threads:
            thread.join(15)
    assert moved.returncode == 0, moved.stderr
    report = json.loads(moved.stdout)
    fr_created = [user_id for user_id, country, _ in traffic.created if country == "FR"]
    during = [at for _, country, at in traffic.created if country == "FR" and started < at < finished]
    print(
        f"\nmove: {report['steps']}\ntraffic: {traffic.counts}, {len(during)} FR users created during the move, "
        f"{len(traffic.failures)} failures"
    )

    # Reads, listings and writes were all served throughout (before, during, after): not one failure.
    assert traffic.failures == []
    assert traffic.counts["read"] >= 100 and traffic.counts["list"] >= 10
    assert len(during) > 10  # the move really ran under concurrent writes to its country

    # Counts: what the source had when the move began, plus what was written since, all on the target.
    assert report["source"] == "shard-a" and report["target"] == "shard-b"
    assert report["source_before"] >= 300 and report["target_before"] == 0 and report["source_after"] == 0
    assert report["copied"] + report["caught_up"] >= report["source_before"]
    assert 0 < report["pause_ms"] < 1000

    # Exactly once: every confirmed user on exactly one shard, the one that owns its country now.
    on_a, on_b = stored_ids(stack, "shard-a"), stored_ids(stack, "shard-b")
    assert on_a.keys().isdisjoint(on_b.keys())
    all_fr = set(before["FR"]) | set(fr_created)
    assert {i for i, cc in on_b.items() if cc == "FR"} == all_fr
    assert "FR" not in on_a.values()
    assert {i for i, cc in on_a.items() if cc == "DE"} == set(before["DE"])
    with fresh(stack.url) as client:
        for user_id in [*all_fr, *before["DE"], *before["US"]]:
            response = client.get(f"/users/{user_id}")
            assert response.status_code == 200, user_id
        report_now = client.get("/shards").json()
    assert report_now["map"]["countries"]["FR"] == "shard-b" and report_now["map"]["moving"] == {}
    assert report_now["shards"]["shard-b"]["per_country"]["FR"] == len(all_fr)
    assert report_now["shards"]["shard-a"]["fences"] == {"FR": "moved"}
    total = sum(shard["users"] for shard in report_now["shards"].values())
    assert report_now["directory"]["entries"] == total == len(on_a) + len(on_b)


class SimulatedCrash(Exception):
    pass


def mover(
    stack: ShardedStack,
    country: str,
    target: str | None,
    *,
    crash_at: str | None = None,
    meanwhile: Callable[[str], None] | None = None,
    **options,
):
    """The move in this process, dying (like a killed process) when it is about to report ``crash_at``;
    ``meanwhile(step)`` runs at every step it reports."""

    def say(line: str) -> None:
        if meanwhile:
            meanwhile(line)
        if crash_at and line.startswith(crash_at):
            raise SimulatedCrash(line)

    env = stack.router_env()
    return asyncio.run(
        run_move(
            country,
            target,
            router_redis_url=env["ROUTER_REDIS_URL"],
            shard_map=env["SHARD_MAP"],
            shard_urls=env["SHARD_URLS"],
            say=say,
            **options,
        )
    )


def test_moves_resume_abort_and_never_trust_a_stale_map(own_stack):
    # Every router worker keeps its map for a minute: only the shards' fences can keep them right.
    stack = own_stack(router_workers=3, router_env={"MAP_CACHE_SECONDS": "60", "MOVE_WAIT_SECONDS": "1"})
    fr, de = create_many(stack, "FR", 40), create_many(stack, "DE", 10)
    with fresh(stack.url) as client:
        for _ in range(6):  # every worker has read the map (FR, DE -> shard-a) and keeps it
            assert client.get(f"/users/{fr[0]}").status_code == 200

        # 1. A move that dies after copying, then is aborted: shard-a keeps FR, shard-b's copies go.
        with pytest.raises(SimulatedCrash):
            mover(stack, "FR", "shard-b", crash_at="caught up", batch=10)
        shards = client.get("/shards").json()
        assert shards["map"]["moving"] == {"FR": {"from": "shard-a", "to": "shard-b", "phase": "copying"}}
        assert shards["shards"]["shard-b"]["not_owned"] == {"FR": 40} and shards["shards"]["shard-b"]["users"] == 0
        during = client.post("/users", json={"name": "x", "country": "FR"})
        assert during.status_code == 201 and during.json()["shard"] == "shard-a"  # nothing paused
        fr.append(during.json()["id"])
        with pytest.raises(MoveError, match="already moving"):
            mover(stack, "FR", "shard-a")
        aborted = stack.scalecube("shard", "move", "FR", "--abort")
        assert aborted.returncode == 0 and "40 copies removed from shard-b" in aborted.stdout, aborted.stderr
        assert "FR" not in stored_ids(stack, "shard-b").values()
        assert client.get("/shards").json()["map"]["moving"] == {}

        # 1b. A run aborted while it copies stops at its next step: it flips nothing, fences nothing.
        def abort_it(step: str) -> None:
            if step.startswith("caught up"):
                assert stack.scalecube("shard", "move", "FR", "--abort").returncode == 0

        with pytest.raises(MoveError, match="aborted or taken over"):
            mover(stack, "FR", "shard-b", meanwhile=abort_it)
        still = client.post("/users", json={"name": "y", "country": "FR"})
        assert still.json()["shard"] == "shard-a"  # not fenced
        fr.append(still.json()["id"])  # 42 FR users from here on
        assert "FR" not in stored_ids(stack, "shard-b").values()
        assert client.get("/shards").json()["map"] | {"shards": None} == {
            "shards": None,
            "countries": {"BR": "shard-b", "DE": "shard-a", "FR": "shard-a", "US": "shard-b"},
            "overrides": {},
            "moving": {},
            "unlisted": "shards[crc32(code) % 2] of ['shard-a', 'shard-b']",
        }

        # 2. A move that died mid-flip (source fenced, map not flipped): FR writes wait, then 503;
        #    FR reads and every other country go on.
        with stack.redis_client("router") as redis_client:
            redis_client.hset(MOVES_KEY, "FR", Move("shard-a", "shard-b", "flipping").to_json())
        with stack.shard_client("shard-a") as shard_a:
            shard_a.put("/admin/countries/FR/fence", json={"state": "frozen"})
        stalled = client.post("/users", json={"name": "x", "country": "FR"})
        assert stalled.status_code == 503 and stalled.json()["error"] == "country_moving"
        assert client.get(f"/users/{fr[1]}").status_code == 200
        assert client.get("/users", params={"country": "FR"}).status_code == 200
        assert client.post("/users", json={"name": "x", "country": "DE"}).status_code == 201

        resumed = stack.scalecube("shard", "move", "FR", "shard-b", "--json")
        assert resumed.returncode == 0, resumed.stderr
        report = json.loads(resumed.stdout)
        assert report["resumed_from"] == "flipping" and report["target_after"] == 42 and report["source_after"] == 0

        # 3. Every worker still holds the pre-flip map (FR -> shard-a) for most of a minute. Each
        #    kind of request meets a stale worker first and is still right.
        served = []
        old_user = client.get(f"/users/{fr[2]}")  # shard-a: cleaned up -> 404 -> fresh map -> shard-b
        assert old_user.status_code == 200 and old_user.headers["x-shard"] == "shard-b"
        new = client.post("/users", json={"name": "after", "country": "FR"})  # shard-a: 409 moved -> shard-b
        assert new.status_code == 201 and new.json()["shard"] == "shard-b"
        listed = client.get("/users", params={"country": "FR", "limit": 100})  # shard-a: 409 moved -> shard-b
        assert listed.status_code == 200 and listed.headers["x-shard"] == "shard-b"
        assert len(listed.json()["users"]) == 43
        served += [r.headers["x-served-by"] for r in (old_user, new, listed)]
        assert len(set(served)) == 3  # three different workers, each with its stale map
        assert client.get(f"/users/{new.json()['id']}").status_code == 200

        # 4. A move that dies after the flip, before the clean-up: resuming finishes the clean-up.
        with pytest.raises(SimulatedCrash):
            mover(stack, "DE", "shard-b", crash_at="waiting", grace=0.1)
        assert client.get(f"/users/{de[0]}").status_code == 200
        finished = stack.scalecube("shard", "move", "DE", "shard-b", "--json")
        assert finished.returncode == 0, finished.stderr
        report = json.loads(finished.stdout)
        assert report["resumed_from"] == "cleaning" and report["deleted"] == 11 and report["target_after"] == 11
        assert set(stored_ids(stack, "shard-a").values()) == set()  # both countries gone from shard-a
        for user_id in [*fr, *de]:
            assert client.get(f"/users/{user_id}").status_code == 200

        # 5. Moving back works the same way: shard-a's old fence is lifted, the file's map needs no override.
        back = stack.scalecube("shard", "move", "fr", "shard-a", "--grace", "0", "--json")
        assert back.returncode == 0, back.stderr
        assert json.loads(back.stdout)["target_after"] == 43
        shards = client.get("/shards").json()
        assert shards["map"]["overrides"] == {"DE": "shard-b"}
        assert client.post("/users", json={"name": "home", "country": "FR"}).json()["shard"] == "shard-a"


def test_move_refuses_what_it_cannot_do(shared_stack):
    stack = shared_stack
    stack.flush()
    for args, message in (
        (["ZZ", "shard-b"], "ISO 3166-1"),
        (["FR", "shard-z"], "no shard named"),
        (["FR"], "which shard"),
    ):
        result = stack.scalecube("shard", "move", *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    same = stack.scalecube("shard", "move", "FR", "shard-a")
    assert same.returncode == 0 and "already on shard-a" in same.stdout
    nothing = stack.scalecube("shard", "move", "FR", "--abort")
    assert nothing.returncode == 0 and "no move of FR" in nothing.stdout
    down = stack.scalecube("shard", "move", "FR", "shard-b", "--router-redis", "redis://127.0.0.1:1/0")
    assert down.returncode == 1 and "resume" in down.stderr


def test_a_move_of_long_named_users_fits_its_batches_in_the_body_limit(own_stack):
    """A page of 300 users with 100-character names is ~200 KB of JSON (each é goes as \\u00e9): sent as
    one batch it was over the shard's 64 KiB body limit (413: the move failed); the copy now splits it."""
    stack = own_stack()
    with stack.client() as client:
        ids = [
            client.post("/users", json={"name": f"{n:03d}" + "é" * 97, "country": "BR"}).json()["id"]
            for n in range(300)
        ]
    moved = stack.scalecube("shard", "move", "BR", "shard-a", "--grace", "0")
    assert moved.returncode == 0, moved.stderr
    assert sorted(stored_ids(stack, "shard-a")) == sorted(ids) and stored_ids(stack, "shard-b") == {}
