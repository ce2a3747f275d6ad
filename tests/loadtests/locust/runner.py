"""Locust as the tests run it: a subprocess (it monkey-patches with gevent, never in pytest's process),
headless, bounded in time, its statistics read back from its CSV files."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from infra.paths import REPO

LOCUSTFILE = REPO / "loadtests" / "locust" / "locustfile.py"
SHAPES = REPO / "loadtests" / "locust" / "shapes"
# Short waits: a few users make a few hundred requests in a few seconds, without hammering a 2-core box.
QUICK = {"SCALECUBE_WAIT_MIN": "0.01", "SCALECUBE_WAIT_MAX": "0.05"}


@dataclass
class LocustResult:
    code: int
    output: str
    csv_prefix: Path

    def stats(self) -> dict[str, dict[str, int]]:
        """Name -> ``{"requests": n, "failures": n}`` at the very end (``--json-file``; the CSV lags by up
        to a second), plus ``Aggregated``."""
        entries = json.loads(Path(f"{self.csv_prefix}.json").read_text())
        stats: dict[str, dict[str, int]] = {"Aggregated": {"requests": 0, "failures": 0}}
        for entry in entries:
            for name in (entry["name"], "Aggregated"):
                row = stats.setdefault(name, {"requests": 0, "failures": 0})
                row["requests"] += entry["num_requests"]
                row["failures"] += entry["num_failures"]
        return stats

    def requests(self, name: str) -> int:
        return self.stats().get(name, {}).get("requests", 0)

    def failures(self, name: str) -> int:
        return self.stats().get(name, {}).get("failures", 0)

    def names(self) -> set[str]:
        return set(self.stats()) - {"Aggregated"}

    def user_counts(self) -> list[int]:
        """The user count of each row of the full history (``--csv-full-history``), aggregated rows only."""
        with open(f"{self.csv_prefix}_stats_history.csv", newline="") as file:
            return [int(row["User Count"]) for row in csv.DictReader(file) if row["Name"] == "Aggregated"]

    def explain(self) -> str:
        return f"exit code {self.code}\n{self.output[-4000:]}"


def run_locust(
    workdir: Path,
    host: str,
    *args: str,
    classes: tuple[str, ...] = (),
    files: tuple[Path, ...] = (),
    env: dict[str, str] | None = None,
    run_time: str | None = "2s",
    users: int = 3,
    timeout: float = 40.0,
) -> LocustResult:
    """``locust -f locustfile[,files] --headless`` against ``host``, from ``workdir`` (not the repo:
    the locustfile must work from any directory), in its own process group, killed whole on timeout."""
    prefix = workdir / f"locust-{len(list(workdir.glob('locust-*.json')))}"
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        ",".join(str(f) for f in (LOCUSTFILE, *files)),
        "--headless",
        "--host",
        host,
        "-u",
        str(users),
        "-r",
        str(users * 5),
        "--csv",
        str(prefix),
        "--csv-full-history",
        "--only-summary",
        "--json-file",
        str(prefix),
        *(["--run-time", run_time] if run_time else []),
        *args,
    ]
    # Classes by environment: on the command line, `--tags a b ClassName` would read ClassName as a tag.
    env = {**QUICK, **(env or {}), "LOCUST_USER_CLASSES": " ".join(classes)}
    proc = subprocess.Popen(
        argv,
        cwd=workdir,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group we started: Locust and any --processes children
        output, _ = proc.communicate()
        raise AssertionError(f"locust still running after {timeout}s:\n{output[-4000:]}") from None
    return LocustResult(proc.returncode, output, prefix)
