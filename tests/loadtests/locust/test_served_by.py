"""The X-Served-By tally: per process, and added up across Locust's own worker processes."""

from __future__ import annotations

import json

from tests.loadtests.locust.runner import run_locust


def test_tally_counts_every_worker_pid_and_every_response(api_redis_sessions, tmp_path):
    output = tmp_path / "served_by.json"
    result = run_locust(
        tmp_path,
        api_redis_sessions.url,
        classes=("CloningUser",),
        users=4,
        env={"SCALECUBE_SERVED_BY_FILE": str(output), "SCALECUBE_NEW_CONNECTIONS": "1"},
    )
    assert result.code == 0, result.explain()
    totals = json.loads(output.read_text())
    pids = {int(key.rsplit("/", 1)[1]) for key in totals}
    assert pids == api_redis_sessions.listening_pids()  # both workers of the cluster, and nothing else
    assert sum(totals.values()) == result.requests("Aggregated")
    by_name = json.loads((tmp_path / "served_by.by-name.json").read_text())
    assert set(by_name) == {"/", "/cpu"}
    assert {name: sum(counts.values()) for name, counts in by_name.items()} == {
        "/": result.requests("/"),
        "/cpu": result.requests("/cpu"),
    }


def test_tally_adds_up_the_reports_of_locust_worker_processes(api_redis_sessions, tmp_path):
    # --processes 2: a master and two workers; the workers' counts reach the master with their stats
    # reports, the last one after the master's test_stop: the file written at quit has them all.
    output = tmp_path / "served_by.json"
    result = run_locust(
        tmp_path,
        api_redis_sessions.url,
        "--processes",
        "2",
        classes=("CloningUser",),
        users=4,
        env={"SCALECUBE_SERVED_BY_FILE": str(output)},
    )
    assert result.code == 0, result.explain()
    totals = json.loads(output.read_text())
    assert len(totals) > 1, totals  # 4 keep-alive connections, handed out round robin over 2 workers
    assert sum(totals.values()) == result.requests("Aggregated") > 0, result.explain()
