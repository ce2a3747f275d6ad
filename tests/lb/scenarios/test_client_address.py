"""Through each balancer, the real auth service counts a client by its real address, whatever it claims.

A client connects to the balancer from 127.0.0.N (its own address on this machine, not a trusted
forwarder) and sends a fresh spoofed X-Forwarded-For with every failed login. Whether the balancer
replaces that header with the address it sees or appends that address to it, auth (which trusts
X-Forwarded-For from 127.0.0.1 only, where the balancer connects from, and then takes the rightmost
untrusted address) must count every attempt against 127.0.0.N: the per-address limit is reached.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import pytest

from infra.local.redis_server import RedisServer
from tests.lb.conftest import loopback_topology
from tests.services.auth.conftest import AUTH, auth_env
from tests.support.fixtures import running_redis

BACKEND = "tests.lb.backend_app:app"  # the api backend every balancer needs; these requests go to auth
API_HOST, AUTH_HOST = "127.0.0.2", "127.0.0.6"
IP_LIMIT = 6  # the auth suite's LOGIN_IP_LIMIT
_peers = itertools.count(230)
_spoofed = (f"198.18.7.{n}" for n in itertools.count(1))


@pytest.fixture(scope="module")
def auth_redis() -> Iterator[RedisServer]:
    yield from running_redis()


@pytest.fixture(scope="module")
def guarded(auth_redis, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("guarded")
    with loopback_topology(workdir) as topology:
        topology.start("api", API_HOST, BACKEND, workers=1)
        env = {key: value for key, value in auth_env(auth_redis.url, workdir).items() if key != "SCALECUBE_RUN_DIR"}
        topology.start("auth", AUTH_HOST, AUTH, workers=1, env=env)  # the topology gives it a run dir of its own
        topology.wait_ready()
        yield topology


def from_address(url: str, peer: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=20, transport=httpx.HTTPTransport(local_address=peer))


def test_a_spoofed_forwarded_for_cannot_dodge_the_failed_login_limit(kind, guarded, start_balancer):
    lb = start_balancer(kind, guarded, routes={"auth": "auth"})
    peer, other = f"127.0.0.{next(_peers)}", f"127.0.0.{next(_peers)}"
    with from_address(lb.url, peer) as http:
        statuses = [
            http.post(
                "/auth/login",
                json={"username": f"lb-guess{n}", "password": "guess-guess"},
                headers={"X-Forwarded-For": next(_spoofed)},
            ).status_code
            for n in range(IP_LIMIT + 1)
        ]
    assert statuses == [401] * IP_LIMIT + [429], statuses
    with from_address(lb.url, other) as http:  # another client through the same balancer: not limited
        assert http.post("/auth/login", json={"username": "lb-guess0", "password": "guess-guess"}).status_code == 401
