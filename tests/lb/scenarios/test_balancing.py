"""A balancer in front of cloned api replicas found by DNS: spread, scaling, failover, health, stickiness.

Three replicas (2 workers each, one shared Redis) live for the whole module; a fourth,
the "spare" on its own Redis, is published only by the tests that scale, kill or
starve it, and restarted if a previous test killed it. Each test starts its own balancer.
"""

from __future__ import annotations

import collections
import contextlib
import signal

import psutil
import pytest

from infra.local.processes import ClusterProcess, wait_until
from infra.local.redis_server import RedisServer
from tests.lb.conftest import (
    API,
    STICKY_COOKIE,
    api_env,
    fresh_client,
    get_many,
    loopback_topology,
    replicas_serving,
    wait_up,
)
from tests.support.load import LoadGenerator

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
SPARE = "127.0.0.5"


@pytest.fixture(scope="module")
def cloned(tmp_path_factory, redis_server):
    with loopback_topology(tmp_path_factory.mktemp("cloned")) as topology:
        for host in HOSTS:
            topology.start("api", host, API, workers=2, env=api_env(redis_server.url))
        topology.wait_ready()
        yield topology


@pytest.fixture(scope="module")
def spare_redis():
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def spare(cloned, spare_redis) -> ClusterProcess:
    """The fourth replica, running and ready but not yet in DNS; withdrawn again after the test."""
    spare_redis.start()  # a no-op unless a test left it stopped
    cluster = cloned.clusters.get(("api", SPARE))
    if cluster is None or cluster.proc.poll() is not None:
        if cluster is not None:
            cluster.stop()  # reaps it and closes its log
        cluster = cloned.start("api", SPARE, API, workers=2, env=api_env(spare_redis.url), publish=False)
    cluster.wait_ready()
    yield cluster
    cloned.withdraw("api", SPARE)


def kill(cluster: ClusterProcess) -> None:
    """SIGKILL the master and its workers at once: a replica dying without a word.

    Only the master is ours to reap; its workers' zombies go to init, so nothing waits on them
    (their sockets close the moment they die, which is all that matters here).
    """
    master = psutil.Process(cluster.pid)
    for process in [master, *master.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    cluster.proc.wait(5)


def processes_of(pid: int) -> set[int]:
    """The balancer's process and its children (HAProxy's master-worker: a reload replaces the worker)."""
    return {pid, *(child.pid for child in psutil.Process(pid).children())}


# -- spreading ----------------------------------------------------------------------


@pytest.mark.parametrize("balance", ["roundrobin", "leastconn"])
def test_requests_spread_over_every_replica(kind, cloned, start_balancer, balance):
    lb = start_balancer(kind, cloned, balance=balance)
    responses = get_many(lb.url + "/", 30)
    assert {r.status_code for r in responses} == {200}
    spread = collections.Counter(replicas_serving(cloned, responses))
    assert set(spread) == set(HOSTS), spread
    assert min(spread.values()) >= 8, spread  # sequential requests: an even rotation
    pids = {r.json()["pid"] for r in responses}
    assert len(pids) >= len(HOSTS)


# -- scaling by DNS, no reload --------------------------------------------------------


def test_a_replica_added_to_dns_gets_traffic_and_a_withdrawn_one_none_without_reload(
    kind, cloned, spare, start_balancer
):
    lb = start_balancer(kind, cloned)
    processes_before = processes_of(lb.pid)

    cloned.publish("api", SPARE)
    # Both re-resolve every second and check every second; the bound is only a generous backstop for a
    # busy machine (no elapsed-time claim): what this test proves is that it happens without a reload.
    wait_until(
        lambda: SPARE in replicas_serving(cloned, get_many(lb.url + "/", 8)), 30, what="the new replica to get traffic"
    )

    cloned.withdraw("api", SPARE)
    wait_up(lb, set(HOSTS), timeout=20)
    served = replicas_serving(cloned, get_many(lb.url + "/", 24))
    assert SPARE not in served and set(served) == set(HOSTS)
    assert spare.proc.poll() is None  # it still runs: the balancer let it go because DNS did

    # The same processes throughout: discovered, not reloaded or restarted.
    assert processes_of(lb.pid) == processes_before


# -- failures --------------------------------------------------------------------------


def test_a_replica_killed_under_load_costs_no_failed_get(kind, cloned, spare, start_balancer):
    """SIGKILL a replica (master and workers) under load: the balancer retries what met it elsewhere.

    /cpu keeps requests in flight long enough that some are inside the dying replica: those
    (empty response) and new ones (connection refused) are retried on another replica. The one
    loss no proxy can undo: a response the replica had begun sending (uvicorn writes the headers,
    then the body) is already on its way to the client and cannot be replayed. Both balancers log
    those (HAProxy: status 200 cut by the server, "SD"; the Python one: "died mid-response"); they
    are rare (a kill landing between two writes) and are the only failures allowed.
    """
    cloned.publish("api", SPARE)
    lb = start_balancer(kind, cloned)
    # Counted in requests around the kill; the seconds are generous backstops for a busy machine.
    with LoadGenerator(lb.url + "/cpu", concurrency=8, max_seconds=90, max_requests=6000) as load:
        wait_until(lambda: load.result.ok >= 300, 30, what="load to get going")
        kill(spare)
        killed_at = load.result.total
        wait_up(lb, set(HOSTS), timeout=20)  # health checks eject it...
        wait_until(lambda: load.result.total >= killed_at + 300, 30, what="load after the kill")  # ...load goes on
    result = load.stop()
    assert result.ok >= 600
    cut = lb.cut_responses()
    assert result.failed == len(cut) <= 3, f"{result}\n" + "\n".join(cut)
    # It did cost something, paid by the balancer: requests that met the dead replica were retried elsewhere.
    assert lb.retries() > 0, lb.log()[-3000:]


def signal_all(cluster: ClusterProcess, sig: signal.Signals) -> None:
    master = psutil.Process(cluster.pid)
    for process in [master, *master.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(sig)


def test_a_replica_that_stops_answering_its_checks_is_ejected_and_comes_back(kind, cloned, spare, start_balancer):
    """Frozen (SIGSTOP): alive, its connections accepted by the kernel, nothing answered, so its checks
    time out. (A Redis down no longer does it: /readyz answers 200 "degraded" then, so a shared Redis
    down cannot eject every replica.) The others are healthy: no panic, it is simply left out."""
    cloned.publish("api", SPARE)
    lb = start_balancer(kind, cloned)
    spare_pids = {worker["pid"] for worker in spare.status()["workers"]}  # asked now: frozen, it cannot say
    signal_all(spare, signal.SIGSTOP)
    try:
        wait_up(lb, set(HOSTS), timeout=20)
        served = {int(r.headers["x-served-by"].rsplit("/", 1)[-1]) for r in get_many(lb.url + "/", 12)}
        assert served and not served & spare_pids
        assert not lb.panic()
    finally:
        signal_all(spare, signal.SIGCONT)
    assert spare.proc.poll() is None  # it was alive all along
    wait_up(lb, {*HOSTS, SPARE}, timeout=30)
    wait_until(
        lambda: SPARE in replicas_serving(cloned, get_many(lb.url + "/", 8)),
        15,
        what="traffic to the recovered replica",
    )


# -- sessions and stickiness -----------------------------------------------------------


@pytest.mark.parametrize("sticky", [False, True], ids=["not-sticky", "sticky"])
def test_redis_sessions_work_with_or_without_sticky(kind, cloned, start_balancer, sticky):
    lb = start_balancer(kind, cloned, sticky=sticky)
    with fresh_client() as client:
        assert client.post(lb.url + "/session/login", json={"user": "ada"}).status_code == 200
        answers = [client.get(lb.url + "/session/me") for _ in range(12)]
    assert [r.status_code for r in answers] == [200] * 12
    assert {r.json()["user"] for r in answers} == {"ada"}
    replicas = set(replicas_serving(cloned, answers))
    assert len(replicas) == (1 if sticky else len(HOSTS)), replicas


def test_the_sticky_cookie_pins_each_client_to_one_replica(kind, cloned, start_balancer):
    lb = start_balancer(kind, cloned, sticky=True)
    pinned = []
    for _ in range(len(HOSTS)):
        with fresh_client() as client:
            first = client.get(lb.url + "/")
            assert STICKY_COOKIE in first.cookies
            answers = [first, *(client.get(lb.url + "/") for _ in range(8))]
            assert "set-cookie" not in answers[-1].headers  # it already has the right one
        replicas = set(replicas_serving(cloned, answers))
        assert len(replicas) == 1, replicas
        pinned.append(replicas.pop())
    assert set(pinned) == set(HOSTS)  # new clients are still balanced


def test_a_sticky_client_whose_replica_dies_is_redispatched_with_a_new_cookie(kind, cloned, spare, start_balancer):
    cloned.publish("api", SPARE)
    lb = start_balancer(kind, cloned, sticky=True)
    for _ in range(2 * (len(HOSTS) + 1)):  # round robin: a new client lands on the spare within 4 tries
        client = fresh_client()
        if replicas_serving(cloned, [client.get(lb.url + "/")]) == [SPARE]:
            break
        client.close()
    else:
        pytest.fail("no client was pinned to the spare replica")
    try:
        old_cookie = client.cookies[STICKY_COOKIE]
        kill(spare)  # health checks have not noticed yet: the cookie names a server the balancer thinks is up
        moved = client.get(lb.url + "/")
        assert moved.status_code == 200
        assert moved.cookies.get(STICKY_COOKIE) not in (None, old_cookie)
        answers = [moved, *(client.get(lb.url + "/") for _ in range(6))]
    finally:
        client.close()
    replicas = set(replicas_serving(cloned, answers))
    assert len(replicas) == 1 and SPARE not in replicas, replicas
