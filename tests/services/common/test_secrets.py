"""No known secret, ever: a published placeholder or a short value stops a service naming the variable
(never the value); NAME_FILE is read; `scalecube serve` without SESSION_SECRET gives all its workers one
random secret; Redis clients send REDIS_PASSWORD. Real processes where it is about starting."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis
from typer.testing import CliRunner

from infra.local.ports import free_port
from kit import secrets
from kit.signing import Signer
from lb.haproxy import runner
from scalecube import cli as scalecube_cli
from services.common.settings import InvalidSettings, ServiceSettings
from shared_cache.connection import RedisConnector
from tests.support.haproxy import require_haproxy

API = "services.api.app:app"
GOOD = "a-random-enough-secret-for-the-test"
OLD_IN_CODE_SECRET = "scalecube-insecure-development-session-secret"  # what the api signed with before
SECRET_VARIABLES = [name + suffix for name in secrets.SECRETS for suffix in ("", secrets.FILE_SUFFIX)]


@pytest.fixture(autouse=True)
def no_secret_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def clean_env(**env: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}, **env}


# -- the rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", sorted(secrets.KNOWN_VALUES) + ["CHANGE-ME-anything-at-all", "compose-dev-whatever-else"]
)
def test_every_published_value_is_refused(value: str) -> None:
    assert "known placeholder" in (secrets.problem(value) or "")


def test_a_short_value_is_refused_and_a_random_one_passes() -> None:
    assert (
        secrets.problem("x" * (secrets.MIN_SECRET_LENGTH - 1))
        == f"must be at least {secrets.MIN_SECRET_LENGTH} characters"
    )
    assert secrets.problem(secrets.generate()) is None
    assert secrets.generate() != secrets.generate()


# -- a service refuses to start -------------------------------------------------------------------


def serve_once(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    argv = [
        sys.executable,
        "-m",
        "scalecube",
        "serve",
        API,
        "--workers",
        "1",
        "--port",
        str(free_port()),
        "--control",
        str(tmp_path / "c.sock"),
    ]
    return subprocess.run(
        argv,
        env=clean_env(SCALECUBE_RUN_DIR=str(tmp_path), SESSION_BACKEND="memory", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("compose-dev-secret-change-me-0123456789abcdef", "SESSION_SECRET: is a known placeholder"),
        ("CHANGE-ME-placeholder-session-secret", "SESSION_SECRET: is a known placeholder"),
        ("hunter2-short", "SESSION_SECRET: must be at least 16 characters"),
    ],
)
def test_the_api_refuses_a_placeholder_or_short_session_secret(tmp_path: Path, value: str, reason: str) -> None:
    result = serve_once(tmp_path, SESSION_SECRET=value)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert [line for line in output.splitlines() if reason in line], output  # one line naming the variable
    assert value not in output  # never the value


def test_a_placeholder_in_a_secret_file_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "SESSION_SECRET"
    path.write_text("scalecube-insecure-development-session-secret\n")
    result = serve_once(tmp_path, SESSION_SECRET_FILE=str(path))
    assert result.returncode != 0 and "SESSION_SECRET: is a known placeholder" in result.stderr


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("compose-dev-cookie-key", "LB_STICKY_SECRET: is a known placeholder"),
        ("too-short", "LB_STICKY_SECRET: must be at least 16 characters"),
    ],
)
def test_the_python_balancer_refuses_a_placeholder_or_short_sticky_secret(value: str, reason: str) -> None:
    argv = [
        sys.executable,
        "-m",
        "scalecube",
        "lb",
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--admin",
        f"127.0.0.1:{free_port()}",
        "--upstream",
        "api=static:127.0.0.1:9",
    ]
    result = subprocess.run(argv, env=clean_env(LB_STICKY_SECRET=value), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and reason in result.stderr, result.stderr
    assert value not in result.stderr


def test_haproxy_refuses_every_published_cookie_key_and_the_runner_a_short_one() -> None:
    require_haproxy()
    for value in sorted(secrets.KNOWN_VALUES):  # haproxy.cfg's own list is kept in step with the kit's
        with pytest.raises(runner.HaproxyConfigError, match="LB_COOKIE_KEY is a known placeholder"):
            runner.check_config(
                {**runner.HaproxySettings(sticky=True, admin_password=GOOD).environment(), "LB_COOKIE_KEY": value}
            )
    with pytest.raises(runner.HaproxyConfigError, match="LB_STICKY=1 needs LB_COOKIE_KEY"):
        runner.check_config(runner.HaproxySettings(sticky=True, admin_password=GOOD).environment())
    runner.check_config(runner.HaproxySettings(sticky=True, cookie_key=GOOD, admin_password=GOOD).environment())
    for value, reason in (("compose-dev-cookie-key", "known placeholder"), ("short-key", "at least 16")):
        with pytest.raises(secrets.SecretError, match=f"LB_COOKIE_KEY: .*{reason}"):
            runner.HaproxySettings(cookie_key=value)


# -- NAME_FILE ------------------------------------------------------------------------------------


def test_every_secret_setting_reads_its_file_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "session").write_text(GOOD + "\n")
    (tmp_path / "redis").write_text("a-redis-password-from-a-file")
    monkeypatch.setenv("SESSION_SECRET_FILE", str(tmp_path / "session"))
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(tmp_path / "redis"))
    settings = ServiceSettings.load()
    assert settings.session_secret_value == GOOD  # the trailing newline is not part of it
    assert settings.redis_password_value == "a-redis-password-from-a-file"
    monkeypatch.setenv("SESSION_SECRET", "set-in-the-environment-wins")
    assert ServiceSettings.load().session_secret_value == "set-in-the-environment-wins"


def test_an_unreadable_secret_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(InvalidSettings, match="REDIS_PASSWORD_FILE: cannot read"):
        ServiceSettings.load()


def test_the_secrets_writer_generates_once_keeps_and_takes_yours(tmp_path: Path) -> None:
    directory = tmp_path / "volume"
    unset = {name: "" for name in secrets.SECRETS}

    def write(**env: str) -> dict[str, str]:
        result = CliRunner().invoke(
            scalecube_cli.app, ["secrets", "write", str(directory), "--mode", "0444"], env={**unset, **env}
        )
        assert result.exit_code == 0, result.output
        return {path.name: path.read_text().strip() for path in directory.iterdir()}

    first = write()
    assert set(first) == set(secrets.SECRETS) and len(set(first.values())) == len(first)
    assert all(secrets.problem(value) is None for value in first.values())
    assert all((directory / name).stat().st_mode & 0o777 == 0o444 for name in first)
    assert write() == first  # a second `up`: the same secrets, so existing sessions and cookies still hold
    assert write(REDIS_PASSWORD=GOOD) == {**first, "REDIS_PASSWORD": GOOD}
    refused = CliRunner().invoke(
        scalecube_cli.app,
        ["secrets", "write", str(directory)],
        env={**unset, "SESSION_SECRET": "compose-dev-secret-change-me-0123456789abcdef"},
    )
    assert refused.exit_code == 2 and "SESSION_SECRET: is a known placeholder" in refused.output
    assert "compose-dev-secret" not in refused.output


# -- one cluster, one random secret ---------------------------------------------------------------


def test_serve_without_a_secret_gives_every_worker_the_same_random_one(
    start_cluster, redis_url: str, tmp_path: Path
) -> None:
    cluster = start_cluster(API, workers=2, env={"REDIS_URL": redis_url, "SCALECUBE_RUN_DIR": str(tmp_path)})
    assert "SESSION_SECRET is not set: made a random one, shared by this cluster's workers" in cluster.log()
    login = httpx.post(cluster.url + "/session/login", json={"user": "ada"}, timeout=10)
    assert login.status_code == 200, login.text
    cookie = login.cookies["scalecube_session"]
    served_by = set()
    for _ in range(8):  # a new connection each time: the master hands each to the next worker (rr)
        me = httpx.get(cluster.url + "/session/me", cookies={"scalecube_session": cookie}, timeout=10)
        assert me.status_code == 200 and me.json()["user"] == "ada", me.text
        served_by.add(me.headers["x-served-by"])
    assert len(served_by) == 2, served_by  # both workers verified the cookie the first one signed
    # Not the old in-code secret: a cookie forged with it is no session.
    session_id = cookie.rpartition(".")[0]
    forged = Signer(OLD_IN_CODE_SECRET, salt="session").sign(session_id)
    assert forged != cookie
    assert httpx.get(cluster.url + "/session/me", cookies={"scalecube_session": forged}, timeout=10).status_code == 401


# -- Redis requires a password, and the kit's connector sends it ----------------------------------


def test_the_connector_sends_redis_password(own_redis) -> None:
    with redis.Redis.from_url(own_redis.url) as admin:
        admin.config_set("requirepass", GOOD)

    async def scenario() -> None:
        without = RedisConnector(own_redis.url)
        with pytest.raises(redis.AuthenticationError, match="(?i)auth"):  # NOAUTH, or HELLO refused unauthenticated
            await without.client.set("k", "v")  # nothing without the password
        await without.close()
        connector = RedisConnector(own_redis.url, password=GOOD)
        assert await connector.client.set("k", "v") and await connector.client.get("k") == b"v"
        await connector.close()

    asyncio.run(scenario())
