"""A balancer when the backends are busy or their checks fail: it must not make things worse.

- Every replica failing its health check at once (heavy requests holding every worker, or the
  shared Redis down: /readyz includes it) is the checks' problem more than the replicas': the
  balancer goes into panic and keeps routing to them, instead of a 503 for everybody.
- A replica slower than the read timeout is busy, not dead: the client gets a 504, the replica
  stays in, and the request is not sent to a second replica (that multiplies heavy work).
- Least outstanding requests (both balancers' default): a cheap request goes to a replica with
  no heavy one in flight.

The replicas run ``tests.lb.backend_app``: one flag file makes every ``/readyz`` answer 503,
``/slow`` and ``/hold`` leave a receipt naming the replica, and ``/hold`` lasts until the test
removes another file, so "in flight" is a state the test controls rather than a guessed duration.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from infra.local.processes import wait_until
from tests.lb.conftest import get_many, loopback_topology, replicas_serving, up_hosts, wait_up

BACKEND = "tests.lb.backend_app:app"
HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
READ_TIMEOUT = 10.0  # haproxy.cfg's `timeout server`; the Python balancer is started with the same


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("degraded")
    env = {
        "READY_FLAG_FILE": str(workdir / "not-ready"),
        "RECEIPTS_FILE": str(workdir / "receipts"),
        "HOLD_FILE": str(workdir / "hold"),
    }
    with loopback_topology(workdir) as topology:
        for host in HOSTS:
            topology.start("api", host, BACKEND, workers=1, env=env)
        topology.wait_ready()
        yield topology


@pytest.fixture
def files(replicas):
    """The flag, receipts and hold files; none exists when a test starts or after it ends."""
    paths = {name: replicas.workdir / name for name in ("not-ready", "receipts", "hold")}
    for path in paths.values():
        path.unlink(missing_ok=True)
    yield paths
    for path in paths.values():
        path.unlink(missing_ok=True)


def receipts(path) -> list[str]:
    """The replica (host) of every /slow or /hold request that reached one."""
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def test_every_check_failing_puts_the_balancer_in_panic_and_the_replicas_keep_serving(
    kind, replicas, files, start_balancer
):
    lb = start_balancer(kind, replicas)
    assert not lb.panic()
    files["not-ready"].touch()  # every replica's /readyz: 503
    wait_up(lb, set(), timeout=15)  # every one fails its checks...
    assert lb.panic()
    before = lb.panic_requests()
    responses = get_many(lb.url + "/echo", 9)
    assert [r.status_code for r in responses] == [200] * 9  # ...and cheap requests are still answered,
    assert set(replicas_serving(replicas, responses)) == set(HOSTS)  # by all of them, not one survivor
    assert lb.panic_requests() >= before + 9

    files["not-ready"].unlink()
    wait_up(lb, set(HOSTS), timeout=15)
    wait_until(lambda: not lb.panic(), 5, what="the panic to end")
    counted = lb.panic_requests()
    assert {r.status_code for r in get_many(lb.url + "/echo", 6)} == {200}
    assert lb.panic_requests() == counted  # routed normally again


def test_a_response_slower_than_the_read_timeout_is_a_504_from_one_replica_that_stays_in(
    kind, replicas, files, start_balancer
):
    lb = start_balancer(kind, replicas)
    retries = lb.retries()
    # An idempotent GET, which both balancers do replay after a lost connection: not after a timeout.
    response = httpx.get(lb.url + f"/slow?s={READ_TIMEOUT + 5:g}", timeout=READ_TIMEOUT + 20)
    assert response.status_code == 504
    assert len(receipts(files["receipts"])) == 1  # one replica had it; none was handed it again
    assert lb.retries() == retries
    assert up_hosts(lb) == set(HOSTS)  # slow is not dead: nobody was ejected
    assert {r.status_code for r in get_many(lb.url + "/echo", 6)} == {200}
    assert len(receipts(files["receipts"])) == 1  # still: nothing was replayed late either


@pytest.mark.parametrize("balance", [None, "roundrobin"], ids=["default-leastconn", "roundrobin"])
def test_a_cheap_request_goes_where_no_heavy_one_is_in_flight(kind, replicas, files, start_balancer, balance):
    lb = start_balancer(kind, replicas, balance=balance)
    files["hold"].touch()
    with ThreadPoolExecutor(1) as pool:
        heavy = pool.submit(httpx.get, lb.url + "/hold", timeout=60)
        try:
            wait_until(lambda: receipts(files["receipts"]), 10, what="the heavy request to reach a replica")
            [busy] = receipts(files["receipts"])
            cheap = get_many(lb.url + "/echo", 12)
            assert not heavy.done(), heavy.result()  # every cheap request ran while the heavy one was in flight
        finally:
            files["hold"].unlink()
        assert heavy.result().status_code == 200
    assert [r.status_code for r in cheap] == [200] * 12
    served = replicas_serving(replicas, cheap)
    if balance is None:  # least outstanding requests: never the busy replica, and both others in turn
        assert busy not in served and set(served) == set(HOSTS) - {busy}, (busy, served)
    else:  # round robin does not look: the busy replica gets its turns
        assert served.count(busy) >= 3, (busy, served)
