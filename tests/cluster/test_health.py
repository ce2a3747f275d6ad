"""The master answers the probes (cluster.health): at once, even when every worker is busy."""

from __future__ import annotations

import concurrent.futures
import signal

import httpx
import pytest

from infra.local.processes import wait_until
from tests.cluster.test_handoff import Blocker


@pytest.fixture
def pool():
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def test_probes_are_answered_by_the_master_while_every_worker_is_blocked(start_cluster, tmp_path, pool):
    cluster = start_cluster(workers=2, policy="rr", args=["--health-port", "0", "--handoff-limit", "1"])
    health = cluster.status()["master"]["health"]
    assert httpx.get(health + "/readyz", timeout=10).json()["listening"] == 2

    first = Blocker(cluster, tmp_path, pool)
    # rr skips the busy worker, so a second /block lands on the other one.
    second = pool.submit(httpx.get, f"{cluster.url}/block?until={first.release_file}", timeout=60)
    try:
        wait_until(
            lambda: all(w["unanswered"] >= 1 for w in cluster.status()["workers"]), 30, what="both workers blocked"
        )
        with pytest.raises(httpx.TimeoutException):  # a probe answered by a worker would eject this replica
            httpx.get(cluster.url + "/readyz", timeout=1)
        ready = httpx.get(health + "/readyz", timeout=5)
        assert ready.status_code == 200
        assert ready.json()["busy"] == 2 and ready.json()["listening"] == 2
        assert httpx.get(health + "/healthz", timeout=5).json()["status"] == "alive"

        cluster.signal(signal.SIGTERM)  # stopping: out of rotation at once, while the blocked ones drain
        stopping = httpx.get(health + "/readyz", timeout=5)
        assert stopping.status_code == 503 and stopping.json()["message"] == "stopping"
    finally:
        first.release()
    assert first.future.result().status_code == 200 and second.result().status_code == 200
    assert cluster.wait(30) == 0


def test_the_master_exports_its_own_metrics(start_cluster, tmp_path, pool):
    cluster = start_cluster(
        workers=1, policy="rr", args=["--health-port", "0", "--handoff-limit", "1", "--max-queue", "0"]
    )
    health = cluster.status()["master"]["health"]
    blocker = Blocker(cluster, tmp_path, pool)
    stuck = pool.submit(httpx.get, cluster.url + "/", timeout=30)  # the blocked worker's one more (its limit)
    try:
        wait_until(lambda: cluster.status()["workers"][0]["untaken"] == 1, 30, what="one handed to the blocked worker")
        assert httpx.get(cluster.url + "/", timeout=10).status_code == 503  # no room, no queue: shed at once
    finally:
        blocker.release()
    blocker.future.result()
    assert stuck.result().status_code == 200
    text = httpx.get(health + "/metrics", timeout=10).text
    assert "scalecube_cluster_shed_total 1.0" in text
    assert "scalecube_cluster_handed_total 2.0" in text
    assert 'scalecube_cluster_workers{state="listening"} 1.0' in text
    assert 'scalecube_cluster_worker_unanswered{worker="0"} 0.0' in text
