"""What only HAProxy has: its stats page (CSV, Prometheus) and its access log naming each request id.

(Everything both balancers do is in ``tests/lb/scenarios``, run against each.)
"""

from __future__ import annotations

import re

import httpx
import pytest

from infra.local.processes import wait_until
from tests.lb.conftest import loopback_topology, up_hosts

pytestmark = pytest.mark.usefixtures("haproxy_binary")

BACKEND = "tests.lb.backend_app:app"
HOSTS = ("127.0.0.2", "127.0.0.3")


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    with loopback_topology(tmp_path_factory.mktemp("echo")) as topology:
        for host in HOSTS:
            topology.start("api", host, BACKEND, workers=1)
        topology.wait_ready()
        yield topology


def test_stats_page_csv_and_prometheus_metrics(echo, start_balancer):
    lb = start_balancer("haproxy", echo)
    page = httpx.get(lb.stats_url + "/", timeout=5, auth=lb.admin_auth)
    assert page.status_code == 200 and "Statistics Report" in page.text
    assert up_hosts(lb) == set(HOSTS)  # the CSV, with each server's address
    metrics = httpx.get(lb.stats_url + "/metrics", timeout=5, auth=lb.admin_auth)
    assert metrics.status_code == 200
    assert f'haproxy_backend_active_servers{{proxy="api"}} {len(HOSTS)}' in metrics.text


def test_the_access_log_names_the_request_id_the_replica_saw(echo, start_balancer):
    lb = start_balancer("haproxy", echo)
    seen = httpx.get(lb.url + "/echo", headers={"X-Request-Id": "trace-42"}, timeout=10).json()["headers"]
    made = httpx.get(lb.url + "/echo", timeout=10).json()["headers"]["x-request-id"]
    assert seen["x-request-id"] == "trace-42"
    # HAProxy writes a request's line once its response has gone out: the client can read the response first.
    wanted = ("{trace-42}", "{" + made + "}")  # the client's id, and the one HAProxy made
    try:
        wait_until(lambda: all(id_ in lb.log() for id_ in wanted), 10, what="the access log's lines")
    except TimeoutError:
        pytest.fail(f"the access log names not both of {wanted}:\n{lb.log()}")


def test_stats_page_explains_its_idle_slots_and_can_hide_them(echo, start_balancer):
    """Issue #11: the idle server-template slots ("MAINT (resolution)") read as broken. The page says what
    they are, auth and the router keep fewer of them than the api, and `/;no-maint` leaves them out."""
    lb = start_balancer("haproxy", echo, routes={"auth": "auth", "router": "router"})  # no auth, router: all idle
    slots = {name: sum(s.name.startswith(name) for s in lb.servers(name)) for name in ("api", "auth", "router")}
    assert slots == {"api": 10, "auth": 4, "router": 4}  # LB_SLOTS, LB_SERVICE_SLOTS: haproxy.cfg's defaults
    page = httpx.get(lb.stats_url + "/", timeout=5, auth=lb.admin_auth).text
    assert "Rows in MAINT (resolution) are idle server slots, not faults" in page  # stats show-desc
    assert "the api replicas: 10 slots (LB_SLOTS)" in page  # each backend's description, variables expanded
    assert "the router's replicas: 4 slots (LB_SERVICE_SLOTS)" in page
    assert rows(page, "api") == {f"api{n}" for n in range(1, 11)}
    hidden = httpx.get(lb.stats_url + "/;no-maint", timeout=5, auth=lb.admin_auth).text
    up = {s.name for s in lb.servers("api") if s.up}
    assert len(up) == len(HOSTS)
    assert rows(hidden, "api") == up  # the idle slots left out, the replicas there kept
    assert rows(hidden, "router") == rows(hidden, "auth") == set()


def rows(page: str, backend: str) -> set[str]:
    """The server rows of ``backend`` on the HTML stats page (each has an anchor ``backend/server``)."""
    return set(re.findall(rf'<a name="{backend}/({backend}\d+)">', page))
