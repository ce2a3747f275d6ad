"""The console's app without a stack: its answers to bad input, a dependency down, the password, and the
vendored chart library (what an air-gapped build ships, checked against npm's lock)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from infra.local.ports import free_port
from services.console.access import BasicAuthMiddleware

CONSOLE = Path(__file__).resolve().parents[3] / "services" / "console"


@pytest.fixture(scope="module")
def client() -> TestClient:
    # Nothing listens on these: every source is down, which the console must say by name.
    with pytest.MonkeyPatch.context() as env:
        for name in ("PROMETHEUS_URL", "ROUTER_URL", "LOCUST_URL"):
            env.setenv(name, f"http://127.0.0.1:{free_port()}")
        env.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
        env.setenv("COMPOSE_PROJECT", "scalecube-console-test-no-such-project")
        env.delenv("CONSOLE_PASSWORD", raising=False)
        env.delenv("CONSOLE_PASSWORD_FILE", raising=False)
        from services.console.app import app

        with TestClient(app) as test_client:
            yield test_client


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/actions/scale", {"service": "api", "count": 0}, "count"),
        ("/api/actions/scale", {"service": "api", "count": 99}, "count"),
        ("/api/actions/scale", {"service": "redis", "count": 2}, "service"),
        ("/api/actions/scale", {"service": "api", "count": 3, "shell": "rm -rf /"}, "shell"),
        ("/api/actions/kill-container", {"container": "../etc; reboot"}, "container"),
        ("/api/actions/kill-worker", {"container": "api-1", "worker": -1}, "worker"),
        ("/api/actions/stop-redis", {"service": "redis", "seconds": 100000}, "seconds"),
        ("/api/actions/swarm-start", {"user_class": "import os", "users": 5}, "user_class"),
        ("/api/actions/swarm-start", {"user_class": "CloningUser", "users": 100000}, "users"),
    ],
)
def test_invalid_actions_are_422_json_naming_the_field(client: TestClient, path: str, body: dict, field: str) -> None:
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["error"] == "validation_error"
    assert any(field in ".".join(map(str, problem["loc"])) for problem in answer["detail"]), answer


def test_malformed_json_is_a_422_not_a_500(client: TestClient) -> None:
    response = client.post("/api/actions/scale", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["error"] == "validation_error"


def test_prometheus_down_is_a_503_naming_it(client: TestClient) -> None:
    response = client.get("/api/metrics")
    assert response.status_code == 503
    assert response.json()["dependency"] == "prometheus"


def test_the_state_names_every_source_that_is_down_and_still_answers(client: TestClient) -> None:
    response = client.get("/api/state")
    assert response.status_code == 200
    state = response.json()
    assert {"prometheus", "locust"} <= set(state["unavailable"]), state["unavailable"]
    # With no engine, docker is named; with one, the project that does not exist has no container.
    assert "docker" in state["unavailable"] or state["topology"]["containers"] == []
    assert state["shared"]["sessions"]["status"] == "down" and state["shared"]["shards"]["status"] == "down"


def test_the_page_and_its_assets_are_served_from_the_console_itself(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "scalecube console" in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/static/") or a.startswith("data:") for a in assets), assets
    for asset in assets:
        if asset.startswith("/static/"):
            assert client.get(asset).status_code == 200, asset


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_with_a_password_everything_but_the_probes_and_metrics_asks_for_it() -> None:
    paths = ("/", "/healthz", "/readyz", "/metrics", "/api/state")
    inner = Starlette(routes=[Route(p, lambda r: PlainTextResponse("ok")) for p in paths])
    guarded = TestClient(BasicAuthMiddleware(inner, password="a-long-enough-password"))
    assert all(guarded.get(path).status_code == 200 for path in ("/healthz", "/readyz", "/metrics"))
    for headers in (
        {},
        _basic("admin", "wrong"),
        _basic("root", "a-long-enough-password"),
        {"Authorization": "Basic !!"},
    ):
        answer = guarded.get("/api/state", headers=headers)
        assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"
        assert answer.headers["WWW-Authenticate"].startswith("Basic")
    assert guarded.get("/", headers=_basic("admin", "a-long-enough-password")).status_code == 200


def test_the_vendored_uplot_is_the_one_npm_locked() -> None:
    """The committed dist files match the sums taken from the package the lock pins (``make vendor-console``
    writes both), and the sums name the lock's own version and integrity: an air-gapped build needs nothing."""
    lock = json.loads((CONSOLE / "package-lock.json").read_text())["packages"]["node_modules/uplot"]
    package = json.loads((CONSOLE / "package.json").read_text())
    assert package["dependencies"]["uplot"] == lock["version"]  # pinned exactly
    vendor = CONSOLE / "static" / "vendor"
    header, *lines = (vendor / "SHA256SUMS").read_text().splitlines()
    assert header == f"# uplot {lock['version']} {lock['integrity']}"
    sums = dict(reversed(line.split("  ", 1)) for line in lines)
    assert set(sums) == {"uPlot.iife.min.js", "uPlot.min.css"}
    for name, digest in sums.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, name


def test_every_live_chart_on_the_page_has_its_data_time_in_the_snapshot() -> None:
    """The page's age badges and charts name the snapshot's ``sampled_at`` keys, no more, no less."""
    from services.console.panels import SAMPLED_AT

    page = (CONSOLE / "static" / "index.html").read_text()
    assert set(re.findall(r'data-testid="age" data-chart="([^"]+)"', page)) == set(SAMPLED_AT)
    assert set(re.findall(r'data-testid="chart" data-chart="([^"]+)"', page)) == set(SAMPLED_AT)


def test_a_snapshot_asks_prometheus_for_every_query_at_one_instant() -> None:
    """A draw's numbers agree with each other (a container's workers add up to the container): every query of one
    ``snapshot()`` names the same evaluation ``time``, whatever scrape lands while they run. Fake transport."""
    import asyncio

    import httpx

    from services.console import panels
    from services.console.prometheus import Prometheus

    asked: list[httpx.QueryParams] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params)
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": []}})

    async def one_snapshot() -> dict:
        prometheus = Prometheus("http://prometheus:9090", transport=httpx.MockTransport(answer))
        try:
            return await panels.snapshot(prometheus)
        finally:
            await prometheus.close()

    snapshot = asyncio.run(one_snapshot())
    queries = [*panels.QUERIES.values(), *panels.LIVE_QUERIES.values(), *panels.SAMPLED_AT.values()]
    assert sorted(p["query"] for p in asked) == sorted(queries)
    assert len({p.get("time") for p in asked}) == 1 and float(asked[0]["time"]) > 0, asked
    assert snapshot["live"]["workers"] == {}
