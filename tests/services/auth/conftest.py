"""auth as it really runs: a cluster on its own Redis; the api, in auth mode, on another."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.local.ports import free_port
from infra.local.processes import ClusterProcess
from infra.local.redis_server import RedisServer
from tests.support.fixtures import ready, running_redis

AUTH = "services.auth.app:app"
API = "services.api.app:app"
# Short windows, so a test sees a limit hit and then lifted within seconds; long enough that the attempts
# that must fall inside one window do (7 logins, each an argon2 check: ~1 s with both cores busy).
LIMIT_WINDOW_SECONDS = 4
FAST_LIMITS = {
    "LOGIN_USER_LIMIT": "3",
    "LOGIN_USER_WINDOW_SECONDS": str(LIMIT_WINDOW_SECONDS),
    "LOGIN_IP_LIMIT": "6",
    "LOGIN_IP_WINDOW_SECONDS": str(LIMIT_WINDOW_SECONDS),
    "REGISTER_IP_LIMIT": "10",
    "REGISTER_IP_WINDOW_SECONDS": str(LIMIT_WINDOW_SECONDS),
}
PASSWORD = "Tr0ub4dor&3-horse"  # distinctive, so the logs can be searched for it

_addresses = itertools.count(1)


def auth_env(redis_url: str, run_dir: Path, **extra: str) -> dict[str, str]:
    # Debug logs and the access log on: the tests check that even these never show a password or token.
    return {
        "AUTH_REDIS_URL": redis_url,
        "SCALECUBE_RUN_DIR": str(run_dir),
        "LOG_LEVEL": "debug",
        "ACCESS_LOG": "1",
        **FAST_LIMITS,
        **extra,
    }


def api_env(redis_url: str, auth_url: str, run_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "AUTH_URL": auth_url,
        "SESSION_SECRET": "test-secret-long-enough-123",
        "SCALECUBE_RUN_DIR": str(run_dir),
        "LOG_LEVEL": "debug",
        "ACCESS_LOG": "1",
        **extra,
    }


def start(app: str, env: dict[str, str], workdir: Path, *, workers: int = 2, port: int = 0) -> ClusterProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    return ready(ClusterProcess(app, port=port or free_port(), workdir=workdir, workers=workers, env=env))


@pytest.fixture
def ip() -> str:
    """A client address of its own for each test (sent as X-Forwarded-For, which the services
    honour from 127.0.0.1, their default trusted forwarder), so per-IP counters never leak from one
    test into another."""
    n = next(_addresses)
    return f"198.51.{100 + n // 250}.{n % 250 + 1}"


def client(url: str, ip: str, *, fresh: bool = False) -> httpx.Client:
    """``fresh``: a new connection per request, so rr spreads the requests over the workers."""
    limits = httpx.Limits(max_keepalive_connections=0) if fresh else httpx.Limits()
    return httpx.Client(base_url=url, headers={"X-Forwarded-For": ip}, timeout=10, limits=limits)


@pytest.fixture(scope="module")
def auth_redis() -> Iterator[RedisServer]:
    yield from running_redis()


@pytest.fixture(scope="module")
def auth(auth_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    """One auth cluster per test module; tests keep apart by using their own usernames and client IPs."""
    workdir = tmp_path_factory.mktemp("auth")
    cluster = start(AUTH, auth_env(auth_redis.url, workdir), workdir)
    yield cluster
    cluster.stop()


def register(auth_url: str, ip: str, username: str, password: str = PASSWORD) -> None:
    with client(auth_url, ip) as http:
        response = http.post("/auth/register", json={"username": username, "password": password})
    assert response.status_code == 201, response.text
