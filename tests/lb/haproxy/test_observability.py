"""What only HAProxy has: its stats page (CSV, Prometheus) and its access log naming each request id.

(Everything both balancers do is in ``tests/lb/scenarios``, run against each.)
"""

from __future__ import annotations

import httpx
import pytest

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
    page = httpx.get(lb.stats_url + "/", timeout=5)
    assert page.status_code == 200 and "Statistics Report" in page.text
    assert up_hosts(lb) == set(HOSTS)  # the CSV, with each server's address
    metrics = httpx.get(lb.stats_url + "/metrics", timeout=5)
    assert metrics.status_code == 200
    assert f'haproxy_backend_active_servers{{proxy="api"}} {len(HOSTS)}' in metrics.text


def test_the_access_log_names_the_request_id_the_replica_saw(echo, start_balancer):
    lb = start_balancer("haproxy", echo)
    seen = httpx.get(lb.url + "/echo", headers={"X-Request-Id": "trace-42"}, timeout=10).json()["headers"]
    made = httpx.get(lb.url + "/echo", timeout=10).json()["headers"]["x-request-id"]
    assert seen["x-request-id"] == "trace-42"
    log = lb.log()
    assert "{trace-42}" in log and "{" + made + "}" in log  # the client's id, and the one HAProxy made
