"""auth against attackers: a real auth cluster (2 workers), its own real Redis, real HTTP from real addresses.

Who the client is: auth trusts X-Forwarded-For only from its trusted forwarders (FORWARDED_ALLOW_IPS,
by default 127.0.0.1 and ::1). A test client that connects from another loopback address (127.0.0.N,
every one of them this machine's) is an untrusted peer: whatever it claims in X-Forwarded-For, auth
must count it by its own address. The suite's other clients connect from 127.0.0.1 (trusted) and
name their address in X-Forwarded-For, as a balancer would (``conftest.client``).

Limits here (``conftest.FAST_LIMITS``): 6 failed logins per address, 3 per username + address,
10 registrations per address, each in a window of 4 s.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import re

import httpx
import pytest

from tests.services.auth.conftest import PASSWORD, client, register

IP_LIMIT, USER_LIMIT, REGISTER_LIMIT = 6, 3, 10
WORKERS, HASH_THREADS = 2, 2  # the conftest's auth cluster: 2 workers, the default hashing pool
_peers = itertools.count(200)
_spoofed = (f"198.18.{n // 250}.{n % 250 + 1}" for n in itertools.count())


@pytest.fixture
def peer() -> str:
    """A loopback address of this test's own to connect from: not a trusted forwarder."""
    return f"127.0.0.{next(_peers)}"


def direct(url: str, peer: str) -> httpx.Client:
    """A client connecting from ``peer``, sending no X-Forwarded-For of its own unless a request adds one."""
    return httpx.Client(base_url=url, timeout=20, transport=httpx.HTTPTransport(local_address=peer))


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(auth, ip, peer):
    """A fresh spoofed X-Forwarded-For on every attempt: the per-address limit still counts the peer."""
    register(auth.url, ip, "spoof-victim")
    spoofed = [next(_spoofed) for _ in range(IP_LIMIT + 1)]
    with direct(auth.url, peer) as http:
        statuses = [
            http.post(
                "/auth/login",
                json={"username": f"spoof-guess{n}", "password": "guess-guess"},
                headers={"X-Forwarded-For": spoofed[n]},
            ).status_code
            for n in range(IP_LIMIT)
        ]
        limited = http.post(
            "/auth/login",
            json={"username": "spoof-victim", "password": PASSWORD},
            headers={"X-Forwarded-For": spoofed[-1], "X-Real-IP": spoofed[-1]},
        )
    assert statuses == [401] * IP_LIMIT
    assert limited.status_code == 429 and limited.json()["limit"] == "ip", limited.text
    # The owner from another address logs in: the limit was on the peer, not on everyone.
    with direct(auth.url, f"127.0.0.{next(_peers)}") as other:
        assert other.post("/auth/login", json={"username": "spoof-victim", "password": PASSWORD}).status_code == 200
    # What auth saw, in its access log: the peer, never a spoofed address.
    log = auth.log()
    assert f"{peer}:" in log
    assert not [address for address in spoofed if re.search(rf"\b{re.escape(address)}:\d+ ", log)]


def test_behind_a_trusted_forwarder_the_client_is_the_rightmost_untrusted_address(auth):
    """A forwarder that appends (``spoofed, real``): auth counts ``real``, whatever the client prepended."""
    real = next(_spoofed)
    with httpx.Client(base_url=auth.url, timeout=20) as http:  # from 127.0.0.1: a trusted forwarder
        statuses = [
            http.post(
                "/auth/login",
                json={"username": f"chain-guess{n}", "password": "guess-guess"},
                headers={"X-Forwarded-For": f"{next(_spoofed)}, {real}"},
            ).status_code
            for n in range(IP_LIMIT + 1)
        ]
        other = http.post(
            "/auth/login",
            json={"username": "chain-guess0", "password": "guess-guess"},
            headers={"X-Forwarded-For": f"{real}, {next(_spoofed)}"},
        )
    assert statuses == [401] * IP_LIMIT + [429]
    assert other.status_code == 401  # another real client (the rightmost) is not limited


def test_successful_logins_never_use_up_a_limit(auth, ip):
    """Load tests log in from one address again and again: more successes than any limit, none refused."""
    register(auth.url, ip, "busy-user")
    with client(auth.url, ip) as http:
        ok = [
            http.post("/auth/login", json={"username": "busy-user", "password": PASSWORD}).status_code
            for _ in range(IP_LIMIT + USER_LIMIT + 2)
        ]
        failures = [
            http.post("/auth/login", json={"username": "busy-user", "password": "wrong-guess"}).status_code
            for _ in range(USER_LIMIT + 1)
        ]
    assert ok == [200] * (IP_LIMIT + USER_LIMIT + 2)
    assert failures == [401] * USER_LIMIT + [429]  # the failures still count, from the first


def test_the_owner_logs_in_from_elsewhere_while_an_attacker_is_limited(auth, ip):
    register(auth.url, ip, "target-owner")
    attackers = [
        next(_spoofed) for _ in range(3)
    ]  # through a trusted forwarder (conftest.client), as behind a balancer

    def attempt(address: str, password: str) -> httpx.Response:
        with client(auth.url, address) as http:
            return http.post("/auth/login", json={"username": "target-owner", "password": password})

    for attacker in attackers:  # each attacking address gets USER_LIMIT guesses on the account, then waits
        assert [attempt(attacker, "guess-guess").status_code for _ in range(USER_LIMIT + 1)] == [401] * USER_LIMIT + [
            429
        ]
        assert attempt(attacker, PASSWORD).status_code == 429  # even a right guess, from a limited address
        assert attempt(ip, PASSWORD).status_code == 200  # the owner, meanwhile, from their own address
        assert attempt(attacker, "guess-guess").status_code == 429  # the owner's success does not free the attacker


def test_concurrent_guesses_overshoot_the_limit_only_by_the_checks_that_can_run_at_once(auth, peer):
    """30 wrong passwords at once from one address: at most IP_LIMIT + one argon2 check per hashing thread get through."""

    def guess(n: int) -> int:
        with direct(auth.url, peer) as http:
            return http.post("/auth/login", json={"username": f"burst{n}", "password": "guess-guess"}).status_code

    with concurrent.futures.ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(guess, range(30)))
    assert set(statuses) == {401, 429}, statuses
    assert IP_LIMIT <= statuses.count(401) <= IP_LIMIT + WORKERS * HASH_THREADS, statuses


@pytest.mark.parametrize(
    "password, rule",
    [
        ("password", "string_too_short"),
        ("12345678", "string_too_short"),
        ("Sh0rt!pw9", "string_too_short"),
        ("1234567890", "password_common"),
        ("qwertyuiop", "password_common"),
        ("Password123", "password_common"),  # compared lowercased
        ("iloveyou12", "password_common"),
        ("weak-user-42", "password_contains_username"),  # the username plus 3 characters
        ("x" * 129, "string_too_long"),
    ],
)
def test_weak_and_common_passwords_are_refused_naming_the_rule(auth, ip, password, rule):
    with client(auth.url, ip) as http:
        response = http.post("/auth/register", json={"username": "weak-user", "password": password})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error" and "password" in body["message"]
    assert [problem["type"] for problem in body["detail"]] == [rule]
    assert all("input" not in problem for problem in body["detail"])  # never echoed back
    if password != "password":  # (that one is also the field's name)
        assert password not in response.text


def test_a_long_uncommon_password_is_accepted_and_the_schema_shows_the_rules(auth, ip):
    with client(auth.url, ip) as http:
        created = http.post("/auth/register", json={"username": "strong-user", "password": "canada-geese-strong-user!"})
        schema = http.get("/openapi.json").json()["components"]["schemas"]["RegisterRequest"]["properties"]["password"]
    assert created.status_code == 201, created.text
    assert schema["minLength"] == 10 and schema["maxLength"] == 128
    assert "common passwords" in schema["description"]


def test_registrations_are_rate_limited_per_address(auth, ip, peer):
    """Every registration counts (201 and 409 alike: 409 tells a name is taken), by the real address."""
    with client(auth.url, ip) as http:
        statuses = [
            http.post("/auth/register", json={"username": f"reg-{n % 3}", "password": PASSWORD}).status_code
            for n in range(REGISTER_LIMIT)
        ]
        limited = http.post("/auth/register", json={"username": "reg-new", "password": PASSWORD})
    assert sorted(statuses) == [201] * 3 + [409] * (REGISTER_LIMIT - 3)
    assert limited.status_code == 429 and limited.json()["error"] == "too_many_requests"
    assert 1 <= int(limited.headers["retry-after"]) <= 4 and limited.json()["limit"] == "ip"
    with direct(auth.url, peer) as other:  # untrusted, spoofing the limited address: counted as itself
        spoofing = other.post(
            "/auth/register", json={"username": "reg-new", "password": PASSWORD}, headers={"X-Forwarded-For": ip}
        )
    assert spoofing.status_code == 201, spoofing.text


def test_unknown_user_and_wrong_password_get_the_same_answer(auth, ip):
    """Status, body and headers (bar the per-response ones). Equal time: one argon2 check each (test_accounts)."""
    register(auth.url, ip, "known-user")
    with client(auth.url, ip) as http:
        wrong = http.post("/auth/login", json={"username": "known-user", "password": "wrong-guess"})
        unknown = http.post("/auth/login", json={"username": "unknown-user", "password": "wrong-guess"})
    per_response = {"date", "x-served-by", "x-request-id", "content-length"}
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.content == unknown.content
    assert {k: v for k, v in wrong.headers.items() if k not in per_response} == {
        k: v for k, v in unknown.headers.items() if k not in per_response
    }
