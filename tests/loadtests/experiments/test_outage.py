"""The outage demo's reading of answers: which requests need which part, and which answers a route that
needs a failed part may give (pure functions: the demo itself runs in test_demo_cli.py)."""

from __future__ import annotations

import pytest

from loadtests.experiments.demos.outage import PARTS, FaultRun, acceptable, describe, outage_answer, plan
from loadtests.locust.dependencies import (
    SERVED_BY_BALANCER,
    RequestRecord,
    create_name,
    error_fields,
    list_name,
    needs,
    read_name,
    shards,
)

SESSIONS_REDIS, AUTH, SHARD_A, DIRECTORY_REDIS = PARTS
HAPROXY_504 = b"<html><body><h1>504 Gateway Time-out</h1> The server didn't respond in time. </body></html>"


def test_the_packaged_map_gives_each_shard_its_own_countries():
    owned = shards()
    assert set(owned) == {"shard-a", "shard-b"}
    assert "FR" in owned["shard-a"] and "US" in owned["shard-b"]
    assert not set(owned["shard-a"]) & set(owned["shard-b"])


def test_what_each_route_needs():
    assert needs("/") == needs("/cpu") == frozenset()
    assert needs("/session/me") == needs("/session/login") == {"redis", "auth"}
    assert needs("/auth/login") == {"auth"}
    assert needs("/auth/login [429 rate limited]") == {"auth"}  # an expected refusal keeps its route's needs
    assert needs(read_name("shard-a")) == needs(create_name("shard-a")) == {"router", "directory-redis", "shard-a"}
    assert needs(list_name("shard-b")) == {"router", "shard-b"}  # the router routes a listing on its cached map
    with pytest.raises(KeyError):
        needs("/users/count")  # not in the mix: its needs are unknown, never guessed


def test_error_fields_read_our_json_errors_and_nothing_else():
    body = b'{"error":"dependency_unavailable","message":"redis is unavailable; retry shortly","dependency":"redis"}'
    assert error_fields(503, body) == ("redis", "dependency_unavailable")
    assert error_fields(504, HAPROXY_504) == (None, None)  # the balancer's own page
    assert error_fields(200, b'{"dependency": "redis"}') == (None, None)  # a success is not an error
    assert error_fields(500, b"[1, 2]") == (None, None)


def test_a_503_naming_the_failed_part_is_the_outage_answer():
    assert outage_answer(SESSIONS_REDIS, 503, "redis")
    assert outage_answer(SHARD_A, 503, "shard-a")
    assert not outage_answer(SHARD_A, 503, "shard-b")  # another part named: not this outage
    assert not outage_answer(SESSIONS_REDIS, 503, "auth")
    assert not outage_answer(SESSIONS_REDIS, 500, None)
    assert not outage_answer(SESSIONS_REDIS, 503, None, "/session/me")  # a 503 that names nothing


def test_the_balancer_answers_only_for_the_routes_it_sends_straight_to_the_failed_part():
    assert SERVED_BY_BALANCER["/auth/login"] == "auth"
    for status in (502, 503, 504):
        assert outage_answer(AUTH, status, None, "/auth/login")
    assert not outage_answer(AUTH, 504, None, "/session/me")  # the api stands between: it must name auth
    assert not outage_answer(AUTH, 500, None, "/auth/login")
    assert not outage_answer(SESSIONS_REDIS, 504, None, "/auth/login")  # auth's route, but the Redis failed


def test_describe_names_what_came_back_and_only_outage_answers_are_acceptable():
    assert describe(SESSIONS_REDIS, 200, True, None, None) == "ok"
    assert describe(SESSIONS_REDIS, 503, False, "redis", "dependency_unavailable") == "503 redis"
    assert describe(AUTH, 504, False, None, None, "/auth/login") == "504 from the balancer"
    assert describe(SHARD_A, 503, False, "redis", "dependency_unavailable") == "503 redis"  # the wrong part named
    assert describe(SESSIONS_REDIS, 0, False, None, "ReadTimeout: timed out") == "no answer (ReadTimeout)"
    assert describe(SESSIONS_REDIS, 500, False, None, "internal_error") == "500 internal_error"
    assert acceptable(SESSIONS_REDIS, "ok") and acceptable(SESSIONS_REDIS, "503 redis")
    assert acceptable(AUTH, "504 from the balancer")
    assert not acceptable(SHARD_A, "503 redis") and not acceptable(SESSIONS_REDIS, "500 internal_error")
    assert not acceptable(SESSIONS_REDIS, "no answer (ReadTimeout)")


def test_a_request_counts_for_a_fault_when_it_was_in_flight_during_it():
    fault = FaultRun(SESSIONS_REDIS, "STOP", "SIGSTOP 10 s", started=100.0, ended=110.0)
    fault.records = [
        RequestRecord("/", 90.0, 50, 200, True),  # done before: not counted
        RequestRecord("/session/me", 99.0, 3_000, 503, False, "redis"),  # sent before, answered during
        RequestRecord("/", 105.0, 5, 200, True),
        RequestRecord(read_name("shard-a"), 109.9, 5, 200, True),
        RequestRecord("/session/me", 111.0, 5, 200, True),  # after: not counted
    ]
    need, others = fault.needing()
    assert [r.t for r in need] == [99.0]
    assert [r.t for r in others] == [105.0, 109.9]


def test_smoke_freezes_a_redis_and_kills_a_cluster_the_full_run_does_both_to_each_part():
    assert [(part.name, how) for part, how in plan(smoke=True)] == [("redis", "STOP"), ("shard-a", "KILL")]
    full = plan(smoke=False)
    assert len(full) == 2 * len(PARTS) and {how for _, how in full} == {"STOP", "KILL"}
    assert [part.name for part in PARTS] == ["redis", "auth", "shard-a", "directory-redis"]


def test_a_fault_nobody_needed_tested_nothing_and_one_ridden_out_holds_saying_so():
    from loadtests.experiments.demos.outage import _judge

    quiet = FaultRun(SESSIONS_REDIS, "KILL", "SIGKILL", started=100.0, ended=100.5)
    quiet.records = [RequestRecord("/", 100.1, 5, 200, True)]
    untested = {claim.name: claim for claim in _judge(quiet, docker=True)}
    assert untested["sessions Redis KILL: routes that need it fail only with a 503 naming redis"].verdict == "fails"

    ridden = FaultRun(SESSIONS_REDIS, "KILL", "SIGKILL", started=100.0, ended=100.5)
    ridden.records = [RequestRecord("/", 100.1, 5, 200, True), RequestRecord("/session/me", 100.2, 400, 200, True)]
    claim = {c.name: c for c in _judge(ridden, docker=True)}[
        "sessions Redis KILL: routes that need it fail only with a 503 naming redis"
    ]
    assert claim.verdict == "holds" and "rode the outage out" in claim.text

    cut = FaultRun(AUTH, "KILL", "SIGKILL", started=100.0, ended=102.0)
    cut.records = [
        RequestRecord("/", 100.1, 5, 200, True),
        RequestRecord("/auth/login", 100.2, 14, 0, False, None, "HTTPConnectionClosed: connection closed."),
    ]
    claim = {c.name: c for c in _judge(cut, docker=True)}[
        "auth KILL: routes that need it fail only with a 503 naming auth"
    ]
    # What the killed process held is cut for everyone: reported, not counted (the availability demo's rule) ...
    assert claim.verdict == "holds" and "1 cut in flight by the kill itself" in claim.text
    frozen = FaultRun(AUTH, "STOP", "SIGSTOP", started=100.0, ended=102.0)
    frozen.records = cut.records
    claim = {c.name: c for c in _judge(frozen, docker=True)}[
        "auth STOP: routes that need it fail only with a 503 naming auth"
    ]
    assert claim.verdict == "fails" and "no answer (HTTPConnectionClosed)" in claim.text  # ... a freeze cuts nothing
