"""PM2's everyday commands (`scalecube start/ls/logs/reload/scale/restart/stop/delete`, config files),
driven as a user would: the real CLI in subprocesses, against real clusters in the background."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cluster import control
from cluster.status import collect, discover
from infra.local.pids import ProcessRef
from infra.local.ports import free_port, port_is_free
from infra.local.processes import ClusterProcess, wait_until
from infra.paths import REPO
from tests.support.load import LoadGenerator

APP = "tests.cluster.apps:app"
REPLACED = re.compile(r"slot (\d+): worker (\d+) \(pid (\d+)\) -> worker (\d+) \(pid (\d+)\)")


class Pm:
    """The `scalecube` command with its own run dir; `stop_all()` stops whatever it started."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.env = {k: v for k, v in os.environ.items() if k not in ("WORKERS", "POLICY", "PORT", "HOST")}
        self.env["SCALECUBE_RUN_DIR"] = str(run_dir)

    def __call__(self, *args: str, cwd: Path = REPO, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scalecube", *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "scalecube", *args],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def clusters(self) -> dict[str, dict[str, Any]]:
        """What runs, by name, as the masters say."""
        return {snap["master"]["name"]: snap for snap in collect(discover(self.run_dir))}

    def listening(self, name: str) -> set[int]:
        return {w["pid"] for w in self.clusters()[name]["workers"] if w["state"] == "listening"}

    def stop_all(self) -> None:
        """Teardown: stop every master in the run dir, then kill by pid (from their answers) what outlives that."""
        refs = []
        for snap in collect(discover(self.run_dir)):
            pids = [snap["master"]["pid"], *(w["pid"] for w in snap["workers"])]
            refs += [ref for pid in pids if (ref := ProcessRef.of(pid))]
            try:
                control.request(snap["control"], "stop")
            except (ConnectionError, OSError, ValueError):
                pass
        for ref in refs:
            if not ref.wait_gone(60):
                ref.signal(signal.SIGKILL)


@pytest.fixture
def pm() -> Iterator[Pm]:
    run_dir = Path(tempfile.mkdtemp(prefix="scpm-", dir="/tmp"))  # short: a unix socket's path is at most 107 bytes
    runner = Pm(run_dir)
    try:
        yield runner
    finally:
        runner.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def start(pm: Pm, name: str, workers: int, *extra: str, app: str = APP, cwd: Path = REPO) -> int:
    port = free_port()
    result = ok(pm("start", app, "--name", name, "--workers", str(workers), "--port", str(port), *extra, cwd=cwd))
    assert f"started {name} (port {port}" in result.stdout
    return port


def gone(pid: int) -> bool:
    return ProcessRef.of(pid) is None or not ProcessRef.of(pid).alive()  # type: ignore[union-attr]


def test_start_ls_logs_stop_start_again_delete(pm: Pm, tmp_path: Path):
    port = start(pm, "web", 2)
    # In the background, and ready: every worker listens by the time `start` returns.
    assert len(pm.listening("web")) == 2
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
    listed = json.loads(ok(pm("ls", "--json", "--state-dir", str(tmp_path))).stdout)
    assert [(c["master"]["name"], c["master"]["port"]) for c in listed["clusters"]] == [("web", port)]
    assert listed["stopped"] == []
    assert "web" in ok(pm("ls", "--state-dir", str(tmp_path))).stdout

    again = pm("start", APP, "--name", "web", "--port", str(free_port()))
    assert again.returncode == 1 and "already runs" in again.stderr

    # Logs: a line a worker printed is in its slot's log, labelled with the slot, and in no other slot's.
    said = f"hello-{uuid.uuid4().hex[:8]}"
    slot = httpx.get(f"http://127.0.0.1:{port}/say", params={"text": said}, timeout=10).json()["slot"]
    merged = ok(pm("logs", "web", "--lines", "200")).stdout.splitlines()
    assert any(re.fullmatch(rf"\s*{slot} \| said {said} \(pid \d+\)", line) for line in merged), merged
    assert any(re.match(r"\s*master \| .*worker \d+ \(pid \d+, slot 1\) listening", line) for line in merged), merged
    assert said in ok(pm("logs", "web", "--slot", str(slot))).stdout
    assert said not in ok(pm("logs", "web", "--slot", str(1 - slot))).stdout
    missing = pm("logs", "web", "--slot", "7")
    assert missing.returncode == 1 and "no log for slot 7" in missing.stderr

    # Stop: graceful, and waited for: the master is gone when it returns.
    master = pm.clusters()["web"]["master"]["pid"]
    workers = pm.listening("web")
    assert "stopped web" in ok(pm("stop", "web")).stdout
    assert gone(master) and all(gone(pid) for pid in workers)
    assert pm.clusters() == {}
    assert port_is_free(port)
    listed = json.loads(ok(pm("ls", "--json", "--state-dir", str(tmp_path))).stdout)
    assert listed["clusters"] == [] and listed["stopped"] == ["web"]  # PM2's "stopped" row
    assert "stopped: web" in ok(pm("ls", "--state-dir", str(tmp_path))).stdout
    unknown = pm("reload", "web")
    assert unknown.returncode == 1 and "none runs" in unknown.stderr

    # Started before: `start NAME` starts it again as it was (port, workers), logs appended.
    ok(pm("start", "web"))
    assert pm.clusters()["web"]["master"]["port"] == port and len(pm.listening("web")) == 2
    assert said in ok(pm("logs", "web", "--lines", "500")).stdout

    # Delete: stopped, forgotten, its logs removed.
    master = pm.clusters()["web"]["master"]["pid"]
    deleted = ok(pm("delete", "web")).stdout
    assert "stopped web" in deleted and "forgot web" in deleted
    assert gone(master) and pm.clusters() == {}
    assert not (pm.run_dir / "logs" / "web").exists()
    assert json.loads(ok(pm("ls", "--json", "--state-dir", str(tmp_path))).stdout)["stopped"] == []
    forgotten = pm("start", "web")
    assert forgotten.returncode == 1 and "not started with `scalecube start`" in forgotten.stderr


def test_logs_follow_prints_new_lines_as_they_come(pm: Pm):
    port = start(pm, "web", 2)
    follower = pm.popen("logs", "web", "--follow", "--lines", "0")
    seen: list[str] = []

    def read() -> None:
        for line in follower.stdout:  # type: ignore[union-attr]
            seen.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        said = [f"follow-{uuid.uuid4().hex[:8]}" for _ in range(6)]
        # Until the follower has seen the first (it may still be starting up when the first is printed).
        wait_until(
            lambda: (
                httpx.get(f"http://127.0.0.1:{port}/say", params={"text": said[0]}, timeout=10)
                and any(said[0] in line for line in seen)
            ),
            60,
            interval=0.5,
            what="the follower to print",
        )
        slots = {
            httpx.get(f"http://127.0.0.1:{port}/say", params={"text": text}, timeout=10).json()["slot"]
            for text in said[1:]
        }
        wait_until(lambda: all(any(text in line for line in seen) for text in said[1:]), 30, what="every line")
    finally:
        follower.send_signal(signal.SIGINT)  # Ctrl-C: how a user ends it
        try:
            code = follower.wait(60)
        except subprocess.TimeoutExpired:
            follower.kill()
            follower.wait(10)
            pytest.fail(f"`scalecube logs --follow` outlived Ctrl-C by 60 s; stderr: {follower.stderr.read()}")  # type: ignore[union-attr]
    assert code == 0, follower.stderr.read()  # type: ignore[union-attr]
    labels = {line.split("|")[0].strip() for line in seen if "said follow-" in line}
    assert {str(slot) for slot in slots} <= labels <= {"0", "1"}  # each line labelled with its worker's slot


def test_reload_waits_and_reports_each_worker_replaced(pm: Pm):
    port = start(pm, "web", 2)
    before = pm.listening("web")
    unknown = pm("reload", "nope")
    assert unknown.returncode == 1 and f"web (port {port}" in unknown.stderr  # it says what runs
    with LoadGenerator(f"http://127.0.0.1:{port}", concurrency=4, max_seconds=120) as load:
        wait_until(lambda: load.result.ok >= 50, 30, what="load to get going")
        result = ok(pm("reload", str(port)))  # by port, too
    outcome = load.stop()
    replaced = [tuple(map(int, m.groups())) for m in REPLACED.finditer(result.stdout)]
    assert "reloaded web: 2 worker(s) replaced" in result.stdout
    assert sorted(slot for slot, *_ in replaced) == [0, 1]
    assert {old for _, _, old, _, _ in replaced} == before
    # It waited: when it returns the old workers are gone and exactly the new ones serve.
    after = pm.clusters()["web"]["workers"]
    assert {w["pid"] for w in after} == {new for *_, new in replaced}
    assert all(w["state"] == "listening" for w in after)
    assert outcome.failed == 0, outcome


APP_TEMPLATE = """
import json
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = json.dumps({{"version": {version}}}).encode()
    await send({{"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}})
    await send({{"type": "http.response.body", "body": body}})
"""


def test_a_reload_that_fails_says_so_and_the_old_workers_keep_serving(pm: Pm, tmp_path: Path):
    source = tmp_path / "versioned_app.py"
    source.write_text(APP_TEMPLATE.format(version=1))
    port = start(pm, "ver", 2, app="versioned_app:app", cwd=tmp_path)
    serving = pm.listening("ver")
    source.write_text("this is not python (")
    result = pm("reload", "ver")
    assert result.returncode == 1
    assert "the reload stopped" in result.stderr and "did not start" in result.stderr
    assert pm.listening("ver") == serving
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).json() == {"version": 1}


def test_scale_to_n_and_by_delta(pm: Pm):
    start(pm, "web", 1)
    result = ok(pm("scale", "web", "3"))
    assert "scaled web: 1 -> 3 worker(s)" in result.stdout
    status = pm.clusters()["web"]
    assert len(status["workers"]) == 3 and all(w["state"] == "listening" for w in status["workers"])
    ok(pm("scale", "web", "-1"))
    assert len(pm.clusters()["web"]["workers"]) == 2 == len(pm.listening("web"))
    ok(pm("scale", "web", "+1"))
    assert len(pm.listening("web")) == 3
    for bad, message in (("0", "at least 1"), ("-3", "at least 1"), ("two", "expected N, +N or -N")):
        refused = pm("scale", "web", bad)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    assert pm.clusters()["web"]["master"]["target_workers"] == 3


def test_restart_is_a_hard_restart_of_the_whole_cluster(pm: Pm):
    port = start(pm, "web", 1)
    ok(pm("scale", "web", "2"))
    master, workers = pm.clusters()["web"]["master"]["pid"], pm.listening("web")
    result = ok(pm("restart", "web"))
    assert "restarted web" in result.stdout
    now = pm.clusters()["web"]
    assert now["master"]["pid"] != master and gone(master)
    # Every process is new; the worker count it was scaled to is kept.
    assert len(pm.listening("web")) == 2 and not (pm.listening("web") & workers)
    assert now["master"]["port"] == port
    assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200


def test_start_failure_reports_the_log_and_leaves_nothing_running(pm: Pm):
    port = free_port()
    result = pm("start", "tests.cluster.no_such_module:app", "--name", "broken", "--port", str(port))
    assert result.returncode == 3, result.stderr  # serve's own code: the app cannot load
    assert "broken exited with code 3" in result.stderr and "cannot load" in result.stderr
    assert pm.clusters() == {} and port_is_free(port)
    bad = pm("start", APP, "--policy", "random")
    assert bad.returncode == 2 and "policy must be one of" in bad.stderr
    nothing = pm("start", "never-started")
    assert nothing.returncode == 1 and "not started with `scalecube start`" in nothing.stderr


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scalecube.toml"
    path.write_text(text)
    return path


def test_config_file_starts_the_apps_it_names(pm: Pm, tmp_path: Path):
    one, two = free_port(), free_port()
    config = _config(
        tmp_path,
        f"""
[apps.one]
app = "{APP}"
workers = 1
port = {one}
cwd = "{REPO}"
env = {{ GREETING = "hello from the config" }}

[apps.two]
app = "{APP}"
workers = 2
policy = "least"
port = {two}
cwd = "{REPO}"
""",
    )
    ok(pm("start", "--config", str(config), "one"))
    assert set(pm.clusters()) == {"one"}
    both = pm("start", "--config", str(config))  # `one` runs already: said, and `two` starts all the same
    assert both.returncode == 1 and "one (port" in both.stderr and "already runs" in both.stderr
    assert "started two" in both.stdout
    clusters = pm.clusters()
    assert clusters["two"]["master"]["policy"] == "least" and len(pm.listening("two")) == 2
    assert len(pm.listening("one")) == 1
    answer = httpx.get(f"http://127.0.0.1:{one}/env", params={"name": "GREETING"}, timeout=10).json()
    assert answer["value"] == "hello from the config"
    reloaded = ok(pm("reload", "all")).stdout
    assert "reloaded one: 1 worker(s) replaced" in reloaded and "reloaded two: 2 worker(s) replaced" in reloaded
    masters = [snap["master"]["pid"] for snap in clusters.values()]
    stopped = ok(pm("stop", "all")).stdout
    assert "stopped one" in stopped and "stopped two" in stopped
    assert pm.clusters() == {} and all(gone(pid) for pid in masters)


@pytest.mark.parametrize(
    "body, message",
    [
        ('app = "{app}"\nworkrs = 2', "[apps.web] workrs: unknown option"),
        ('app = "{app}"\nport = "eighty"', "[apps.web] port:"),
        ('app = "{app}"\npolicy = "random"', "[apps.web] policy:"),
        ('app = "{app}"\nworkers = 0', "[apps.web] workers:"),
        ('app = "{app}"\nenv = {{ A = [1] }}', "[apps.web] env:"),
        ('app = "{app}"\ncontrol = "/tmp/x.sock"', "[apps.web] control: unknown option"),
        ("workers = 2", "[apps.web] app: required"),
        ('app = "{app}"\nport = ', "not valid TOML"),
    ],
)
def test_a_bad_config_file_names_the_key_and_starts_nothing(pm: Pm, tmp_path: Path, body: str, message: str):
    config = _config(tmp_path, "[apps.web]\n" + body.format(app=APP) + "\n")
    result = pm("start", "--config", str(config))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert pm.clusters() == {} and not (pm.run_dir / "apps").exists()


def test_the_shipped_example_config_is_valid():
    from scalecube.appfile import load_apps
    from scalecube.pm import _serve_command

    [api] = load_apps(REPO / "scalecube.toml", _serve_command())
    assert api.name == "api" and api.target == "services.api.app:app" and api.cwd == str(REPO)
    assert "--port" in api.options


def test_a_foreground_cluster_is_found_by_its_name_too(pm: Pm):
    """`scalecube serve --name` in a terminal: reload, scale and stop reach it; restart and logs say why not."""
    cluster = ClusterProcess(APP, port=free_port(), workdir=pm.run_dir, workers=1, args=["--name", "fg"])
    try:
        cluster.wait_ready()
        first = cluster.listening_pids()
        assert REPLACED.search(ok(pm("reload", "fg")).stdout) and not (cluster.listening_pids() & first)
        ok(pm("scale", "fg", "2"))
        assert len(cluster.listening_pids()) == 2
        restart = pm("restart", "fg")
        assert restart.returncode == 1 and "not started with `scalecube start`" in restart.stderr
        logs = pm("logs", "fg")
        assert logs.returncode == 1 and "without --log-dir" in logs.stderr
        assert "stopped fg" in ok(pm("stop", str(cluster.port))).stdout
        assert cluster.wait(10) == 0  # a graceful stop, as with SIGTERM
    finally:
        cluster.stop()
