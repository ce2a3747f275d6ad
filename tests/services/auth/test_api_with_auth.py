"""The api with AUTH_URL set: credentials are checked by the auth cluster over HTTP, sessions
stay in the api's own Redis. And when auth is down, only what needs auth fails."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
import redis

from infra.local.redis_server import RedisServer
from services.api.auth_client import AuthServiceAuthenticator
from tests.services.auth.conftest import (
    API,
    AUTH,
    LIMIT_WINDOW_SECONDS,
    PASSWORD,
    api_env,
    auth_env,
    client,
    register,
    start,
)


@pytest.fixture(scope="module")
def api(auth, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The api in auth mode, its sessions in the suite's Redis (not auth's)."""
    workdir = tmp_path_factory.mktemp("api")
    cluster = start(API, api_env(redis_server.url, auth.url, workdir), workdir)
    yield cluster
    cluster.stop()


def api_sessions(redis_url: str) -> dict[str, dict]:
    with redis.Redis.from_url(redis_url, decode_responses=True) as store:
        return {key: json.loads(store.get(key)) for key in store.scan_iter("scalecube:session:*")}


def test_login_is_checked_by_auth_and_the_session_lives_in_the_api_redis(api, auth, auth_redis, redis_server, ip):
    register(auth.url, ip, "ada")
    with client(api.url, ip) as http:
        assert http.post("/session/login", json={"user": "ada", "password": "wrong-password"}).status_code == 401
        assert http.post("/session/login", json={"user": "nobody", "password": PASSWORD}).status_code == 401
        assert http.post("/session/login", json={"user": "ada"}).status_code == 401  # no password, no login
        assert http.get("/session/me").status_code == 401

        login = http.post("/session/login", json={"user": "ADA", "password": PASSWORD})
        assert login.status_code == 200 and login.json()["user"] == "ada"  # auth's canonical name
        assert "scalecube_auth" not in login.headers.get("set-cookie", "")  # auth's token stays server-side
    cookie = login.cookies["scalecube_session"]

    with client(api.url, ip, fresh=True) as http:  # both api workers find the session and check it with auth
        http.cookies.set("scalecube_session", cookie)
        answers = [http.get("/session/me") for _ in range(4)]
        assert [r.status_code for r in answers] == [200] * 4
        assert {r.json()["user"] for r in answers} == {"ada"}
        assert "auth_token" not in answers[0].text

    sessions = [s for s in api_sessions(redis_server.url).values() if s["user"] == "ada"]
    assert len(sessions) == 1 and sessions[0]["auth_token"]
    with redis.Redis.from_url(auth_redis.url, decode_responses=True) as auth_store:
        assert not list(auth_store.scan_iter("*session*"))  # auth's Redis has no sessions
        tokens_before = len(list(auth_store.scan_iter("scalecube:auth:token:*")))

    with client(api.url, ip) as http:
        http.cookies.set("scalecube_session", cookie)
        assert http.post("/session/logout").json() == {"logged_out": True}
        assert http.get("/session/me").status_code == 401
    with redis.Redis.from_url(auth_redis.url) as auth_store:  # the logout revoked the token at auth too
        assert len(list(auth_store.scan_iter("scalecube:auth:token:*"))) == tokens_before - 1


def test_a_token_revoked_at_auth_ends_the_api_session(api, auth, redis_server, ip):
    register(auth.url, ip, "grace")
    with client(api.url, ip) as http:
        assert http.post("/session/login", json={"user": "grace", "password": PASSWORD}).status_code == 200
        assert http.get("/session/me").status_code == 200
        token = next(s["auth_token"] for s in api_sessions(redis_server.url).values() if s["user"] == "grace")
        with client(auth.url, ip) as auth_http:
            assert auth_http.post("/auth/logout", headers={"Authorization": f"Bearer {token}"}).json()["logged_out"]
        gone = http.get("/session/me")
        assert gone.status_code == 401 and "log in again" in gone.json()["message"]


def test_the_api_relays_auth_rate_limits_with_their_retry_after(api, auth, ip):
    """auth counts the real client (the api forwards its address), so another client is not limited."""
    register(auth.url, ip, "hopper")
    with client(api.url, ip) as http:
        for n in range(6):  # LOGIN_IP_LIMIT=6
            assert http.post("/session/login", json={"user": f"guess{n}", "password": "guess-guess"}).status_code == 401
        limited = http.post("/session/login", json={"user": "hopper", "password": PASSWORD})
        assert limited.status_code == 429
        assert limited.json()["error"] == "too_many_requests" and "from this address" in limited.json()["message"]
        assert 1 <= int(limited.headers["retry-after"]) <= LIMIT_WINDOW_SECONDS
    with client(api.url, "192.0.2.200") as other:
        assert other.post("/session/login", json={"user": "hopper", "password": PASSWORD}).status_code == 200
    time.sleep(int(limited.headers["retry-after"]) + 0.1)
    with client(api.url, ip) as http:
        assert http.post("/session/login", json={"user": "hopper", "password": PASSWORD}).status_code == 200


def test_passwords_and_tokens_never_reach_the_api_logs(api, auth, redis_server, ip):
    secret = "Api-Never-Logs-7d1e"
    register(auth.url, ip, "erin", secret)
    with client(api.url, ip) as http:
        assert http.post("/session/login", json={"user": "erin", "password": secret}).status_code == 200
        http.get("/session/me")
        http.post("/session/login", json={"user": "erin", "password": secret + "?"})
        http.post("/session/login", json={"user": "erin", "password": secret * 20})  # over the api's limit: 422
    token = next(s["auth_token"] for s in api_sessions(redis_server.url).values() if s["user"] == "erin")
    log = api.log()
    assert "/session/me" in log and "DEBUG" in log  # debug level, access log on: the right, verbose log
    assert secret not in log and secret not in auth.log()
    assert token not in log and token not in auth.log()


def test_the_shared_http_client_never_keeps_a_users_cookie(auth, ip):
    register(auth.url, ip, "frank")
    register(auth.url, ip, "gina")
    authenticator = AuthServiceAuthenticator(auth.url)

    async def scenario():
        try:
            first = await authenticator.authenticate("frank", PASSWORD, ip)
            second = await authenticator.authenticate("gina", PASSWORD, ip)
            return first, second, len(authenticator.client.cookies)
        finally:
            await authenticator.aclose()

    first, second, cookies = asyncio.run(scenario())
    assert first["user"] == "frank" and second["user"] == "gina" and first["auth_token"] != second["auth_token"]
    assert cookies == 0


def test_auth_down_gives_503_naming_auth_only_where_needed_then_recovers(own_redis, redis_url, tmp_path, ip):
    auth = start(AUTH, auth_env(own_redis.url, tmp_path), tmp_path / "auth", workers=1)
    api = None
    try:
        api = start(API, api_env(redis_url, auth.url, tmp_path), tmp_path / "api")
        register(auth.url, ip, "ada")
        with client(api.url, ip) as http, client(api.url, ip) as other:
            assert http.post("/session/login", json={"user": "ada", "password": PASSWORD}).status_code == 200
            assert other.post("/session/login", json={"user": "ada", "password": PASSWORD}).status_code == 200

            auth.stop()
            started = time.monotonic()
            down = http.post("/session/login", json={"user": "ada", "password": PASSWORD})
            # A refused connection answers at once: well under AUTH_TIMEOUT_SECONDS (5 s), which a wait on a
            # dead auth would take; 3 s leaves a busy machine room for a request that is milliseconds of work.
            assert time.monotonic() - started < 3
            assert down.status_code == 503 and down.headers["retry-after"]
            assert down.json()["dependency"] == "auth" and "auth" in down.json()["message"]
            me = http.get("/session/me")  # the protected endpoint
            assert me.status_code == 503 and me.json()["dependency"] == "auth"
            for path in ("/", "/cpu?iterations=10", "/readyz", "/healthz"):  # public endpoints do not need auth
                assert http.get(path).status_code == 200, path
            assert other.post("/session/logout").json() == {"logged_out": True}  # logging out needs no auth

            auth = start(AUTH, auth_env(own_redis.url, tmp_path), tmp_path / "auth-again", workers=1, port=auth.port)
            assert http.get("/session/me").json()["user"] == "ada"  # same api, no restart; the token survived
            for _ in range(4):  # every api worker reconnected
                assert http.post("/session/login", json={"user": "ada", "password": PASSWORD}).status_code == 200
    finally:
        if api is not None:
            api.stop()
        auth.stop()
