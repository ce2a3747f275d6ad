"""The auth service on its own: a real cluster, its own real Redis, real HTTP."""

from __future__ import annotations

import concurrent.futures
import time

import pytest
import redis

from infra.local.ports import free_port
from infra.local.processes import ClusterProcess, wait_until
from tests.services.auth.conftest import AUTH, LIMIT_WINDOW_SECONDS, PASSWORD, client, register


def test_register_login_verify_logout(auth, ip):
    with client(auth.url, ip) as http:
        before = http.get("/auth/users/count").json()["count"]
        created = http.post("/auth/register", json={"username": "Ada.Lovelace", "password": PASSWORD})
        assert created.status_code == 201 and created.json() == {"username": "ada.lovelace"}  # names are lowercase
        assert http.get("/auth/users/count").json() == {"count": before + 1}

        login = http.post("/auth/login", json={"username": "ADA.lovelace", "password": PASSWORD})
        assert login.status_code == 200
        body = login.json()
        assert body["username"] == "ada.lovelace" and len(body["token"]) >= 43
        assert login.headers["cache-control"] == "no-store"
        cookie = login.headers["set-cookie"].lower()
        assert "scalecube_auth=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        assert login.cookies["scalecube_auth"] == body["token"]
        token = body["token"]

        assert http.get("/auth/verify").json() == {"username": "ada.lovelace"}  # by the cookie
        http.cookies.clear()
        missing = http.get("/auth/verify")
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"

    bearer = {"Authorization": f"Bearer {token}"}
    with client(auth.url, ip, fresh=True) as http:  # every worker knows the token: it lives in auth's Redis
        answers = [http.get("/auth/verify", headers=bearer) for _ in range(4)]
        assert {r.json()["username"] for r in answers} == {"ada.lovelace"}
        assert len({r.headers["x-served-by"] for r in answers}) == 2

        assert http.post("/auth/logout", headers=bearer).json() == {"logged_out": True}
        revoked = http.get("/auth/verify", headers=bearer)
        assert revoked.status_code == 401 and revoked.json()["error"] == "invalid_token"
        assert http.post("/auth/logout", headers=bearer).json() == {"logged_out": False}
        assert http.get("/auth/verify", headers={"Authorization": "Bearer not-a-real-token"}).status_code == 401


def test_a_taken_username_is_409_even_when_registered_concurrently(auth, ip):
    register(auth.url, ip, "grace")
    with client(auth.url, ip) as http:
        taken = http.post("/auth/register", json={"username": "GRACE", "password": "another-password"})
    assert taken.status_code == 409 and taken.json()["error"] == "username_taken"

    def attempt(_: int) -> int:
        with client(auth.url, ip) as http:
            return http.post("/auth/register", json={"username": "race", "password": PASSWORD}).status_code

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(attempt, range(6)))
    assert statuses == [201, 409, 409, 409, 409, 409]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"username": "ab", "password": PASSWORD}, "username"),
        ({"username": "a" * 33, "password": PASSWORD}, "username"),
        ({"username": "has space", "password": PASSWORD}, "username"),
        ({"username": "ada@example", "password": PASSWORD}, "username"),
        ({"username": "ada", "password": "Sh0rt!x"}, "password"),
        ({"username": "ada", "password": "L0ng!" * 26}, "password"),
        ({"username": "ada"}, "password"),
        ({"password": PASSWORD}, "username"),
        ({"username": 42, "password": PASSWORD}, "username"),
    ],
)
def test_registration_validation_is_a_clear_422_that_never_echoes_the_password(auth, ip, body, field):
    with client(auth.url, ip) as http:
        response = http.post("/auth/register", json=body)
    assert response.status_code == 422
    error = response.json()
    assert error["error"] == "validation_error"
    assert f"body.{field}" in error["message"]
    if "password" in body:
        assert body["password"] not in response.text
    if field == "username" and isinstance(body.get("username"), str):
        assert "username must be 3 to 32 characters" in error["message"]


def test_wrong_password_and_unknown_user_look_the_same(auth, ip):
    register(auth.url, ip, "hopper")
    with client(auth.url, ip) as http:
        wrong = http.post("/auth/login", json={"username": "hopper", "password": "not-the-password"})
        unknown = http.post("/auth/login", json={"username": "nobody-here", "password": "not-the-password"})
        odd = http.post("/auth/login", json={"username": "No Such Name!", "password": "x"})  # could never register
    for response in (wrong, unknown, odd):
        assert response.status_code == 401
        assert response.json() == {"error": "invalid_credentials", "message": "wrong username or password"}
        assert "set-cookie" not in response.headers


def test_failed_logins_per_username_and_address_are_limited_then_allowed_again(auth, ip):
    """LOGIN_USER_LIMIT=3 failures per window, per username AND client address."""
    register(auth.url, ip, "victim")

    def login(password: str, username: str = "victim", address: str = ip):
        with client(auth.url, address) as http:
            return http.post("/auth/login", json={"username": username, "password": password})

    assert [login("wrong-guess").status_code for _ in range(3)] == [401, 401, 401]
    limited = login(PASSWORD)  # even the right password waits, from this address: no guessing while locked
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= LIMIT_WINDOW_SECONDS
    assert limited.json()["limit"] == "username" and "retry in" in limited.json()["message"]
    assert login(PASSWORD, address="203.0.113.201").status_code == 200  # the owner, elsewhere, is not locked out
    # An unknown name is limited exactly the same way: the limit does not reveal who exists.
    assert [login("x", "ghost", "203.0.113.202").status_code for _ in range(4)] == [401, 401, 401, 429]

    time.sleep(int(limited.headers["retry-after"]) + 0.1)
    assert login(PASSWORD).status_code == 200
    # A success resets the count: three more failures before the next lock.
    assert [login("wrong-guess").status_code for _ in range(4)] == [401, 401, 401, 429]


def test_login_attempts_per_ip_are_limited_then_allowed_again(auth, ip):
    """LOGIN_IP_LIMIT=6 failures per window, whatever the username."""
    register(auth.url, ip, "carol")
    with client(auth.url, ip) as http:
        statuses = [
            http.post("/auth/login", json={"username": f"someone{n}", "password": "guess-guess"}).status_code
            for n in range(6)
        ]
        assert statuses == [401] * 6
        limited = http.post("/auth/login", json={"username": "carol", "password": PASSWORD})
        assert limited.status_code == 429 and limited.json()["limit"] == "ip"
        assert 1 <= int(limited.headers["retry-after"]) <= LIMIT_WINDOW_SECONDS
    with client(auth.url, "192.0.2.77") as other:
        assert other.post("/auth/login", json={"username": "carol", "password": PASSWORD}).status_code == 200

    time.sleep(int(limited.headers["retry-after"]) + 0.1)
    with client(auth.url, ip) as http:
        assert http.post("/auth/login", json={"username": "carol", "password": PASSWORD}).status_code == 200


def test_auth_redis_holds_only_credentials_tokens_and_counters(auth, auth_redis, ip):
    register(auth.url, ip, "dora")
    with client(auth.url, ip) as http:
        token = http.post("/auth/login", json={"username": "dora", "password": PASSWORD}).json()["token"]
        http.post("/auth/login", json={"username": "dora", "password": "wrong-password"})
    with redis.Redis.from_url(auth_redis.url, decode_responses=True) as store:
        keys = list(store.scan_iter())
        assert keys
        for key in keys:
            assert key == "scalecube:auth:users" or key.startswith(
                ("scalecube:auth:token:", "scalecube:auth:ratelimit:")
            ), key
            assert store.ttl(key) > 0 or key == "scalecube:auth:users"  # tokens and counters expire
        hashes = store.hgetall("scalecube:auth:users")
        assert hashes["dora"].startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert all(PASSWORD not in value for value in hashes.values())
        # The token is stored by its SHA-256: what is in Redis cannot be used to log in.
        assert not any(token in key for key in keys)
        assert any(store.get(key) == "dora" for key in keys if key.startswith("scalecube:auth:token:"))


def test_passwords_and_tokens_never_reach_the_logs(auth, ip):
    secret = "Never-Log-Me-9f2c"
    with client(auth.url, ip) as http:
        http.post("/auth/register", json={"username": "erin", "password": secret})
        http.post("/auth/register", json={"username": "x", "password": secret})  # a 422
        http.post("/auth/register", json={"username": "erin", "password": secret + "x" * 200})  # a 422, too long
        token = http.post("/auth/login", json={"username": "erin", "password": secret}).json()["token"]
        http.post("/auth/login", json={"username": "erin", "password": secret + "!"})
        http.get("/auth/verify", headers={"Authorization": f"Bearer {token}"})
    wait_until(lambda: "/auth/verify" in auth.log(), 10, what="the access log line of /auth/verify")
    log = auth.log()
    assert "erin" in log  # it is the right log, written at debug level with the access log on
    assert secret not in log and token not in log


def test_auth_refuses_to_start_without_its_own_redis(tmp_path):
    cluster = ClusterProcess(
        AUTH,
        port=free_port(),
        workdir=tmp_path,
        workers=1,
        env={"AUTH_REDIS_URL": "", "SCALECUBE_RUN_DIR": str(tmp_path)},
    )
    try:
        assert cluster.wait(20) != 0
    finally:
        cluster.stop()
    assert "AUTH_REDIS_URL" in cluster.log() and "required" in cluster.log()
