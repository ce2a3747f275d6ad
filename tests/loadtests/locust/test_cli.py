"""``scalecube locust``: checks the target, then becomes Locust (exec) with the options it was given."""

from __future__ import annotations

import json
import subprocess
import sys

from infra.local.ports import free_port
from infra.paths import REPO
from loadtests.locust_cli import USER_CLASSES
from tests.loadtests.locust.runner import LOCUSTFILE


def scalecube_locust(*args: str, cwd=REPO, timeout: float = 40) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scalecube.cli", "locust", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_host_that_does_not_answer_is_named_and_exits_1():
    result = scalecube_locust("--host", f"http://127.0.0.1:{free_port()}", "--headless")
    assert result.returncode == 1
    assert "nothing healthy at http://127.0.0.1:" in result.stderr and "--no-check" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_class_and_shape_are_refused_before_locust_starts():
    result = scalecube_locust("--class", "CloningUser,NoSuchUser", "--no-check")
    assert result.returncode == 2 and "unknown user class NoSuchUser" in result.stderr
    result = scalecube_locust("--shape", "spiral", "--no-check")
    assert result.returncode == 2 and "step, ramp" in result.stderr


def test_the_classes_it_knows_are_the_locustfile_s():
    listed = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--list"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert {line.strip() for line in listed.stdout.splitlines() if line.startswith("    ")} == set(USER_CLASSES)


def test_headless_run_passes_classes_tags_knobs_and_thresholds_to_locust(api_redis_sessions, tmp_path):
    # --cpu-iterations above the api's limit makes every /cpu a 422: the knob reached the users,
    # --tags cpu kept only that task, and --max-fail-ratio 0 turned the failures into exit code 3.
    served_by = tmp_path / "served.json"
    result = scalecube_locust(
        "--host",
        api_redis_sessions.url,
        "--headless",
        "-u",
        "2",
        "-r",
        "10",
        "-t",
        "2s",
        "--class",
        "CloningUser",
        "--tags",
        "cpu",
        "--cpu-iterations",
        "999999999",
        "--max-fail-ratio",
        "0",
        "--served-by-file",
        str(served_by),
        "--csv",
        str(tmp_path / "run"),
        cwd=tmp_path,
    )
    assert result.returncode == 3, result.stderr[-3000:]
    assert "threshold broken: failure ratio 1.0000" in result.stderr
    assert "/cpu" in json.loads((tmp_path / "served.by-name.json").read_text())
    assert (tmp_path / "run_stats_history.csv").exists()  # --csv comes with the full history
