"""`scalecube locust`'s web UI against the local stack, driven through Locust's own HTTP API (as its page does):
every class, in one swarm, with 0 failures; and against a stack that lacks parts, only the classes it can serve.

The full stack here is `scalecube up`'s default: the api alone on its port, auth and the router on ports of
their own (no balancer routes them): the users find them through the stack's state file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.ports import free_port
from infra.paths import REPO
from tests.support.locust_web import ALL_CLASSES, LocustWeb

pytestmark = pytest.mark.slow

SWARM_SECONDS = 15
QUICK = {"SCALECUBE_WAIT_MIN": "0.05", "SCALECUBE_WAIT_MAX": "0.2"}


def scalecube(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scalecube", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def full_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """`scalecube up -d` (every service, no balancer, one worker each) on ports of its own; `down` after."""
    base = tmp_path_factory.mktemp("full")
    state_dir, port = base / "state", free_port()
    env = {**os.environ, "SCALECUBE_RUN_DIR": str(base)}  # a private run dir: `status` sees only this stack
    try:
        started = scalecube(
            "up",
            "-d",
            "--services",
            "all",
            "--workers",
            "1",
            "--port",
            str(port),
            "--state-dir",
            str(state_dir),
            env=env,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        yield f"http://127.0.0.1:{port}", state_dir, env
    finally:
        scalecube("down", "--state-dir", str(state_dir), env=env, timeout=120)


class WebUI:
    """`scalecube locust` (web UI) in its own process group; stopped by its pid at the end."""

    def __init__(self, host: str, state_dir: Path, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.log = workdir / f"locust-{self.port}.log"
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "scalecube",
                    "locust",
                    "--host",
                    host,
                    "--web-port",
                    str(self.port),
                    "--state-dir",
                    str(state_dir),
                ],
                cwd=workdir,
                env={**env, **QUICK},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.web = LocustWeb(f"http://127.0.0.1:{self.port}")

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        self.web.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # Locust quits cleanly on SIGTERM
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)  # the group this test started
                self.process.wait(10)


@pytest.fixture
def web_ui(tmp_path: Path) -> Iterator:
    started: list[WebUI] = []

    def start(host: str, state_dir: Path, env: dict[str, str]) -> WebUI:
        ui = WebUI(host, state_dir, env, tmp_path)
        started.append(ui)
        try:
            ui.web.wait_ready(timeout=90)
        except AssertionError:
            raise AssertionError(ui.output()[-3000:]) from None
        return ui

    yield start
    for ui in started:
        ui.stop()


@pytest.mark.load
def test_every_class_in_one_swarm_with_no_failure(full_stack, web_ui):
    host, state_dir, env = full_stack
    ui = web_ui(host, state_dir, env)

    swarm = ui.web.swarm(ALL_CLASSES, users=10, seconds=SWARM_SECONDS)

    assert swarm.started["user_classes"] == sorted(ALL_CLASSES), swarm.explain()  # all five offered, all five ran
    assert swarm.classes == set(ALL_CLASSES), swarm.explain()
    assert swarm.failures == 0, swarm.explain()
    assert swarm.silent(ALL_CLASSES) == {}, swarm.explain()  # every class's endpoints got requests
    # The lone api routes neither auth nor the router: the users were told where they answer.
    assert "the local stack's" in ui.output() and "auth at http://" in ui.output(), ui.output()[-2000:]


@pytest.mark.load
def test_headless_default_mix_exits_0_against_the_local_stack(full_stack, tmp_path):
    host, state_dir, env = full_stack
    done = scalecube(
        "locust",
        "--host",
        host,
        "--state-dir",
        str(state_dir),
        "--headless",
        "-u",
        "6",
        "-r",
        "6",
        "-t",
        "8s",
        "--csv",
        str(tmp_path / "run"),
        env={**env, **QUICK},
        timeout=90,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "not offered" not in done.stderr


@pytest.mark.load
def test_without_auth_and_router_only_the_classes_the_api_serves_are_offered(api_redis_sessions, web_ui, tmp_path):
    # A lone api with no auth and no router anywhere (no local stack in this state dir): CloningUser and
    # SessionUser (a name is enough to log in) are offered and work; the other three are not offered.
    env = {**os.environ}
    ui = web_ui(api_redis_sessions.url, tmp_path / "no-stack", env)

    swarm = ui.web.swarm(ALL_CLASSES, users=4, seconds=6)

    assert swarm.started["user_classes"] == ["CloningUser", "SessionUser"], swarm.explain()
    assert swarm.failures == 0, swarm.explain()
    assert swarm.silent(("CloningUser", "SessionUser")) == {}, swarm.explain()
    log = ui.output()
    assert "not offered: SplittingUser, AuthUser, MixedUser" in log, log[-2000:]
    assert "SplittingUser needs the shard router" in log, log[-2000:]  # Locust's own log (the UI's Logs tab)


def test_a_class_asked_for_by_name_that_the_target_cannot_serve_is_refused_saying_why(api_redis_sessions, tmp_path):
    done = scalecube(
        "locust",
        "--host",
        api_redis_sessions.url,
        "--state-dir",
        str(tmp_path),
        "--headless",
        "--class",
        "SplittingUser",
        env=dict(os.environ),
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "SplittingUser needs the shard router" in done.stderr and "answered 404" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_user_started_anyway_reports_why_and_stops(api_redis_sessions, tmp_path):
    # Plain locust (no `scalecube locust` check), the class named: each user reports the refusal and stops.
    from tests.loadtests.locust.runner import run_locust

    result = run_locust(tmp_path, api_redis_sessions.url, classes=("AuthUser",), users=2, run_time="2s")
    assert result.code == 1, result.explain()
    assert result.names() == {"AuthUser cannot run here"}, result.explain()
    assert "needs the auth service" in result.output, result.explain()
