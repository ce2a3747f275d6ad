"""The suite's own scheduling (tests/support/parallel.py), tested on a suite of its own run in two real xdist
workers: the Docker tests and each module stay on one worker, and a ``load`` test runs alone while the
others run side by side."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from infra.paths import REPO

pytest_plugins = ["pytester"]

# Each test of the inner suite writes when it ran, on which worker, and which module fixture it saw.
RECORDER = """
import json, os, time
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def module_token():
    return os.getpid()


def record(name, seconds, token=None):
    start = time.time()
    time.sleep(seconds)
    row = {"name": name, "start": start, "end": time.time(), "worker": os.environ["PYTEST_XDIST_WORKER"],
           "token": token}
    with open(os.environ["RECORD_FILE"], "a") as file:
        file.write(json.dumps(row) + "\\n")
"""


def quick_module(name: str, tests: int, seconds: float) -> str:
    body = "from helpers import record, module_token  # noqa: F401\n"
    for index in range(tests):
        body += f"\n\ndef test_{name}_{index}(module_token):\n    record('{name}_{index}', {seconds}, module_token)\n"
    return body


@pytest.fixture
def inner_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> tuple[pytest.Pytester, Path]:
    record = pytester.path / "record.jsonl"
    monkeypatch.setenv("RECORD_FILE", str(record))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(pytester.path)]))
    pytester.makeini("[pytest]\nmarkers =\n    load: alone\n    slow: first\n    docker: set by the plugin\n")
    pytester.makepyfile(helpers=RECORDER)
    pytester.makepyfile(
        test_alpha=quick_module("alpha", tests=3, seconds=0.6),
        test_beta=quick_module("beta", tests=3, seconds=0.6),
        test_gamma=quick_module("gamma", tests=4, seconds=0.1),
        # slow, so it goes first on one worker while the Docker group starts on the other: unlocked, they overlap.
        test_load="from helpers import record\nimport pytest\n\n\n@pytest.mark.slow\n@pytest.mark.load\n"
        "def test_heavy():\n    record('heavy', 1.5)\n",
    )
    docker = pytester.path / "tests" / "infra" / "docker"  # no __init__.py: the repo's tests package stays importable
    docker.mkdir(parents=True)
    (docker / "test_stack.py").write_text(quick_module("docker", tests=3, seconds=0.6))
    return pytester, record


def run_inner(pytester: pytest.Pytester, record: Path) -> list[dict]:
    result = pytester.runpytest_subprocess("-n", "2", "--dist", "loadgroup", "-p", "tests.support.parallel", "-q")
    result.assert_outcomes(passed=14)
    return [json.loads(line) for line in record.read_text().splitlines()]


def overlaps(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def test_a_load_test_runs_alone_the_others_side_by_side_and_a_module_stays_on_one_worker(inner_suite) -> None:
    rows = run_inner(*inner_suite)
    heavy = next(row for row in rows if row["name"] == "heavy")
    assert not [row["name"] for row in rows if row is not heavy and overlaps(row, heavy)], rows
    others = [row for row in rows if row is not heavy]
    assert any(overlaps(a, b) for a in others for b in others if a["worker"] != b["worker"]), rows  # in parallel
    for group in ("alpha", "beta", "gamma", "docker"):
        mine = [row for row in rows if row["name"].startswith(group + "_")]
        assert len({row["worker"] for row in mine}) == 1, mine  # so its module fixture started once
        assert len({row["token"] for row in mine}) == 1, mine
    assert len({row["worker"] for row in rows}) == 2, rows  # both workers had work
