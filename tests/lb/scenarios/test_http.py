"""What a balancer does to requests on their way: forwarding headers, request ids, its own cookie,
routes, replays; and what it does to requests that are malformed, oversized or slow.

The replicas here run ``tests.lb.backend_app`` (it echoes the request as it arrived,
and has an endpoint that kills the worker mid-request), so the tests see exactly
what the balancer sent. The api itself echoes nothing, and gets nothing added for tests.
"""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from infra.local.processes import wait_until
from tests.lb.conftest import STICKY_COOKIE, get_many, loopback_topology, raw, replicas_serving

BACKEND = "tests.lb.backend_app:app"
API_HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
AUTH_HOST, ROUTER_HOST = "127.0.0.6", "127.0.0.7"
ROUTES = {"auth": "auth", "router": "router"}
HEADER_TIMEOUT = 5.0  # haproxy.cfg's `timeout http-request`; the Python balancer is started with the same


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


# -- on the way through ----------------------------------------------------------------


def test_forwarding_headers_and_a_request_id_reach_the_replica(kind, echo, start_balancer):
    lb = start_balancer(kind, echo)
    first, second = (httpx.get(lb.url + "/echo", timeout=10).json()["headers"] for _ in range(2))
    assert first["x-forwarded-for"] == "127.0.0.1"
    assert first["x-forwarded-proto"] == "http"
    assert first["x-request-id"] and second["x-request-id"] and first["x-request-id"] != second["x-request-id"]

    claims = {"X-Request-Id": "trace-42", "X-Forwarded-Proto": "gopher", "X-Forwarded-For": "203.0.113.9"}
    mine = httpx.get(lb.url + "/echo", headers=claims, timeout=10).json()["headers"]
    assert mine["x-request-id"] == "trace-42"  # the client's id is kept...
    assert mine["x-forwarded-proto"] == "http"  # ...its claim about the scheme is not...
    assert mine["x-forwarded-for"] == "127.0.0.1"  # ...nor its claim about its address: the edge replaces it


def test_the_sticky_cookie_is_the_balancers_alone(kind, echo, start_balancer):
    lb = start_balancer(kind, echo, sticky=True)
    with httpx.Client(timeout=10) as client:
        client.get(lb.url + "/echo")
        client.cookies.set("app", "1")
        seen = client.get(lb.url + "/echo").json()["headers"]
        client.cookies.delete("app")
        alone = client.get(lb.url + "/echo").json()["headers"]
    assert STICKY_COOKIE in client.cookies
    assert seen["cookie"] == "app=1"  # the balancer takes its own cookie out, passes the app's...
    assert "cookie" not in alone  # ...and sends no empty Cookie header when its own was the only one


@pytest.mark.parametrize("routed", [True, False], ids=["auth-and-router", "api-only"])
def test_auth_and_router_routes_exist_when_their_services_are_named(kind, echo, start_balancer, routed):
    lb = start_balancer(kind, echo, routes=ROUTES if routed else None)
    # (/shards is the router's too, but internal: refused on the public port, tests/lb/test_internal.py.)
    paths = ["/auth/login", "/users", "/users/42", "/users?page=2", "/auth", "/usersx", "/users/count", "/"]
    where = replicas_serving(echo, [httpx.get(lb.url + path, timeout=10) for path in paths])
    expected = [AUTH_HOST, ROUTER_HOST, ROUTER_HOST, ROUTER_HOST] if routed else [None] * 4
    # /auth and /usersx are not those services' paths; /users/count is the api's broadcast demo.
    for path, host, want in zip(paths, where, [*expected, None, None, None, None], strict=True):
        if want is None:
            assert host in API_HOSTS, f"{path} went to {host}"
        else:
            assert host == want, f"{path} went to {host}"


def test_a_request_whose_replica_dies_mid_request_is_replayed_only_if_idempotent(kind, echo, start_balancer):
    lb = start_balancer(kind, echo)
    receipts = echo.workdir / "receipts"
    receipts.unlink(missing_ok=True)

    # GET is idempotent: replayed after each empty response, on another replica each time, until every
    # replica has had it; then a 502, within 1 + 3 retries.
    assert httpx.get(lb.url + "/die-once", timeout=10).status_code == 502
    got = [line.split()[0] for line in receipts.read_text().splitlines()]
    assert set(got) == set(API_HOSTS) and len(got) <= 4, got

    # POST is not: the one worker that received it dies, and the client is told, not the next replica.
    receipts.unlink()
    assert httpx.post(lb.url + "/die-once", content=b"order #1", timeout=10).status_code == 502
    assert len(receipts.read_text().splitlines()) == 1

    echo.wait_ready()  # the clusters replace their dead workers
    assert {r.status_code for r in get_many(lb.url + "/echo", 6)} == {200}


def test_a_response_cut_mid_body_is_cut_for_the_client_logged_and_never_replayed(kind, echo, start_balancer):
    """The one failure no balancer can hide: the client already has part of the response."""
    lb = start_balancer(kind, echo)
    receipts = echo.workdir / "receipts"
    receipts.unlink(missing_ok=True)
    with pytest.raises(httpx.RemoteProtocolError):  # 100 of 1000 promised bytes, then the end
        httpx.get(lb.url + "/die-mid-body", timeout=10)
    assert len(receipts.read_text().splitlines()) == 1  # even a GET: a begun response cannot be replayed
    wait_until(lambda: len(lb.cut_responses()) == 1, 5, what="the balancer to log the cut response")
    echo.wait_ready()


# -- at the door -------------------------------------------------------------------------


def test_malformed_and_oversized_requests_are_refused_and_serving_goes_on(kind, echo, start_balancer):
    lb = start_balancer(kind, echo)
    malformed = [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"\x00\xff\x16\x03garbage",  # a TLS hello's first bytes, say
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",  # smuggling bait
    ]
    for payload in malformed:
        assert raw(lb.url, payload).startswith(b"HTTP/1.1 400"), payload
    # Over the 16 KiB head / 100 fields both allow: HAProxy says 400, the Python balancer the precise 431.
    big = httpx.get(lb.url + "/echo", headers={"X-Big": "y" * 20_000}, timeout=10)
    many = httpx.get(lb.url + "/echo", headers={f"X-H{i}": "v" for i in range(150)}, timeout=10)
    assert big.status_code in (400, 431) and many.status_code in (400, 431), (big, many)
    assert {r.status_code for r in get_many(lb.url + "/echo", 3)} == {200}  # still serving


def test_slow_and_silent_clients_are_cut_off_without_stalling_others(kind, echo, start_balancer):
    """A request head is due within the header timeout of its first byte, and a new connection's first
    byte within the header timeout too: a client that sends nothing, or trickles its head (slowloris),
    loses its connection after that long, a 408 if it had begun; others are served meanwhile."""
    lb = start_balancer(kind, echo)
    host, _, port = lb.url.removeprefix("http://").rpartition(":")
    replies: dict[str, bytes] = {}
    waited: dict[str, float] = {}  # from the last thing the client did to the balancer closing on it
    ended: dict[str, str] = {}  # who ended it: the balancer ("closed", "reset") or our own timeout

    def client(name: str, delay: float | None) -> None:
        # Our own timeout far beyond every balancer timer (idle/keep-alive 10 s): whatever ends the
        # connection is the balancer, and `ended` says so.
        since = time.monotonic()  # taken before each action: the balancer's timer cannot start earlier
        with socket.create_connection((host, int(port)), timeout=HEADER_TIMEOUT + 25) as sock:
            if delay is not None:
                time.sleep(delay)  # bounded, and shorter than the header timeout: the connection is still open
                since = time.monotonic()
                sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            data, how = b"", "closed"
            try:
                while chunk := sock.recv(65536):
                    data += chunk
            except TimeoutError:
                how = "our timeout"
            except ConnectionResetError:
                how = "reset"
            replies[name], waited[name], ended[name] = data, time.monotonic() - since, how

    threads = [
        threading.Thread(target=client, args=(name, delay))
        for name, delay in (("silent", None), ("slowloris", 0.0), ("late", 1.0))
    ]
    for thread in threads:
        thread.start()
    try:
        for _ in range(5):
            # Others are served meanwhile: each answer comes well before the slow clients are cut off
            # (a balancer stalled behind them would answer only after the header timeout).
            assert httpx.get(lb.url + "/echo", timeout=HEADER_TIMEOUT - 1).status_code == 200
    finally:
        for thread in threads:
            thread.join(HEADER_TIMEOUT + 30)
    assert set(ended) == {"silent", "slowloris", "late"} and "our timeout" not in ended.values(), ended
    # Cut by the header timeout: not before it (measured from before the client's last action), and after
    # it by a margin generous for a busy machine yet short of the next timer that could close them (the
    # idle/keep-alive 10 s).
    assert all(HEADER_TIMEOUT - 0.5 < seconds < HEADER_TIMEOUT + 4.0 for seconds in waited.values()), waited
    assert replies["slowloris"].startswith(b"HTTP/1.1 408") and replies["late"].startswith(b"HTTP/1.1 408"), replies
    assert replies["silent"] == b"" or replies["silent"].startswith(b"HTTP/1.1 408"), replies  # HAProxy says 408
