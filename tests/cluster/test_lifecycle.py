"""Crash recovery, rolling reload, graceful stop, runtime scaling and recycling — real processes, real HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from pathlib import Path

import httpx
import psutil
import pytest

from infra.local.processes import wait_until
from tests.support.load import LoadGenerator


def test_killed_worker_is_replaced_under_load(start_cluster):
    cluster = start_cluster(workers=2)
    before = cluster.listening_pids()
    victim = sorted(before)[0]
    # Load measured in requests around the fault, not in seconds: max_seconds is only a backstop.
    with LoadGenerator(cluster.url, concurrency=8, max_seconds=120) as load:
        wait_until(lambda: load.result.ok >= 100, 30, what="load to get going")
        os.kill(victim, signal.SIGKILL)
        after = wait_until(
            lambda: (pids := cluster.listening_pids()) and victim not in pids and len(pids) == 2 and pids,
            30,
            what="the replacement",
        )
        replaced_at = load.result.total
        wait_until(lambda: load.result.total >= replaced_at + 100, 30, what="load after the replacement")
    result = load.stop()
    print(f"\nSIGKILL of one of 2 workers under load: {result}")
    assert victim not in after and len(after) == 2
    assert result.total >= 200 and result.ok >= 100
    [replacement] = after - before
    assert result.served_by[str(replacement)] > 0  # it took its share of the load
    # Only requests already inside the killed worker can fail: a handful at most.
    assert result.failed <= 8 * 2, result
    restarts = {w["slot"]: w["restarts"] for w in cluster.status()["workers"]}
    assert sum(restarts.values()) == 1


@pytest.mark.parametrize("policy, keepalive", [("rr", False), ("os", False), ("rr", True), ("os", True)])
def test_rolling_reload_under_load_drops_nothing(start_cluster, policy, keepalive):
    """New connection per request (like ab) and keep-alive clients (like wrk): neither sees a failure."""
    cluster = start_cluster(workers=2, policy=policy)
    before = cluster.listening_pids()
    # Load measured in requests around the reload, not in seconds: max_seconds is only a backstop.
    with LoadGenerator(cluster.url, concurrency=8, keepalive=keepalive, max_seconds=120) as load:
        wait_until(lambda: load.result.ok >= 100, 30, what="load to get going")
        cluster.signal(signal.SIGUSR2)
        wait_until(
            lambda: not (cluster.listening_pids() & before) and len(cluster.listening_pids()) == 2,
            40,
            what="every worker replaced",
        )
        reloaded_at, after = load.result.total, cluster.listening_pids()
        # "Replaced" is the master's word: an old worker told to drain may still accept for a moment (with the
        # os policy it holds the shared socket until it gets to close it). Wait for the new ones to serve.
        wait_until(
            lambda: load.result.total >= reloaded_at + 100 and any(load.result.served_by[str(p)] for p in after),
            30,
            what="load after the reload, served by the new workers",
        )
    result = load.stop()
    print(f"\nSIGUSR2 rolling reload ({policy}, keep-alive {keepalive}) under load: {result}")
    assert result.failed == 0, result
    assert result.ok >= 200
    assert not (after & before)
    assert any(result.served_by[str(pid)] for pid in after)  # the new workers served the load too


def test_sighup_also_reloads(start_cluster):
    cluster = start_cluster(workers=2)
    before = cluster.listening_pids()
    cluster.signal(signal.SIGHUP)
    wait_until(
        lambda: not (cluster.listening_pids() & before) and len(cluster.listening_pids()) == 2,
        20,
        what="reload on SIGHUP",
    )


def test_sigterm_lets_slow_requests_finish(start_cluster, tmp_path):
    """Four requests inside the app when SIGTERM arrives, held there until the stop is under way
    (new connections refused): the master waits for them, they all answer 200, then it exits 0."""
    cluster = start_cluster(workers=2)
    arrived, release = tmp_path / "arrived", tmp_path / "release"
    results: list[int | str] = []

    def slow() -> None:
        try:
            params = {"mark": str(arrived), "until": str(release)}
            results.append(httpx.get(cluster.url + "/hold", params=params, timeout=60).status_code)
        except httpx.HTTPError as exc:
            results.append(type(exc).__name__)

    def refused() -> bool:
        try:
            socket.create_connection((cluster.host, cluster.port), timeout=2).close()
        except ConnectionRefusedError:
            return True
        return False

    threads = [threading.Thread(target=slow) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        # Each request appends a line once it is inside the app: all four are in the workers now.
        wait_until(
            lambda: arrived.exists() and len(arrived.read_text().splitlines()) == 4,
            30,
            what="the 4 slow requests to reach the app",
        )
        cluster.signal(signal.SIGTERM)
        wait_until(refused, 15, what="the stopping master to refuse new connections")
        assert cluster.proc.poll() is None and results == []  # stopping, and waiting for the four
    finally:
        release.touch()
    assert cluster.wait(30) == 0
    for thread in threads:
        thread.join(30)
    assert results == [200] * 4
    with pytest.raises(httpx.ConnectError):
        httpx.get(cluster.url, timeout=2)


def test_ttin_adds_and_ttou_removes_a_worker(start_cluster):
    cluster = start_cluster(workers=2)
    cluster.signal(signal.SIGTTIN)
    three = cluster.wait_ready(3)
    cluster.signal(signal.SIGTTOU)
    cluster.wait_ready(2)  # (identical signals sent back to back coalesce, so one at a time)
    cluster.signal(signal.SIGTTOU)
    one = cluster.wait_ready(1)
    assert one < three
    cluster.signal(signal.SIGTTOU)  # never below one
    # No sleep: the master handles a signal before it can answer a control request sent after it (the
    # signal is delivered before it runs again, and its loop runs the handler before it serves the request).
    status = cluster.status()
    assert status["master"]["target_workers"] == 1
    assert {w["pid"] for w in status["workers"] if w["state"] == "listening"} == one == cluster.listening_pids()


def test_max_requests_recycles_without_failures(start_cluster):
    cluster = start_cluster(workers=2, args=["--max-requests", "40", "--max-requests-jitter", "10"])
    first = cluster.listening_pids()
    with LoadGenerator(cluster.url, concurrency=4, max_seconds=30) as load:
        wait_until(lambda: not (cluster.listening_pids() & first), 20, what="both workers recycled")
    result = load.stop()
    assert result.failed == 0, result
    assert len(result.served_by) > 2  # the replacements served too
    # The old workers drained away; max-requests is soft on purpose (they serve until their successor listens).
    wait_until(lambda: len(cluster.status()["workers"]) == 2, 10, what="the old workers to exit")
    assert sum(w["restarts"] for w in cluster.status()["workers"]) == 0  # recycling is not crashing


def test_max_rss_recycles_the_zero_downtime_way(start_cluster):
    cluster = start_cluster(workers=2, args=["--max-rss-mb", "1"])  # every worker is "too big"
    first = cluster.listening_pids()
    with LoadGenerator(cluster.url, concurrency=4, max_seconds=4) as load:
        wait_until(lambda: not (cluster.listening_pids() & first), 15, what="a recycle by RSS")
    result = load.stop()
    assert result.failed == 0, result


def test_crash_loop_makes_the_master_give_up(start_cluster):
    # A window far longer than the crash loop takes even with slow worker restarts: the claim is the count.
    cluster = start_cluster(workers=2, args=["--max-crashes", "4", "--crash-window", "120"])

    def crash_one() -> bool:
        """One /crash (it kills whichever worker gets it); True once the master has exited."""
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(cluster.url + "/crash", timeout=5)
        return cluster.proc.poll() is not None

    # As many crashes as it takes, however slowly the replacements start; bounded overall.
    wait_until(crash_one, 90, interval=0.05, what="the master to give up")
    assert cluster.wait(20) == 1
    assert "gives up" in cluster.log()


def test_an_app_that_cannot_load_fails_fast(start_cluster):
    cluster = start_cluster("tests.cluster.no_such_module:app", wait=False)
    assert cluster.wait(20) == 3
    assert "cannot load" in cluster.log()


def test_workers_exit_when_the_master_is_killed(start_cluster):
    cluster = start_cluster(workers=2)
    pids = cluster.listening_pids()
    cluster.signal(signal.SIGKILL)
    cluster.wait(5)

    def all_gone() -> bool:
        return not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)

    wait_until(all_gone, 15, what="orphaned workers to exit")


def test_worker_sigterm_means_replace_it_gracefully(start_cluster):
    cluster = start_cluster(workers=2)
    victim = sorted(cluster.listening_pids())[0]
    with LoadGenerator(cluster.url, concurrency=4, max_seconds=15) as load:
        os.kill(victim, signal.SIGTERM)
        wait_until(
            lambda: victim not in cluster.listening_pids() and len(cluster.listening_pids()) == 2,
            10,
            what="the worker to be swapped",
        )
    result = load.stop()
    assert result.failed == 0, result
    assert sum(w["restarts"] for w in cluster.status()["workers"]) == 0  # not a crash


APP_TEMPLATE = """
import json
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = json.dumps({{"version": {version}}}).encode()
    await send({{"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}})
    await send({{"type": "http.response.body", "body": body}})
"""


def test_reload_picks_up_code_changed_on_disk_and_survives_broken_code(start_cluster, tmp_path: Path):
    source = tmp_path / "versioned_app.py"
    source.write_text(APP_TEMPLATE.format(version=1))
    cluster = start_cluster("versioned_app:app", workers=2, cwd=tmp_path)
    assert cluster.get().json()["version"] == 1

    source.write_text(APP_TEMPLATE.format(version=2))
    before = cluster.listening_pids()
    cluster.signal(signal.SIGUSR2)
    wait_until(
        lambda: not (cluster.listening_pids() & before) and len(cluster.listening_pids()) == 2, 20, what="reload"
    )
    assert {cluster.get().json()["version"] for _ in range(6)} == {2}

    source.write_text("this is not python (")
    serving = cluster.listening_pids()
    cluster.signal(signal.SIGUSR2)
    wait_until(lambda: "rolling reload aborted" in cluster.log(), 20, what="the reload to abort")
    assert cluster.listening_pids() == serving
    assert {cluster.get().json()["version"] for _ in range(6)} == {2}


def test_orphans_left_by_workers_are_reaped_by_the_master(start_cluster, tmp_path):
    cluster = start_cluster(workers=1)
    release = tmp_path / "orphans-may-exit"
    for _ in range(3):  # each leaves a grandchild that lives until `release` exists
        assert cluster.get("/orphan", params={"until": str(release)}).status_code == 200
    master = psutil.Process(cluster.pid)
    workers = cluster.listening_pids()

    def leftovers() -> list[psutil.Process]:
        return [p for p in master.children() if p.pid not in workers]  # zombies included

    adopted = leftovers()
    assert len(adopted) >= 3, "the orphans should have been re-parented to the master (child subreaper)"
    release.touch()
    # They exit now; a master that does not reap would leave them as zombies for good.
    try:
        wait_until(lambda: not leftovers(), 20, what="the orphans to exit and be reaped")
    except TimeoutError:
        left = []
        for p in leftovers():
            with contextlib.suppress(psutil.NoSuchProcess):
                left.append((p.pid, p.status()))
        raise AssertionError(f"not reaped: {left}") from None
