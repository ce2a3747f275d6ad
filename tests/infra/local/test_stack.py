"""`scalecube up / down / status`: the local stack as real processes (Redis, the api cluster, a supervisor)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis

from cluster import control
from infra.local.pids import ProcessRef
from infra.local.ports import free_port

from infra.local.processes import REPO  # the checkout the CLI runs from
CLI_TIMEOUT = 120  # `up -d` waits for the stack; `down` for the api to drain


class Stack:
    """One state dir and the `scalecube` commands run against it; remembers every pid it has seen."""

    def __init__(self, state_dir: Path, run_dir: Path) -> None:
        self.state_dir = state_dir
        self.port = free_port()
        # A private run dir: `status` must not pick up clusters other tests run meanwhile.
        self.env = {**os.environ, "SCALECUBE_RUN_DIR": str(run_dir)}
        self.seen: set[ProcessRef] = set()
        self.foreground: list[subprocess.Popen[bytes]] = []
        self.started: subprocess.CompletedProcess[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "scalecube", *args, "--state-dir", str(self.state_dir)],
                              cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)  # fmt: skip

    def up_args(self, workers: int) -> list[str]:
        return ["up", "--port", str(self.port), "--workers", str(workers)]

    def up_detached(self, workers: int = 1) -> subprocess.CompletedProcess[str]:
        result = self.cli(*self.up_args(workers), "-d")
        self.remember()
        return result

    def up_foreground(self, workers: int = 1) -> subprocess.Popen[bytes]:
        """`scalecube up` without -d: this process is the supervisor."""
        with open(self.foreground_output, "wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "scalecube", *self.up_args(workers), "--state-dir",
                                        str(self.state_dir)], cwd=REPO, env=self.env, stdout=out,
                                       stderr=subprocess.STDOUT)  # fmt: skip
        self.foreground.append(process)
        return process

    @property
    def foreground_output(self) -> Path:
        return self.state_dir.parent / "foreground.out"

    def output(self) -> str:
        return self.foreground_output.read_text(errors="replace")

    def state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def wait_ready(self, process: subprocess.Popen[bytes], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if state and state["phase"] == "ready" and state["supervisor"]["pid"] == process.pid:
                self.remember()
                return state
            if process.poll() is not None:
                raise AssertionError(f"`scalecube up` exited with {process.returncode}:\n{self.output()}")
            time.sleep(0.1)
        raise TimeoutError(f"the stack was not ready within {timeout}s:\n{self.output()}")

    def component(self, name: str) -> dict[str, Any]:
        state = self.state()
        assert state is not None, "no state file"
        return next(c for c in state["components"] if c["name"] == name)

    def remember(self) -> list[ProcessRef]:
        """Every process of the stack now: supervisor, components, the api's workers."""
        state = self.state()
        if state is None:
            return []
        refs = [ProcessRef(state["supervisor"]["pid"], state["supervisor"]["started"])]
        refs += [ProcessRef(c["pid"], c["started"]) for c in state["components"]]
        for c in state["components"]:
            if c.get("control"):
                try:
                    workers = control.request(c["control"], "status")["workers"]
                except (ConnectionError, OSError, ValueError):
                    continue
                refs += [ref for w in workers if (ref := ProcessRef.of(w["pid"])) is not None]
        self.seen.update(refs)
        return refs

    def teardown(self) -> None:
        """Whatever a test did or failed to do: `scalecube down`, then SIGKILL by pid what still runs."""
        self.cli("down", timeout=90)
        for process in self.foreground:
            if process.poll() is None:
                process.kill()
            process.wait(10)
        for ref in self.seen:
            ref.kill_tree()


def still_running(refs: list[ProcessRef]) -> list[ProcessRef]:
    return [ref for ref in refs if ref.alive()]


def processes_mentioning(path: Path) -> list[int]:
    """Pids whose command line names ``path`` (only to assert nothing was left behind; never to kill)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if any(str(path) in part for part in process.info["cmdline"] or []):
            found.append(process.info["pid"])
    return found


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    state_dir = tmp_path / "state"
    under_test = Stack(state_dir, tmp_path)
    yield under_test
    under_test.teardown()


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One detached stack, two api workers, shared by the tests that only look at it."""
    base = tmp_path_factory.mktemp("stack")
    shared = Stack(base / "state", base)
    try:
        shared.started = shared.up_detached(workers=2)
        assert shared.started.returncode == 0, shared.started.stdout + shared.started.stderr
        yield shared
    finally:
        shared.teardown()


# -- a detached stack ---------------------------------------------------------------------


def test_up_detached_prints_the_urls_and_the_api_answers(running_stack):
    state = running_stack.state()
    assert state is not None and state["phase"] == "ready"
    assert [c["name"] for c in state["components"]] == ["redis", "api"]
    printed = running_stack.started.stdout
    for url in (running_stack.url, running_stack.component("redis")["url"], str(running_stack.state_dir)):
        assert url in printed
    assert "scalecube down" in printed

    root = httpx.get(running_stack.url + "/", timeout=10)
    ready = httpx.get(running_stack.url + "/readyz", timeout=10)

    assert root.status_code == 200
    assert root.headers["x-served-by"].endswith(f"/{root.json()['pid']}")
    assert ready.status_code == 200 and ready.json()["checks"] == {"redis": True}


def test_sessions_are_kept_in_the_stacks_redis(running_stack):
    stack_redis = redis.Redis.from_url(running_stack.component("redis")["url"])
    with httpx.Client(base_url=running_stack.url, timeout=10) as client, stack_redis:
        login = client.post("/session/login", json={"user": "ada"})
        me = client.get("/session/me")
        # In the Redis the stack started, not some other one.
        sessions_kept = len(stack_redis.keys("scalecube:session:*"))
        assert client.post("/session/logout").status_code == 200
        after = client.get("/session/me")

    assert login.status_code == 200, login.text
    assert me.status_code == 200 and me.json()["user"] == "ada" and me.json()["backend"] == "redis"
    assert sessions_kept == 1
    assert after.status_code == 401


def test_status_json_shows_the_stack_and_the_api_workers(running_stack):
    result = running_stack.cli("status", "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    stack = report["stack"]
    state = running_stack.state()
    assert stack["supervisor"] == {"pid": state["supervisor"]["pid"], "alive": True}
    assert [(c["name"], c["pid"], c["alive"]) for c in stack["components"]] == [
        (c["name"], c["pid"], True) for c in state["components"]
    ]
    api = next(c for c in stack["components"] if c["name"] == "api")
    assert api["cluster"]["master"]["pid"] == api["pid"]
    assert len(api["cluster"]["workers"]) == 2
    assert all(psutil.Process(w["pid"]).ppid() == api["pid"] for w in api["cluster"]["workers"])
    assert report["clusters"] == []  # nothing else runs in this test's run dir

    text = running_stack.cli("status")
    assert "local stack" in text.stdout and "services.api.app:app" in text.stdout


def test_a_second_up_on_the_same_state_dir_is_refused(running_stack):
    owner = running_stack.state()["supervisor"]["pid"]
    other_port = free_port()

    result = running_stack.cli("up", "-d", "--port", str(other_port))

    assert result.returncode == 1
    assert f"a stack is already running (pid {owner})" in result.stderr
    assert "scalecube down first" in result.stderr
    assert "Traceback" not in result.stderr
    assert running_stack.state()["supervisor"]["pid"] == owner
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{other_port}/", timeout=2)


# -- stopping -------------------------------------------------------------------------------


def test_down_stops_every_process_and_removes_the_state_file(stack):
    assert stack.up_detached().returncode == 0
    processes = stack.remember()
    assert len(processes) == 4  # supervisor, redis, api master, one worker
    assert still_running(processes) == processes

    result = stack.cli("down")

    assert result.returncode == 0, result.stderr
    assert "stopped the stack" in result.stdout
    assert still_running(processes) == []
    assert not stack.state_file.exists()
    again = stack.cli("down")
    assert again.returncode == 0 and "no stack is running" in again.stdout


@pytest.mark.parametrize("option", ["--port", "--redis-port"])
@pytest.mark.parametrize("detach", [True, False], ids=["detached", "foreground"])
def test_a_taken_port_is_a_clear_error_and_nothing_is_left_running(stack, option, detach):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        args = ["up", "--port", str(stack.port), option, str(taken), *(["-d"] if detach else [])]

        result = stack.cli(*args)

    assert result.returncode == 2
    assert f"port {taken} on 127.0.0.1" in result.stderr and "already in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not stack.state_file.exists()
    assert processes_mentioning(stack.state_dir) == []


def test_a_component_that_cannot_start_is_reported_with_its_log_and_the_rest_is_stopped(stack):
    stack.env["SESSION_SECRET"] = "too-short"  # the api refuses to start with it

    result = stack.cli(*stack.up_args(workers=1))

    assert result.returncode == 1
    assert "api failed to start: exited (exit code 3) before the stack was ready" in result.stderr
    assert "SESSION_SECRET: must be at least 16 characters" in result.stderr  # from the api's log
    assert "Traceback" not in result.stderr.split("--- last lines")[0]
    assert not stack.state_file.exists()
    assert processes_mentioning(stack.state_dir) == []  # Redis, started first, was stopped


def test_foreground_up_stops_everything_on_ctrl_c(stack):
    process = stack.up_foreground()
    stack.wait_ready(process)
    processes = stack.remember()
    assert httpx.get(stack.url + "/readyz", timeout=10).status_code == 200

    process.send_signal(signal.SIGINT)

    assert process.wait(60) == 0
    output = stack.output()
    assert stack.url in output and "Ctrl-C to stop" in output
    assert "SIGINT received" in output and "stopped: api, redis" in output
    assert still_running(processes) == []
    assert not stack.state_file.exists()


def test_a_component_that_dies_takes_the_stack_down_loudly(stack):
    process = stack.up_foreground()
    stack.wait_ready(process)
    processes = stack.remember()
    redis_pid = stack.component("redis")["pid"]

    os.kill(redis_pid, signal.SIGKILL)

    assert process.wait(60) == 1
    output = stack.output()
    assert "redis exited unexpectedly (killed by SIGKILL)" in output
    assert "Ready to accept connections" in output  # the tail of Redis's log
    assert "stopped: api" in output
    assert still_running(processes) == []  # the api was stopped too: no half stack
    assert not stack.state_file.exists()


def test_a_stale_state_file_is_cleaned_up_with_what_it_left_running(stack):
    process = stack.up_foreground()
    stack.wait_ready(process)
    orphans = [ref for ref in stack.remember() if ref.pid != process.pid]
    process.kill()  # the supervisor dies without stopping anything
    process.wait(10)

    status = json.loads(stack.cli("status", "--json").stdout)["stack"]
    assert status["supervisor"]["alive"] is False
    result = stack.up_detached()

    assert result.returncode == 0, result.stderr
    assert still_running(orphans) == []  # killed by pid, after checking each is still the recorded process
    assert stack.state()["supervisor"]["pid"] != process.pid
    assert httpx.get(stack.url + "/readyz", timeout=10).status_code == 200
