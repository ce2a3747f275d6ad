"""``scalecube demo``: each demo's smoke run end to end (real processes, real Locust), and the CLI's refusals.

The demos run as ``python -m scalecube.cli demo ...``
in a subprocess: Locust must never be imported here, and a demo that overruns is interrupted
(SIGINT), so that it stops what it started on its way out.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from infra.local.ports import free_port
from infra.local.processes import ClusterProcess
from infra.local.redis_server import RedisServer
from infra.paths import REPO
from loadtests.demo_cli import demo_app

DEMO_TIMEOUT = 240.0


@dataclass
class DemoRun:
    code: int
    stdout: str
    stderr: str
    out: Path

    def rows(self, name: str) -> list[dict[str, str]]:
        with open(self.out / name, newline="") as file:
            return list(csv.DictReader(file))

    def explain(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout[-6000:]}\n--- stderr\n{self.stderr[-3000:]}"


def run_demo(out: Path, *args: str) -> DemoRun:
    proc = subprocess.Popen(
        [sys.executable, "-m", "scalecube.cli", "demo", *args, "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        stdout, stderr = proc.communicate(timeout=DEMO_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # the demo's finally blocks stop its rig
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        pytest.fail(f"demo {args} overran {DEMO_TIMEOUT:g}s\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return DemoRun(proc.returncode, stdout, stderr, out)


def assert_report(run: DemoRun, phases: list[str], charts_at_least: int) -> None:
    assert [row["phase"] for row in run.rows("phases.csv")] == phases, run.explain()
    assert run.rows("timeseries.csv") and run.rows("served_by.csv") and run.rows("claims.csv")
    html = (run.out / "report.html").read_text()
    assert html.count("<svg") >= charts_at_least and 'class="series"' in html and 'class="bar"' in html
    assert "<script" not in html
    assert "report.html" in run.stdout


@pytest.mark.slow
def test_cloning_smoke(tmp_path: Path) -> None:
    run = run_demo(tmp_path / "out", "cloning", "--smoke")
    assert run.code == 0, run.explain()
    assert "cluster ≥ 1.6× one process" in run.stdout and "NOT JUDGED" in run.stdout  # a performance target
    phases = [row["phase"] for row in run.rows("phases.csv")]
    assert phases[0] == "1 process" and phases[1].startswith("cluster (") and phases[2].startswith("3 clusters + ")
    assert_report(run, phases, charts_at_least=1 + 3 + 6)
    workers = {row["phase"]: int(row["workers_seen"]) for row in run.rows("phases.csv")}
    assert workers["1 process"] == 1 and workers[phases[1]] >= 2 and workers[phases[2]] >= 3  # smoke: 1 per replica
    served = run.rows("served_by.csv")
    assert {row["replica"] for row in served if row["phase"] == phases[2]} == {"127.0.0.2", "127.0.0.3", "127.0.0.4"}
    verdicts = {row["claim"]: row["verdict"] for row in run.rows("claims.csv")}  # judged even under --smoke
    assert verdicts["the cluster spreads requests over all its workers"] == "holds", verdicts
    assert verdicts["the balancer spreads requests over every replica"] == "holds", verdicts


@pytest.mark.slow
@pytest.mark.load
def test_availability_smoke(tmp_path: Path) -> None:
    run = run_demo(tmp_path / "out", "availability", "--smoke")
    assert run.code == 0, run.explain()
    claims = {row["claim"]: row for row in run.rows("claims.csv")}
    assert claims["≥ 99% succeed, straight to a cluster"]["verdict"] == "holds"
    assert claims["0 failed GETs through a retrying balancer"]["verdict"] == "holds"
    assert claims["≥ 99.5% succeed with 200 clients, new connection each, straight to a cluster"]["verdict"] == "holds"
    assert claims["≥ 99.5% succeed with 200 clients, new connection each, through the balancer"]["verdict"] == "holds"
    rows = run.rows("phases.csv")
    phases = [row["phase"] for row in rows]
    node = [row for row in rows if row["phase"].startswith("node cluster")]
    # The guides' Node cluster runs beside ours under the same crowd wherever node is installed (CI has it).
    assert len(node) == (1 if shutil.which("node") else 0), phases
    assert len(phases) == 5 + len(node) and "policy os" in phases[3]
    if node:
        assert int(node[0]["requests"]) > 0 and "shown, not judged" in node[0]["note"], node[0]
    assert_report(run, phases, charts_at_least=1 + 2 + 4)
    ours = [row for row in rows if row not in node]
    assert all("worker crash(es)" in row["note"] and "; 0 worker crash" not in row["note"] for row in ours)


@pytest.mark.slow
@pytest.mark.load
def test_overload_smoke(tmp_path: Path) -> None:
    run = run_demo(tmp_path / "out", "overload", "--smoke")
    assert run.code == 0, run.explain()
    claims = {row["claim"]: row["verdict"] for row in run.rows("claims.csv")}
    assert claims["0 failed cheap requests, straight to a cluster"] == "holds"
    assert claims["0 failed cheap requests through the balancers, 8 heavy at once"] == "holds"
    assert claims["no replica marked down during the burst"] == "holds"
    assert sorted(v for name, v in claims.items() if name.startswith("least: cheap p99")) == ["not judged"] * 2
    phases = [row["phase"] for row in run.rows("phases.csv")]
    assert [p.split(",")[0] for p in phases[:6]] == ["rr", "rr", "least", "least", "least", "uvicorn"]
    assert any("saturated" in p for p in phases) and sum("replicas +" in p for p in phases) >= 1


@pytest.mark.slow
@pytest.mark.load
def test_reload_smoke(tmp_path: Path) -> None:
    run = run_demo(tmp_path / "out", "reload", "--smoke")
    assert run.code == 0, run.explain()
    rows = run.rows("phases.csv")
    assert rows[0]["note"] == "2 of 2 workers replaced" or rows[0]["note"].endswith("workers replaced")
    assert rows[1]["note"].startswith("2 of 2 replicas replaced")
    assert [row["verdict"] for row in run.rows("claims.csv")] == ["holds", "holds"]
    # The successors served too: requests reached more replicas than the two it started with.
    assert len({row["replica"] for row in run.rows("served_by.csv") if row["phase"] == rows[1]["phase"]}) >= 3
    assert_report(run, [row["phase"] for row in rows], charts_at_least=1 + 2 + 4)


@pytest.mark.slow
def test_sessions_smoke(tmp_path: Path) -> None:
    run = run_demo(tmp_path / "out", "sessions", "--smoke")
    assert run.code == 0, run.explain()
    claims = {row["claim"]: row for row in run.rows("claims.csv")}
    lost = claims["memory, sticky off: loses sessions"]
    assert lost["verdict"] == "holds" and float(lost["measured"]) > 0
    for kept in ("memory, sticky on, 1 worker/replica", "redis, sticky off", "redis, sticky on"):
        assert claims[f"{kept}: loses none"]["verdict"] == "holds", run.explain()
    assert claims["memory, sticky on, 2 workers/replica: loses sessions"]["verdict"] == "not judged"
    assert "memory, sticky off" in run.stdout and "% lost" in run.stdout
    assert_report(run, [row["phase"] for row in run.rows("phases.csv")], charts_at_least=1 + 5 + 10)


@pytest.mark.slow
def test_broadcast_smoke(tmp_path: Path) -> None:
    run = run_demo(tmp_path / "out", "broadcast", "--smoke")
    assert run.code == 0, run.explain()
    rows = run.rows("phases.csv")
    phases = [row["phase"] for row in rows]
    assert phases == ["broadcast, 1 worker", "broadcast, 2 workers", "worker, 1 worker", "worker, 2 workers"]
    claims = {row["claim"]: row for row in run.rows("claims.csv")}
    assert claims["broadcast: ~1 source read per interval, whatever the workers"]["verdict"] == "holds", run.explain()
    assert claims["each worker reading: ~N source reads per interval"]["verdict"] == "holds", run.explain()
    # The answers say where the value came from: the mode each cluster was started in.
    assert all("'master broadcast'" in row["note"] for row in rows[:2])
    assert all("'worker poll'" in row["note"] for row in rows[2:])
    assert all(int(row["requests"]) > 0 and int(row["failures"]) == 0 for row in rows)
    assert_report(run, phases, charts_at_least=1 + 4 + 8)


@pytest.mark.slow
@pytest.mark.load
def test_cache_smoke(tmp_path: Path) -> None:
    # 2 replicas × 1 worker per backend; computations counted at the source, in Redis.
    run = run_demo(tmp_path / "out", "cache", "--smoke")
    assert run.code == 0, run.explain()
    rows = {row["phase"]: row for row in run.rows("phases.csv")}
    assert list(rows) == [
        "memory cache: 2 replicas × 1 worker(s)",
        "redis cache: 2 replicas × 1 worker(s)",
        "memory: 200 at once, cold key",
        "redis: 200 at once, hot key just expired",
        "redis: 200 at once, cold key",
    ]
    assert all(int(row["requests"]) > 0 and int(row["failures"]) == 0 for row in rows.values())
    claims = {row["claim"]: row for row in run.rows("claims.csv")}
    assert len(claims) == 6 and {row["verdict"] for row in claims.values()} == {"holds"}, run.explain()
    hot = claims["redis: a hot key expiring under 200 at once is recomputed exactly once"]
    cold = claims["redis: a key never computed, 200 at once: computed exactly once, the others wait for it"]
    assert float(hot["measured"]) == 1 and float(cold["measured"]) == 1  # counted at the source
    bursts = {row["burst"]: row for row in run.rows("bursts.csv")}
    assert bursts["memory: 200 at once, cold key"]["computations"] == "2"  # one per worker process
    assert [row["answered 200"] for row in bursts.values()] == ["200"] * 3
    computations = {row["cache"]: int(row["computations"]) for row in run.rows("computations.csv")}
    assert computations["memory"] >= 2 and computations["redis"] >= 1, computations  # each worker computes its own
    assert_report(run, list(rows), charts_at_least=1 + 5 + 10)


@pytest.mark.slow
def test_splitting_smoke(tmp_path: Path) -> None:
    run = run_demo(tmp_path / "out", "splitting", "--smoke")
    assert run.code == 0, run.explain()
    phases = [row["phase"] for row in run.rows("phases.csv")]
    assert phases == [
        "create + read via the router",
        "GET /users/{id} via the router",
        "GET /users/{id} straight to the shard",
    ]
    claims = {row["claim"]: row for row in run.rows("claims.csv")}
    placed = claims["each shard holds exactly the users of its countries"]
    assert placed["verdict"] == "holds" and float(placed["measured"]) == 0, run.explain()
    assert claims["the directory counts every user created"]["verdict"] == "holds", run.explain()
    cost = claims["the router costs ≤ 10% throughput"]
    assert cost["verdict"] == "not judged" and cost["measured"] != "", run.explain()  # shown; judged by bench router
    created = run.rows("phases.csv")[0]["note"]
    assert "shard-a:" in created and "shard-b:" in created  # the country mix reached both shards
    assert_report(run, phases, charts_at_least=1 + 3 + 6)


@pytest.mark.slow
@pytest.mark.load
def test_decomposing_smoke(tmp_path: Path) -> None:
    run = run_demo(tmp_path / "out", "decomposing", "--smoke")
    assert run.code == 0, run.explain()
    rows = {row["phase"]: row for row in run.rows("phases.csv")}
    assert list(rows) == [
        "auth × 1 replica",
        "api GET / during auth × 1 replica",
        "auth × 2 replicas",
        "api GET / during auth × 2 replicas",
    ]
    claims = {row["claim"]: row for row in run.rows("claims.csv")}
    assert claims["login throughput, 2 auth replicas ≥ 1.3× 1"]["verdict"] == "not judged"  # a performance target
    assert claims["the api answers GET / with p95 ≤ 500 ms while auth is saturated"]["verdict"] == "holds", (
        run.explain()
    )
    assert int(rows["auth × 2 replicas"]["workers_seen"]) == 2  # both auth replicas served logins
    served = run.rows("served_by.csv")
    assert {row["replica"] for row in served if row["phase"] == "auth × 2 replicas"} == {"127.0.0.2", "127.0.0.3"}
    assert "logins/s" in rows["auth × 1 replica"]["note"]
    assert_report(run, list(rows), charts_at_least=1 + 4 + 8)


@pytest.mark.slow
@pytest.mark.load
def test_failover_smoke(tmp_path: Path) -> None:
    # A stack of its own with --redis sentinel; its primary SIGKILLed twice (the second time with a Sentinel frozen).
    run = run_demo(tmp_path / "out", "failover", "--smoke")
    assert run.code == 0, run.explain()
    claims = {row["claim"]: row["verdict"] for row in run.rows("claims.csv")}
    assert len(claims) == 2 * 5 and set(claims.values()) == {"holds"}, run.explain()
    assert claims["primary killed: 0 sessions lost"] == "holds"
    assert claims["primary killed, 1 sentinel down: old primary rejoins as a replica"] == "holds"
    rounds = run.rows("failover.csv")
    assert [row["round"] for row in rounds] == ["primary killed", "primary killed, 1 sentinel down"]
    # Each round killed the node that was the primary then: the first the stack's `redis`, the second the replica
    # the first promoted; each lost nothing, and its window was measured (some session requests failed).
    assert [row["killed"] for row in rounds] == ["redis", "redis-replica"], rounds
    assert all(row["lost"] == "0" and int(row["503 + Retry-After"]) > 0 for row in rounds), rounds
    assert rounds[1]["sentinel frozen"] == "redis-sentinel-1"
    assert all(int(row["sentinel elections"]) >= 1 for row in rounds), rounds  # the Sentinels' epoch moved
    assert (run.out / "logs" / "failover" / "supervisor.log").exists()


@pytest.mark.slow
@pytest.mark.load
def test_outage_smoke(tmp_path: Path) -> None:
    # A full local stack of its own; the sessions Redis frozen 3 s, then shard-a killed; each fault judged.
    run = run_demo(tmp_path / "out", "outage", "--smoke")
    assert run.code == 0, run.explain()
    claims = {row["claim"]: row["verdict"] for row in run.rows("claims.csv")}
    assert len(claims) == 3 + 4 and set(claims.values()) == {"holds"}, run.explain()  # every claim judged, and holds
    assert claims["sessions Redis STOP: routes that need it fail only with a 503 naming redis"] == "holds"
    assert claims["shard-a KILL: the supervisor restarted it"] == "holds"
    faults = run.rows("faults.csv")
    assert [row["fault"] for row in faults] == ["sessions Redis STOP", "shard-a KILL"]
    for row in faults:  # the timeline: each event seen, after the fault began; the success after its end
        first_503, ended, success = (float(row[c].strip("+ s")) for c in ("first 503", "fault ended", "first success"))
        assert first_503 >= 0 and 0 < ended <= success, row
    assert "503 redis" in faults[0]["probe"] and "503 shard-a" in faults[1]["probe"]
    assert faults[1]["restarts"] == "0 → 1" and faults[0]["restarts"] == "—"
    assert_report(run, ["sessions Redis STOP", "shard-a KILL"], charts_at_least=1 + 1 + 2)
    assert "<h2>faults</h2>" in (run.out / "report.html").read_text()
    # The stack's logs were kept, and the stack is gone: `scalecube down`, nothing left mentioning its state dir.
    supervisor = (run.out / "logs" / "stack" / "supervisor.log").read_text()
    assert "shard-a restarted" in supervisor
    state_dir = re.search(r"^\s*logs\s+(\S+)", supervisor, re.M)
    assert state_dir is not None and not Path(state_dir.group(1)).exists()
    assert not [
        p.pid for p in psutil.process_iter(["cmdline"]) if any(state_dir.group(1) in a for a in p.info["cmdline"] or [])
    ]


@pytest.fixture
def target(redis_server: RedisServer, tmp_path: Path) -> Iterator[str]:
    env = {
        "REDIS_URL": redis_server.url,
        "SESSION_SECRET": "test-secret-long-enough-123",
        "LOG_LEVEL": "warning",
        "SCALECUBE_RUN_DIR": str(tmp_path),
    }
    cluster = ClusterProcess("services.api.app:app", port=free_port(), workdir=tmp_path, workers=2, env=env)
    try:
        cluster.wait_ready()
        yield cluster.url
    finally:
        cluster.stop()


@pytest.mark.slow
@pytest.mark.load
def test_all_against_a_target_runs_only_the_load_phases(target: str, tmp_path: Path) -> None:
    run = run_demo(tmp_path / "out", "all", "--smoke", "--target", target)
    # Those demos judge nothing on a target (a demo that cannot fail does not pass): exit 2, the worst, and why.
    assert run.code == 2, run.explain()
    index = (run.out / "index.html").read_text()
    summary = run.stdout[run.stdout.index("scalecube demo all") :]
    demos = ("cloning", "availability", "reload", "sessions", "broadcast", "cache", "splitting", "decomposing")
    for name in (*demos, "failover"):
        assert f"href='{name}/report.html'" in index and (run.out / name / "report.html").is_file()
        verdicts = {row["verdict"] for row in DemoRun(0, "", "", run.out / name).rows("claims.csv")}
        assert verdicts == {"skipped"}, name  # every claim needs processes the demo starts
        row = next(line for line in summary.splitlines() if line.strip("│ ").startswith(name))
        assert "no claim judged" in row, summary
    assert "exit 2: no claim judged" in index
    overload = {row["claim"]: row["verdict"] for row in DemoRun(0, "", "", run.out / "overload").rows("claims.csv")}
    assert overload["0 failed cheap requests through the balancers, 8 heavy at once"] == "holds"  # judged on the target
    reload_phases = DemoRun(0, "", "", run.out / "reload").rows("phases.csv")
    assert all(row["note"].startswith("skipped:") and row["requests"] == "" for row in reload_phases)
    cloning = {row["phase"]: row for row in DemoRun(0, "", "", run.out / "cloning").rows("phases.csv")}
    assert int(cloning["target"]["requests"]) > 0 and cloning["1 process"]["note"].startswith("skipped")
    # outage fails nothing on a target: its fault claims are skipped, the error contract is judged on the load.
    outage = DemoRun(0, "", "", run.out / "outage").rows("claims.csv")
    assert outage[0]["verdict"] == "holds" and outage[0]["claim"].startswith("every answer a success, or a 503")
    assert {row["verdict"] for row in outage[1:]} == {"skipped"} and len(outage) > 1
    assert "it routes no router, no auth" in DemoRun(0, "", "", run.out / "outage").rows("phases.csv")[0]["note"]


def test_docker_without_a_running_compose_stack_says_so() -> None:
    # No engine here, or an engine without this project: either way exit 2 and why.
    result = CliRunner().invoke(demo_app, ["cloning", "--docker"], env={"COMPOSE_PROJECT_NAME": "scalecube-absent"})
    assert result.exit_code == 2 and "--docker" in result.output, result.output
    assert "not running" in result.output or "no Docker engine" in result.output


def test_docker_and_target_together_are_refused() -> None:
    result = CliRunner().invoke(demo_app, ["reload", "--docker", "--target", "http://127.0.0.1:1"])
    assert result.exit_code == 2 and "--target" in result.output


def test_target_must_be_an_http_url() -> None:
    result = CliRunner().invoke(demo_app, ["sessions", "--target", "localhost:8080"])
    assert result.exit_code == 2 and "http://" in result.output


def test_users_must_be_positive() -> None:
    assert CliRunner().invoke(demo_app, ["reload", "--users", "0"]).exit_code == 2
