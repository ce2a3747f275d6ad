"""Pass/fail for headless runs (CI): thresholds on the failure ratio and the percentiles.

``--max-fail-ratio R`` (0..1; unset = off), ``--max-p95-ms MS``, ``--max-p99-ms MS`` (0 = off),
over all requests. At quit, each broken threshold is logged on one line and the exit code
is 3; when thresholds are set and all hold, it is 0 (even with failures under the allowed
ratio). Without thresholds Locust's own rule stands (1 when anything failed).
Importing this module registers the options and the check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

log = logging.getLogger("scalecube.locust.thresholds")

EXIT_THRESHOLD_BROKEN = 3


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    # On the parser itself (not a group), so the web UI shows them too. Broken at quit: exit code 3.
    parser.add_argument(
        "--max-fail-ratio",
        type=float,
        default=None,
        metavar="RATIO",
        env_var="LOCUST_MAX_FAIL_RATIO",
        help="scalecube threshold: the most failures allowed, as a share of all requests "
        "(0..1; 0 = none at all; unset = off). Broken at quit: exit code 3",
    )
    parser.add_argument(
        "--max-p95-ms",
        type=float,
        default=0.0,
        metavar="MS",
        env_var="LOCUST_MAX_P95_MS",
        help="scalecube threshold: the highest 95th percentile response time allowed, "
        "over all requests, in ms (0 = off). Broken at quit: exit code 3",
    )
    parser.add_argument(
        "--max-p99-ms",
        type=float,
        default=0.0,
        metavar="MS",
        env_var="LOCUST_MAX_P99_MS",
        help="scalecube threshold: the highest 99th percentile response time allowed, "
        "over all requests, in ms (0 = off). Broken at quit: exit code 3",
    )


@dataclass(frozen=True)
class Thresholds:
    max_fail_ratio: float | None
    max_p95_ms: float
    max_p99_ms: float

    @classmethod
    def from_options(cls, options: Any) -> Thresholds:
        # Values typed in the web UI arrive as strings: read both.
        return cls(
            max_fail_ratio=_number(getattr(options, "max_fail_ratio", None)),
            max_p95_ms=_number(getattr(options, "max_p95_ms", None)) or 0.0,
            max_p99_ms=_number(getattr(options, "max_p99_ms", None)) or 0.0,
        )

    @property
    def any(self) -> bool:
        return self.max_fail_ratio is not None or self.max_p95_ms > 0 or self.max_p99_ms > 0

    def broken(self, total: Any) -> list[str]:
        """One line per broken threshold, for the statistics ``total`` (a locust ``StatsEntry``)."""
        if not self.any:
            return []
        if total.num_requests == 0:
            return ["no requests were made: nothing to judge the thresholds on"]
        reasons = []
        if self.max_fail_ratio is not None and total.fail_ratio > self.max_fail_ratio:
            reasons.append(
                f"failure ratio {total.fail_ratio:.4f} ({total.num_failures} of {total.num_requests}) "
                f"> --max-fail-ratio {self.max_fail_ratio:g}"
            )
        for percent, limit in ((0.95, self.max_p95_ms), (0.99, self.max_p99_ms)):
            observed = total.get_response_time_percentile(percent)
            if limit > 0 and observed > limit:
                reasons.append(f"p{round(percent * 100)} {observed:g} ms > --max-p{round(percent * 100)}-ms {limit:g}")
        return reasons


def _number(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return float(value)


@events.init.add_listener
def _validate(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    if options is None:
        return
    try:
        thresholds = Thresholds.from_options(options)
    except ValueError as exc:
        raise SystemExit(f"thresholds: not a number ({exc})") from None
    if thresholds.max_fail_ratio is not None and not 0 <= thresholds.max_fail_ratio <= 1:
        raise SystemExit(f"--max-fail-ratio must be between 0 and 1, got {thresholds.max_fail_ratio:g}")
    if thresholds.max_p95_ms < 0 or thresholds.max_p99_ms < 0:
        raise SystemExit("--max-p95-ms and --max-p99-ms must not be negative (0 = off)")


@events.quitting.add_listener
def _judge(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner) or environment.parsed_options is None:
        return  # the master (or the single process) judges the whole run
    try:
        thresholds = Thresholds.from_options(environment.parsed_options)
    except ValueError:
        return  # refused at init already
    if not thresholds.any:
        return
    reasons = thresholds.broken(environment.stats.total)
    for reason in reasons:
        log.error("threshold broken: %s", reason)
    if not reasons:
        log.info("thresholds hold")
    environment.process_exit_code = EXIT_THRESHOLD_BROKEN if reasons else 0
