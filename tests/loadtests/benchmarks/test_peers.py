"""``scalecube bench peers``: real servers, real wrk, real Redis — a short run, and the Lua tally checked
against a real 2-worker cluster."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from loadtests.benchmarks import peers
from loadtests.benchmarks.peers import spread
from loadtests.benchmarks.peers_cli import EXIT_CANNOT_RUN
from loadtests.drivers import parse, run_wrk, write_script, wrk_available
from scalecube import cli as scalecube_cli

needs_wrk = pytest.mark.skipif(not wrk_available(), reason="wrk is not installed")


# -- spread -----------------------------------------------------------------------


def test_spread_is_max_minus_min_over_mean() -> None:
    assert spread({"vm/1": 100, "vm/2": 100}, 2) == 0.0
    assert spread({"vm/1": 120, "vm/2": 80}, 2) == pytest.approx(0.4)
    assert spread({"vm/1": 60, "vm/2": 30, "vm/3": 30}, 3) == pytest.approx(0.75)


def test_a_worker_that_served_nothing_counts_as_zero() -> None:
    assert spread({"vm/1": 100}, 2) == pytest.approx(2.0)
    assert spread({}, 2) is None


def test_responses_without_the_header_are_not_a_worker() -> None:
    assert spread({"vm/1": 50, "vm/2": 50, "?": 7}, 2) == 0.0


def test_parse_reads_only_the_tally_lines() -> None:
    run = parse(
        "Running 1s test @ http://x/\n  9 requests in 1.00s\nscalecube-tally served 5 vm/11\n"
        "scalecube-tally served 4 host with space/12\nscalecube-tally summary 9 1000000 0 1 0 2 0 1500 9000\n"
    )
    assert run.served == {"vm/11": 5, "host with space/12": 4}
    assert (run.requests, run.errors, run.p50_ms, run.p99_ms, run.rps) == (9, 3, 1.5, 9.0, 9.0)


# -- judging ------------------------------------------------------------------------


def row(rps: float, p99: float, spread: float) -> peers.PhaseResult:
    return peers.PhaseResult(rps=rps, p50_ms=1.0, p99_ms=p99, errors=0, spread=spread)


def judged(root: dict[str, peers.PhaseResult], cpu: dict[str, peers.PhaseResult]) -> peers.PeersReport:
    report = peers.PeersReport(2, 2, 1, 1, 64, 8, 90_000, phases={peers.ROOT: root, peers.CPU: cpu})
    peers.judge(report, {"uvicorn", "granian"})
    return report


def test_targets_are_judged_against_the_best_peer_of_each_phase() -> None:
    report = judged(
        {"scalecube rr": row(1000, 9, 0.01), "uvicorn": row(900, 9, 0.2), "granian": row(950, 9, 0.3)},
        {"scalecube rr": row(300, 40, 0.04), "uvicorn": row(300, 50, 0.2), "granian": row(300, 60, 0.3)},
    )
    assert report.best_peer == {peers.ROOT: "granian", peers.CPU: "uvicorn"}
    assert [v.value for v in report.verdicts] == [pytest.approx(1000 / 950, abs=1e-3), 0.8, 0.01, 0.04]
    assert [v.holds for v in report.verdicts] == [True, True, True, True] and not report.failed


def test_one_target_missed_fails_the_report() -> None:
    report = judged(
        {"scalecube rr": row(1000, 9, 0.01), "uvicorn": row(1001, 9, 0.2), "granian": row(950, 9, 0.3)},
        {"scalecube rr": row(300, 41, 0.06), "uvicorn": row(300, 50, 0.2), "granian": row(300, 60, 0.3)},
    )
    assert [v.holds for v in report.verdicts] == [False, False, True, False] and report.failed


# -- the Lua tally against a real cluster ------------------------------------------


@needs_wrk
def test_lua_tally_counts_every_response_by_the_worker_that_served_it(start_cluster, redis_url, tmp_path: Path) -> None:
    cluster = start_cluster(
        "services.api.app:app", workers=2, policy="rr", env={"REDIS_URL": redis_url, "LOG_LEVEL": "warning"}
    )
    workers = cluster.listening_pids()
    run = run_wrk(cluster.url + "/", script=write_script(tmp_path), seconds=1, connections=16, timeout=10)

    assert run.requests > 100 and run.errors == 0
    assert sum(run.served.values()) == run.requests  # every response tallied once, across wrk's threads
    assert {int(who.rsplit("/", 1)[1]) for who in run.served} == workers
    counts = list(run.served.values())
    assert spread(run.served, 2) == pytest.approx((max(counts) - min(counts)) / (sum(counts) / 2))


# -- a short real run of every peer --------------------------------------------------


@needs_wrk
def test_a_short_run_starts_every_peer_loads_it_and_leaves_no_process() -> None:
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}

    result = CliRunner().invoke(
        scalecube_cli.app, ["bench", "peers", "--seconds", "1", "--rounds", "1", "--workers", "2", "--json"]
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    names = [p.name for p in peers.PEERS]
    assert report["skipped"] == {}, "every peer is in requirements.lock"
    assert list(report["targets"]) == names
    for phase in (peers.ROOT, peers.CPU):
        for name in names:
            row = report["phases"][phase][name]
            assert row["rps"] > 0 and row["errors"] == 0, (phase, name, row)
            assert row["p50_ms"] <= row["p99_ms"]
            assert len(row["per_worker"]) == 1 and len(row["per_worker"][0]) >= 2
            assert row["vs_best_peer"] is not None
    # Every connection wrk opened is sampled once (a check on the sampling itself), at a worker or, not yet
    # handed over, at the master; rr hands them out in turn among the workers with room (cluster/handoff.py),
    # so the workers' split is even give or take what one worker took while the other was still reading its
    # last ones.
    for phase, connections in ((peers.ROOT, 64), (peers.CPU, 8)):
        row = report["phases"][phase]["scalecube rr"]
        [split], [master] = row["connections_per_worker"], row["connections_at_master"]
        assert len(split) == 2 and sum(split) + master == connections, (phase, split, master)
        assert min(split) >= (connections - master) // 4, (phase, split, master)
    assert report["best_peer"][peers.ROOT] in names[2:] and report["best_peer"][peers.CPU] in names[2:]
    assert [v["holds"] is not None for v in report["verdicts"]] == [True] * 4

    # Every master and every worker it had is gone: none left to init, none left as our child.
    for name, target in report["targets"].items():
        assert len(target["pids"]) >= 3, (name, target)  # the master and its 2 workers at least
        for pid in target["pids"]:
            assert not _running(pid), f"{name}: pid {pid} still runs"
    assert {p.pid for p in me.children(recursive=True) if _running(p.pid)} <= before


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_without_wrk_it_says_so_and_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(scalecube_cli.app, ["bench", "peers"], env={"PATH": str(tmp_path)})
    assert result.exit_code == EXIT_CANNOT_RUN
    assert "wrk is not installed" in result.output
