"""What HAProxy does to requests on their way: forwarding headers, request ids, routes, replays.

The replicas here run ``tests.lb.backend_app`` (it echoes the request as it arrived,
and has an endpoint that kills the worker mid-request), so the tests see exactly
what the balancer sent. The api itself echoes nothing, and gets nothing added for tests.
"""

from __future__ import annotations

import httpx
import pytest

from tests.lb.conftest import get_many, loopback_topology, replicas_serving

pytestmark = pytest.mark.usefixtures("haproxy_binary")

BACKEND = "tests.lb.backend_app:app"
API_HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
AUTH_HOST, ROUTER_HOST = "127.0.0.6", "127.0.0.7"
ROUTES = {"auth": "auth", "router": "router"}


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("echo")
    env = {"RECEIPTS_FILE": str(workdir / "receipts")}
    with loopback_topology(workdir) as topology:
        for host in API_HOSTS:
            topology.start("api", host, BACKEND, workers=2, env=env)
        topology.start("auth", AUTH_HOST, BACKEND, workers=1, env=env)
        topology.start("router", ROUTER_HOST, BACKEND, workers=1, env=env)
        topology.wait_ready()
        yield topology


def test_forwarding_headers_and_a_request_id_reach_the_replica(echo, start_balancer):
    lb = start_balancer("haproxy", echo)
    first, second = (httpx.get(lb.url + "/echo", timeout=10).json()["headers"] for _ in range(2))
    assert first["x-forwarded-for"] == "127.0.0.1"
    assert first["x-forwarded-proto"] == "http"
    assert first["x-request-id"] and second["x-request-id"] and first["x-request-id"] != second["x-request-id"]

    mine = httpx.get(lb.url + "/echo", headers={"X-Request-Id": "trace-42", "X-Forwarded-Proto": "gopher"},
                     timeout=10).json()["headers"]  # fmt: skip
    assert mine["x-request-id"] == "trace-42"  # the client's id is kept...
    assert mine["x-forwarded-proto"] == "http"  # ...its claim about the scheme is not
    assert "{trace-42}" in lb.log()  # and the access log names the id the replica saw


def test_the_sticky_cookie_is_the_balancers_alone(echo, start_balancer):
    lb = start_balancer("haproxy", echo, sticky=True)
    with httpx.Client(timeout=10) as client:
        client.get(lb.url + "/echo")
        client.cookies.set("app", "1")
        seen = client.get(lb.url + "/echo").json()["headers"]
    assert "SCALECUBE_LB" in client.cookies
    assert seen["cookie"] == "app=1"  # `indirect`: HAProxy strips its own cookie, passes the app's


@pytest.mark.parametrize("routed", [True, False], ids=["auth-and-router", "api-only"])
def test_auth_and_router_routes_exist_when_their_services_are_named(echo, start_balancer, routed):
    lb = start_balancer("haproxy", echo, routes=ROUTES if routed else None)
    paths = ["/auth/login", "/users", "/users/42", "/auth", "/usersx", "/"]
    where = replicas_serving(echo, [httpx.get(lb.url + path, timeout=10) for path in paths])
    expected = [AUTH_HOST, ROUTER_HOST, ROUTER_HOST] if routed else [None] * 3
    for path, host, want in zip(paths, where, [*expected, None, None, None], strict=True):
        if want is None:
            assert host in API_HOSTS, f"{path} went to {host}"
        else:
            assert host == want, f"{path} went to {host}"


def test_a_request_whose_replica_dies_mid_request_is_replayed_only_if_idempotent(echo, start_balancer):
    lb = start_balancer("haproxy", echo)
    receipts = echo.workdir / "receipts"
    receipts.unlink(missing_ok=True)

    # GET is idempotent: replayed after each empty response, on another replica each time, 1 + 3 retries.
    assert httpx.get(lb.url + "/die-once", timeout=10).status_code == 502
    assert len(receipts.read_text().split()) == 4

    # POST is not: the one worker that received it dies, and the client is told, not the next replica.
    receipts.unlink()
    assert httpx.post(lb.url + "/die-once", content=b"order #1", timeout=10).status_code == 502
    assert len(receipts.read_text().split()) == 1

    echo.wait_ready()  # the clusters replace their dead workers
    assert {r.status_code for r in get_many(lb.url + "/echo", 6)} == {200}
