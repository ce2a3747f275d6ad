"""Crash recovery, rolling reload, graceful stop, runtime scaling and recycling — real processes, real HTTP."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.load import LoadGenerator
from infra.local.processes import wait_until


def test_killed_worker_is_replaced_under_load(start_cluster):
    cluster = start_cluster(workers=2)
    before = cluster.listening_pids()
    victim = sorted(before)[0]
    with LoadGenerator(cluster.url, concurrency=8, max_seconds=20) as load:
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        after = wait_until(lambda: (pids := cluster.listening_pids()) and victim not in pids and len(pids) == 2 and pids,
                           10, what="the replacement")  # fmt: skip
        time.sleep(0.5)
    result = load.stop()
    print(f"\nSIGKILL of one of 2 workers under load: {result}")
    assert victim not in after and len(after) == 2
    assert result.ok > 100
    # Only requests already inside the killed worker can fail: a handful at most.
    assert result.failed <= 8 * 2, result
    restarts = {w["slot"]: w["restarts"] for w in cluster.status()["workers"]}
    assert sum(restarts.values()) == 1


@pytest.mark.parametrize("policy, keepalive", [("rr", False), ("os", False), ("rr", True), ("os", True)])
def test_rolling_reload_under_load_drops_nothing(start_cluster, policy, keepalive):
    """New connection per request (like ab) and keep-alive clients (like wrk): neither sees a failure."""
    cluster = start_cluster(workers=2, policy=policy)
    before = cluster.listening_pids()
    with LoadGenerator(cluster.url, concurrency=8, keepalive=keepalive, max_seconds=30) as load:
        time.sleep(0.5)
        cluster.signal(signal.SIGUSR2)
        wait_until(lambda: not (cluster.listening_pids() & before) and len(cluster.listening_pids()) == 2,
                   20, what="every worker replaced")  # fmt: skip
        time.sleep(0.5)
    result = load.stop()
    print(f"\nSIGUSR2 rolling reload ({policy}, keep-alive {keepalive}) under load: {result}")
    assert result.failed == 0, result
    assert result.ok > 100
    assert not (cluster.listening_pids() & before)


def test_sighup_also_reloads(start_cluster):
    cluster = start_cluster(workers=2)
    before = cluster.listening_pids()
    cluster.signal(signal.SIGHUP)
    wait_until(lambda: not (cluster.listening_pids() & before) and len(cluster.listening_pids()) == 2, 20,
               what="reload on SIGHUP")  # fmt: skip


def test_sigterm_lets_slow_requests_finish(start_cluster):
    cluster = start_cluster(workers=2)
    results: list[int | str] = []

    def slow() -> None:
        try:
            results.append(httpx.get(cluster.url + "/sleep?s=1.5", timeout=10).status_code)
        except httpx.HTTPError as exc:
            results.append(type(exc).__name__)

    threads = [threading.Thread(target=slow) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.4)  # the requests are inside the workers now
    started = time.monotonic()
    cluster.signal(signal.SIGTERM)
    assert cluster.wait(15) == 0
    for thread in threads:
        thread.join(5)
    assert results == [200] * 4
    assert time.monotonic() - started < 10
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
    time.sleep(0.5)
    assert cluster.listening_pids() == one


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
    cluster = start_cluster(workers=2, args=["--max-crashes", "4", "--crash-window", "30"])
    for _ in range(10):
        try:
            httpx.get(cluster.url + "/crash", timeout=2)
        except httpx.HTTPError:
            pass
        if cluster.proc.poll() is not None:
            break
        time.sleep(0.3)
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
        wait_until(lambda: victim not in cluster.listening_pids() and len(cluster.listening_pids()) == 2, 10,
                   what="the worker to be swapped")  # fmt: skip
    result = load.stop()
    assert result.failed == 0, result
    assert sum(w["restarts"] for w in cluster.status()["workers"]) == 0  # not a crash


APP_TEMPLATE = '''
import json
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = json.dumps({{"version": {version}}}).encode()
    await send({{"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}})
    await send({{"type": "http.response.body", "body": body}})
'''


def test_reload_picks_up_code_changed_on_disk_and_survives_broken_code(start_cluster, tmp_path: Path):
    source = tmp_path / "versioned_app.py"
    source.write_text(APP_TEMPLATE.format(version=1))
    cluster = start_cluster("versioned_app:app", workers=2, cwd=tmp_path)
    assert cluster.get().json()["version"] == 1

    source.write_text(APP_TEMPLATE.format(version=2))
    before = cluster.listening_pids()
    cluster.signal(signal.SIGUSR2)
    wait_until(lambda: not (cluster.listening_pids() & before) and len(cluster.listening_pids()) == 2, 20,
               what="reload")  # fmt: skip
    assert {cluster.get().json()["version"] for _ in range(6)} == {2}

    source.write_text("this is not python (")
    serving = cluster.listening_pids()
    cluster.signal(signal.SIGUSR2)
    wait_until(lambda: "rolling reload aborted" in cluster.log(), 20, what="the reload to abort")
    assert cluster.listening_pids() == serving
    assert {cluster.get().json()["version"] for _ in range(6)} == {2}


def test_orphans_left_by_workers_are_reaped_by_the_master(start_cluster):
    cluster = start_cluster(workers=1)
    for _ in range(3):
        assert cluster.get("/orphan?s=0.3").status_code == 200
    master = psutil.Process(cluster.pid)
    workers = cluster.listening_pids()
    adopted = [p for p in master.children() if p.pid not in workers]
    assert adopted, "the orphans should have been re-parented to the master (child subreaper)"
    time.sleep(1.0)  # they exit; a master that does not reap would leave zombies
    leftovers = [p for p in master.children() if p.pid not in workers]
    assert leftovers == [], [(p.pid, p.status()) for p in leftovers]
