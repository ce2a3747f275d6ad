"""The admin port under real uvicorn, in the caller's event loop: status.json, the page, /metrics, signals."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.local.ports import free_port
from lb.admin import admin_server, create_admin_app
from lb.config import Route
from lb.discovery import StaticDiscovery
from lb.health import HealthChecker
from lb.pool import Pool
from lb.stats import BalancerState

PASSWORD = "test-admin-password"
A, B, C = ("127.0.0.1", 8001), ("127.0.0.1", 8002), ("127.0.0.1", 8003)
R1, R2 = ("127.0.0.1", 9101), ("127.0.0.1", 9102)


def make_state() -> BalancerState:
    """Three upstreams in every state a backend can be in, one of them in panic, with some traffic counted."""
    api, auth, router = Pool("api", policy="rr"), Pool("auth"), Pool("router")
    discovery = StaticDiscovery([A, B, C])
    discovery._apply(api, [A, B, C])
    auth.set_addresses([("127.0.0.1", 9001)])
    a, b, c = (api.backends[x] for x in (A, B, C))
    a.served, a.failed, a.retried_away, a.inflight = 40, 1, 1, 3
    b.served = 2
    api.connect_failed(b)  # ejected
    c.inflight = 1
    api.set_addresses([A, B])  # c leaves, finishing its request first
    router.set_addresses([R1, R2])
    for _ in range(2):  # both answer their checks, but not 200 (fall = 2): every one unhealthy, so panic
        for backend in router.backends.values():
            router.report_check(backend, False, connected=True)
    router.panic_requests = 5
    state = BalancerState(
        pools={"api": api, "auth": auth, "router": router},
        discoveries={"api": discovery},
        health_checks={"api": HealthChecker(api)},
        routes=[Route("/auth/", "auth"), Route("/", "api")],
    )
    state.stats.requests, state.stats.retries, state.stats.connections_open = 43, 1, 5
    return state


async def run_admin(state, scenario: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    """Run the admin server in the running loop, as the balancer does, while ``scenario`` talks to it."""
    port = free_port()
    server = admin_server(create_admin_app(state, password=PASSWORD), "127.0.0.1", port)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):  # bounded: 10 s
            if server.started or task.done():
                break
            await asyncio.sleep(0.05)
        assert server.started, "the admin server did not start"
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=5, auth=httpx.BasicAuth("admin", PASSWORD)
        ) as client:
            await scenario(client)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 5)


def serving(state, scenario: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
    asyncio.run(run_admin(state, scenario))


def test_status_json_shows_pools_backends_discovery_and_counters():
    state = make_state()

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.get("/status.json")
        assert response.status_code == 200
        status = response.json()
        assert status["pid"] == os.getpid() and status["uptime"] >= 0
        assert status["stats"]["requests"] == 43 and status["stats"]["connections_open"] == 5
        assert status["routes"] == [{"prefix": "/auth/", "upstream": "auth"}, {"prefix": "/", "upstream": "api"}]
        api, auth, router = status["pools"]
        assert (api["name"], api["policy"], api["available"], api["panic"]) == ("api", "rr", 1, False)
        assert (auth["name"], auth["policy"], auth["discovery"], auth["health"]) == ("auth", "leastconn", None, None)
        assert (router["available"], router["panic"], router["panic_requests"], router["panics"]) == (0, True, 5, 1)
        assert [b["routable"] for b in router["backends"]] == [True, True]  # unhealthy, yet used: panic
        by_address = {b["address"]: b for b in api["backends"]}
        assert by_address["127.0.0.1:8001"] | {"since": 0} == {
            "id": state.pools["api"].backends[A].id,
            "address": "127.0.0.1:8001",
            "healthy": True,
            "removed": False,
            "reachable": True,
            "routable": True,
            "inflight": 3,
            "served": 40,
            "failed": 1,
            "timeouts": 0,
            "retried_away": 1,
            "ejections": 0,
            "since": 0,
        }
        assert not by_address["127.0.0.1:8002"]["healthy"] and by_address["127.0.0.1:8002"]["ejections"] == 1
        assert by_address["127.0.0.1:8003"]["removed"]
        assert api["discovery"]["kind"] == "static" and api["discovery"]["addresses"] == [
            "127.0.0.1:8001",
            "127.0.0.1:8002",
            "127.0.0.1:8003",
        ]
        assert api["health"]["path"] == "/readyz" and api["health"]["port"] is None and api["health"]["fall"] == 2
        # Live: what changes in the pool shows on the next request.
        state.pools["api"].backends[A].served += 1
        assert (await client.get("/status.json")).json()["pools"][0]["backends"][0]["served"] == 41

    serving(state, scenario)


def test_the_status_page_is_readable_escaped_and_refreshes():
    state = make_state()
    state.discoveries["api"].error = "<script>alert(1)</script>"  # text from outside, e.g. a DNS error

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.get("/")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
        page = response.text
        assert '<meta http-equiv="refresh"' in page
        for text in (
            "127.0.0.1:8001",
            "127.0.0.1:8002",
            "127.0.0.1:8003",
            "ejected",
            "removed",
            "leastconn",
            "1 of 3 available",
            "connections_open",
            "/auth/",
            "PANIC",
            "routing to 2 of them",
            "(5 requests so far)",
            "ejected (in panic use)",
        ):
            assert text in page, text
        assert page.count("PANIC") == 1  # the router only
        assert "<script>" not in page and "&lt;script&gt;" in page
        assert "<link" not in page and "src=" not in page  # self-contained: nothing else to fetch

    serving(state, scenario)


def test_metrics_are_read_at_scrape_time():
    state = make_state()

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.get("/metrics")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }

        def backend(name: str, address: str) -> float:
            return samples[(name, (("backend", address), ("upstream", "api")))]

        assert backend("scalecube_lb_backend_up", "127.0.0.1:8001") == 1
        assert backend("scalecube_lb_backend_up", "127.0.0.1:8002") == 0  # ejected
        assert backend("scalecube_lb_backend_up", "127.0.0.1:8003") == 0  # removed
        assert backend("scalecube_lb_backend_inflight", "127.0.0.1:8001") == 3
        assert backend("scalecube_lb_backend_served_total", "127.0.0.1:8001") == 40
        assert backend("scalecube_lb_backend_failed_total", "127.0.0.1:8001") == 1
        assert backend("scalecube_lb_backend_retried_away_total", "127.0.0.1:8001") == 1
        assert backend("scalecube_lb_backend_ejections_total", "127.0.0.1:8002") == 1
        assert samples[("scalecube_lb_upstream_backends", (("state", "available"), ("upstream", "api")))] == 1
        assert samples[("scalecube_lb_upstream_backends", (("state", "ejected"), ("upstream", "api")))] == 1
        assert samples[("scalecube_lb_upstream_backends", (("state", "removed"), ("upstream", "api")))] == 1
        assert samples[("scalecube_lb_upstream_backends", (("state", "available"), ("upstream", "auth")))] == 1
        assert samples[("scalecube_lb_upstream_panic", (("upstream", "router"),))] == 1
        assert samples[("scalecube_lb_upstream_panic", (("upstream", "api"),))] == 0
        assert samples[("scalecube_lb_upstream_panic_requests_total", (("upstream", "router"),))] == 5
        assert samples[("scalecube_lb_upstream_panic_requests_total", (("upstream", "api"),))] == 0
        assert backend("scalecube_lb_backend_timeouts_total", "127.0.0.1:8001") == 0
        assert samples[("scalecube_lb_requests_total", ())] == 43
        assert samples[("scalecube_lb_retries_total", ())] == 1
        assert samples[("scalecube_lb_rejected_431_total", ())] == 0
        assert samples[("scalecube_lb_connections_open", ())] == 5
        assert samples[("scalecube_lb_discovery_ok", (("kind", "static"), ("upstream", "api")))] == 1
        assert samples[("scalecube_lb_start_time_seconds", ())] == state.started_at

        state.stats.requests += 7  # the proxy's plain int, read at the next scrape
        again = (await client.get("/metrics")).text
        assert "scalecube_lb_requests_total 50.0" in again

    serving(state, scenario)


def test_the_admin_server_leaves_the_balancers_signals_alone():
    """uvicorn's Server.serve captures SIGINT/SIGTERM for as long as it runs; inside the balancer it must not."""
    received: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        got = asyncio.Event()
        # The balancer installs its handlers first, then starts the admin server.
        loop.add_signal_handler(signal.SIGTERM, lambda: (received.append(signal.SIGTERM), got.set()))
        try:
            await run_admin(make_state(), lambda client: scenario(client, got))
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    async def scenario(client: httpx.AsyncClient, got: asyncio.Event) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(got.wait(), 5)  # the balancer's handler ran...
        await asyncio.sleep(0.2)
        assert (await client.get("/healthz")).json() == {"status": "ok"}  # ...and the admin server still serves

    before = signal.getsignal(signal.SIGINT)
    asyncio.run(main())
    assert received == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGINT) is before  # untouched, and nothing re-raised after serve() returned


def test_every_page_but_healthz_asks_for_the_password():
    """No open mode: without the user and password (or with wrong ones, or a malformed header) a 401 JSON
    that asks for basic auth; with them, the page. /healthz says nothing and stays open for probes."""
    state = make_state()

    async def scenario(client: httpx.AsyncClient) -> None:
        for path in ("/", "/status.json", "/metrics"):
            assert (await client.get(path)).status_code == 200, path
            for auth in (None, ("admin", "wrong"), ("root", PASSWORD), (PASSWORD, "admin")):
                response = await client.get(path, auth=httpx.BasicAuth(*auth) if auth else None)
                assert response.status_code == 401, (path, auth)
                assert response.json()["error"] == "unauthorized"
                assert response.headers["www-authenticate"].startswith("Basic ")
                assert "pools" not in response.text and "scalecube_lb" not in response.text
            malformed = await client.get(path, auth=None, headers={"Authorization": "Basic %%%not-base64"})
            assert malformed.status_code == 401 and malformed.json()["error"] == "unauthorized"
        anonymous = await client.get("/healthz", auth=None)
        assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}
        missing = await client.get("/nothing-here")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"

    serving(state, scenario)


def test_an_admin_app_without_a_password_is_refused():
    with pytest.raises(ValueError, match="never open"):
        create_admin_app(make_state(), password="")
