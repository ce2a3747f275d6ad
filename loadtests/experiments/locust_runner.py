"""Run Locust headless as a subprocess and read back what it wrote, as one ``LoadResult``.

Locust is never imported here (it monkey-patches the process with gevent): it runs as
``python -m locust`` with ``--csv PREFIX --csv-full-history``, plus our plugin
(``locust_final.py``) for the final totals and errors, and ``SCALECUBE_SERVED_BY_FILE``
for who served the requests. Every run is bounded; a run that overstays is killed by pid.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import loadtests

LOCUSTFILE_ENV = "SCALECUBE_LOCUSTFILE"  # another locustfile with the same user classes (development)
FINAL_STATS_ENV = "SCALECUBE_FINAL_STATS_FILE"  # read by locust_final.py
SERVED_BY_ENV = "SCALECUBE_SERVED_BY_FILE"  # read by the locustfile: {"host/pid": count} at test stop
PLUGIN = Path(__file__).with_name("locust_final.py")
STARTUP_GRACE = 30.0  # Locust's own start and stop, on a busy 2-core machine
STOP_GRACE = 10.0  # after SIGTERM, before SIGKILL
AGGREGATED = "Aggregated"


class LocustError(RuntimeError):
    """Locust is missing, refused its arguments or crashed: the message says which and where its log is."""


def default_locustfile() -> Path:
    """``loadtests/locust/locustfile.py`` of the installed package (or ``$SCALECUBE_LOCUSTFILE``)."""
    override = os.environ.get(LOCUSTFILE_ENV)
    return Path(override) if override else Path(loadtests.__file__).resolve().parent / "locust" / "locustfile.py"


def check_locust(locustfile: Path | None = None) -> None:
    """Raise ``LocustError`` if Locust or the locustfile is missing (before any process is started)."""
    path = locustfile or default_locustfile()
    if not path.is_file():
        raise LocustError(f"the locustfile {path} does not exist (the load profiles of loadtests/locust/)")
    probe = subprocess.run(
        [sys.executable, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('locust') is None)"],
        capture_output=True,
    )
    if probe.returncode != 0:
        raise LocustError("locust is not installed: pip install 'scalecube[load]' (or locust>=2.30)")


@dataclass(frozen=True)
class LoadSpec:
    """One Locust run: which user class, how many users, for how long, against what."""

    user_class: str
    host: str
    users: int
    seconds: float
    tags: tuple[str, ...] = ()
    spawn_rate: float | None = None  # users started per second; None: all within the first second
    env: dict[str, str] = field(default_factory=dict)

    def argv(self, prefix: Path, locustfile: Path) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            f"{locustfile},{PLUGIN}",
            self.user_class,
            "--headless",
            "-u",
            str(self.users),
            "-r",
            f"{self.spawn_rate or self.users:g}",
            "-t",
            f"{max(1, round(self.seconds))}s",
            "--host",
            self.host,
            "--csv",
            str(prefix),
            "--csv-full-history",
            "--only-summary",
            "--stop-timeout",
            "2",
        ]
        if self.tags:
            argv += ["--tags", *self.tags]
        return argv


@dataclass(frozen=True)
class SeriesPoint:
    """One second of a run: throughput and failures in that second, Locust's rolling percentiles."""

    t: float  # seconds since the first sample
    users: int
    rps: float
    failures_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


@dataclass
class LoadResult:
    label: str
    requests: int = 0
    failures: int = 0
    seconds: float = 0.0  # first request to last
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    avg_ms: float | None = None
    failures_by_error: dict[str, int] = field(default_factory=dict)  # "lost session" -> 12
    requests_by_name: dict[str, int] = field(default_factory=dict)  # "/session/me" -> 900
    failures_by_name: dict[str, int] = field(default_factory=dict)  # "lost session" -> 12
    served_by: dict[str, int] = field(default_factory=dict)  # "host/pid" -> requests
    series: list[SeriesPoint] = field(default_factory=list)
    exit_code: int | None = None
    final: bool = True  # False: totals from the CSV snapshot (the last second may be missing)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @property
    def success_ratio(self) -> float:
        return 1.0 - self.failure_ratio if self.requests else 0.0

    def failures_named(self, name: str) -> int:
        """Failures reported under request name ``name``, or else with that error message."""
        return self.failures_by_name.get(name) or self.failures_by_error.get(name, 0)


# -- parsing what Locust wrote ------------------------------------------------------------------

_CATCH_RESPONSE = re.compile(r"^CatchResponseError\((['\"])(.*)\1\)$", re.S)


def error_text(error: str) -> str:
    """Locust's error cell -> the message: ``CatchResponseError('lost session')`` -> ``lost session``."""
    match = _CATCH_RESPONSE.match(error.strip())
    return match.group(2) if match else error.strip()


def _number(text: str | None) -> float | None:
    if text is None or text.strip() in ("", "N/A"):
        return None
    return float(text)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def parse_stats_csv(path: Path) -> dict[str, dict[str, float | None]]:
    """``PREFIX_stats.csv`` -> {name: {requests, failures, p50_ms, p95_ms, p99_ms, avg_ms}}; "Aggregated" is the total."""
    table: dict[str, dict[str, float | None]] = {}
    for row in _rows(path):
        table[row["Name"]] = {
            "requests": _number(row["Request Count"]),
            "failures": _number(row["Failure Count"]),
            "p50_ms": _number(row["50%"]),
            "p95_ms": _number(row["95%"]),
            "p99_ms": _number(row["99%"]),
            "avg_ms": _number(row["Average Response Time"]),
        }
    return table


def parse_history_csv(path: Path) -> list[SeriesPoint]:
    """``PREFIX_stats_history.csv`` -> one point per second of the whole run (the "Aggregated" rows).

    Throughput and failures per second come from the running totals (the difference to the
    previous row), exact where Locust's own Requests/s column is a 10-second average.
    """
    points: list[SeriesPoint] = []
    rows = [row for row in _rows(path) if row["Name"] == AGGREGATED]
    start = previous_time = None
    previous_requests = previous_failures = 0.0
    for row in rows:
        now = float(row["Timestamp"])
        requests = _number(row["Total Request Count"]) or 0.0
        failures = _number(row["Total Failure Count"]) or 0.0
        if start is None:
            start = previous_time = now
        span = now - previous_time if previous_time is not None and now > previous_time else 1.0
        users = int(_number(row["User Count"]) or 0)
        if points or requests:  # skip the empty sample before the first request
            p50, p95, p99 = (_number(row[column]) for column in ("50%", "95%", "99%"))
            if not p99:  # Locust writes 0 (or N/A) before its rolling window has data
                p50 = p95 = p99 = None
            points.append(
                SeriesPoint(
                    now - start,
                    users,
                    (requests - previous_requests) / span,
                    (failures - previous_failures) / span,
                    p50,
                    p95,
                    p99,
                )
            )
        previous_time, previous_requests, previous_failures = now, requests, failures
    return points


def parse_failures_csv(path: Path) -> dict[str, int]:
    """``PREFIX_failures.csv`` -> {error message: occurrences}, summed over request names."""
    counts: Counter[str] = Counter()
    for row in _rows(path):
        counts[error_text(row["Error"])] += int(row["Occurrences"])
    return dict(counts)


def parse_served_by(path: Path) -> dict[str, int]:
    """The locustfile's ``{"host/pid": count}`` JSON; {} if it wrote none."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8") or "{}")
    return {str(key): int(value) for key, value in data.items()}


def read_result(label: str, prefix: Path, exit_code: int | None = None) -> LoadResult:
    """Everything one run wrote under ``prefix`` -> a ``LoadResult``."""
    result = LoadResult(label, exit_code=exit_code)
    history = Path(f"{prefix}_stats_history.csv")
    if history.is_file():
        result.series = parse_history_csv(history)
    result.served_by = parse_served_by(Path(f"{prefix}_served_by.json"))
    final = Path(f"{prefix}_final.json")
    if final.is_file():
        data = json.loads(final.read_text(encoding="utf-8"))
        total = data["total"]
        result.requests, result.failures = int(total["requests"]), int(total["failures"])
        result.p50_ms, result.p95_ms, result.p99_ms = total["p50_ms"], total["p95_ms"], total["p99_ms"]
        result.avg_ms = total["avg_ms"] if total["requests"] else None
        if total["start_time"] and total["last_request_timestamp"]:
            result.seconds = max(0.0, total["last_request_timestamp"] - total["start_time"])
        result.requests_by_name = {e["name"]: int(e["requests"]) for e in data["entries"]}
        result.failures_by_name = {e["name"]: int(e["failures"]) for e in data["entries"] if e["failures"]}
        errors: Counter[str] = Counter()
        for error in data["errors"]:
            errors[error_text(error["error"])] += int(error["occurrences"])
        result.failures_by_error = dict(errors)
        return result
    # No final JSON (Locust was killed): the CSV snapshot, up to a second old.
    result.final = False
    stats = Path(f"{prefix}_stats.csv")
    if stats.is_file():
        table = parse_stats_csv(stats)
        total_row = table.pop(AGGREGATED, {})
        result.requests, result.failures = int(total_row.get("requests") or 0), int(total_row.get("failures") or 0)
        result.p50_ms, result.p95_ms, result.p99_ms = (total_row.get(k) for k in ("p50_ms", "p95_ms", "p99_ms"))
        result.avg_ms = total_row.get("avg_ms")
        result.requests_by_name = {name: int(row["requests"] or 0) for name, row in table.items()}
        result.failures_by_name = {name: int(row["failures"] or 0) for name, row in table.items() if row["failures"]}
        result.seconds = float(len(result.series))
    failures = Path(f"{prefix}_failures.csv")
    if failures.is_file():
        result.failures_by_error = parse_failures_csv(failures)
    return result


# -- running it ---------------------------------------------------------------------------------


class LocustProcess:
    """One Locust subprocess in its own session; ``stop()`` ends it (SIGTERM, then SIGKILL) by its pid."""

    def __init__(self, spec: LoadSpec, prefix: Path, locustfile: Path) -> None:
        self.spec = spec
        self.prefix = prefix
        self.log_path = Path(f"{prefix}_locust.log")
        env = {
            **os.environ,
            **spec.env,
            FINAL_STATS_ENV: f"{prefix}_final.json",
            SERVED_BY_ENV: f"{prefix}_served_by.json",
            "PYTHONUNBUFFERED": "1",
        }
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                spec.argv(prefix, locustfile),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def poll(self) -> int | None:
        return self.proc.poll()

    def terminate(self) -> None:
        """Locust's graceful stop: it writes its reports (and our final stats) and exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        self.terminate()
        try:
            return self.proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            self._kill_group()
            return self.proc.wait(5)

    def _kill_group(self) -> None:
        # Its own session: the group holds Locust and any --processes children it forked, nothing else.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def log_tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


ProgressCallback = Callable[[float], None]  # told the seconds elapsed


def run_load(
    spec: LoadSpec,
    workdir: Path,
    label: str,
    *,
    during: Callable[[], None] | None = None,
    end_after_during: float | None = None,
    progress: ProgressCallback | None = None,
    locustfile: Path | None = None,
) -> LoadResult:
    """Run Locust for ``spec`` (files ``workdir/<label>_*``) and return what it measured.

    ``during`` runs in this thread once Locust is sending (a reload, a rolling restart); with
    ``end_after_during`` the run ends that many seconds after it returns instead of at ``spec.seconds``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    prefix = workdir / safe_name(label)
    for stale in workdir.glob(f"{prefix.name}_*"):
        stale.unlink()
    locust = LocustProcess(spec, prefix, locustfile or default_locustfile())
    started = time.monotonic()
    deadline = started + spec.seconds + STARTUP_GRACE
    try:
        with _ticking(progress, started):
            if during is not None:
                _wait_for_first_sample(locust, prefix, deadline)
                during()
                if end_after_during is not None:
                    _sleep_while_running(locust, min(deadline, time.monotonic() + end_after_during))
                    locust.terminate()
            _sleep_while_running(locust, deadline)
        if locust.poll() is None:
            locust.stop()
            raise LocustError(
                f"Locust overran {spec.seconds:g}s by {STARTUP_GRACE:g}s and was stopped; "
                f"log: {locust.log_path}\n{locust.log_tail()}"
            )
    finally:
        code = locust.stop()
    result = read_result(label, prefix, code)
    if not Path(f"{prefix}_final.json").is_file() and not Path(f"{prefix}_stats.csv").is_file():
        raise LocustError(
            f"Locust exited with {code} and wrote no results; log: {locust.log_path}\n{locust.log_tail()}"
        )
    return result


def safe_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-").lower() or "run"


def _wait_for_first_sample(locust: LocustProcess, prefix: Path, deadline: float) -> None:
    """Until Locust's history shows requests (so ``during`` acts under load), or it ended, or the deadline."""
    history = Path(f"{prefix}_stats_history.csv")
    while locust.poll() is None and time.monotonic() < deadline:
        try:
            if any(point.requests > 0 for point in _history_totals(history)):
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)


@dataclass(frozen=True)
class _Total:
    requests: float


def _history_totals(path: Path) -> Iterator[_Total]:
    if not path.is_file():
        return
    for row in _rows(path):
        if row.get("Name") == AGGREGATED:
            yield _Total(_number(row.get("Total Request Count")) or 0.0)


def _sleep_while_running(locust: LocustProcess, until: float) -> None:
    while locust.poll() is None and time.monotonic() < until:
        time.sleep(0.1)


@contextmanager
def _ticking(progress: ProgressCallback | None, started: float) -> Iterator[None]:
    """Call ``progress(elapsed)`` from a thread ten times a second while the body runs."""
    if progress is None:
        yield
        return
    done = threading.Event()

    def tick() -> None:
        while not done.wait(0.1):
            progress(time.monotonic() - started)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def as_row(result: LoadResult) -> dict[str, Any]:
    """The summary of a run as flat values (CSV, JSON)."""
    return {
        "requests": result.requests,
        "failures": result.failures,
        "failure_pct": round(100 * result.failure_ratio, 3),
        "rps": round(result.rps, 2),
        "p50_ms": result.p50_ms,
        "p95_ms": result.p95_ms,
        "p99_ms": result.p99_ms,
        "seconds": round(result.seconds, 2),
        "workers_seen": len(result.served_by),
    }
