"""Judging, without processes: each claim's verdict at, above and below its threshold."""

from __future__ import annotations

import pytest

from loadtests.experiments import claims
from loadtests.experiments.claims import Verdict


def test_ratio_holds_at_the_threshold_and_fails_below() -> None:
    held = claims.ratio_at_least("x", 160.0, 100.0, 1.6, what="cluster", baseline_what="one process")
    assert held.verdict is Verdict.HOLDS and held.measured == pytest.approx(1.6) and held.holds
    assert "1.60×" in held.text and "160.0 req/s" in held.text
    failed = claims.ratio_at_least("x", 159.0, 100.0, 1.6, what="cluster", baseline_what="one process")
    assert failed.verdict is Verdict.FAILS and not failed.holds and failed.judged


def test_ratio_without_throughput_fails_instead_of_dividing_by_zero() -> None:
    claim = claims.ratio_at_least("x", 50.0, 0.0, 1.6, what="cluster", baseline_what="one process")
    assert claim.verdict is Verdict.FAILS and claim.measured is None


def test_a_performance_target_under_smoke_is_reported_not_judged() -> None:
    claim = claims.ratio_at_least("x", 10.0, 100.0, 1.6, what="a", baseline_what="b", judge=False, why_not="--smoke")
    assert claim.verdict is Verdict.NOT_JUDGED and not claim.judged and "not judged: --smoke" in claim.text
    assert claim.measured == pytest.approx(0.1)  # still measured and shown


def test_success_percentage() -> None:
    assert claims.success_at_least("s", 1800, 18, 99.0).verdict is Verdict.HOLDS  # exactly 99 %
    claim = claims.success_at_least("s", 1800, 19, 99.0)
    assert claim.verdict is Verdict.FAILS and claim.measured == pytest.approx(98.944, abs=1e-3)
    assert claims.success_at_least("s", 0, 0, 99.0).verdict is Verdict.FAILS  # nothing measured


def test_no_failures_needs_requests_and_zero_failures() -> None:
    assert claims.no_failures("z", 500, 0).verdict is Verdict.HOLDS
    assert claims.no_failures("z", 500, 1).verdict is Verdict.FAILS
    assert claims.no_failures("z", 0, 0).verdict is Verdict.FAILS


def test_sessions_lost_and_kept() -> None:
    lost = claims.loses_sessions("m", 200, 150)
    assert lost.verdict is Verdict.HOLDS and lost.measured == pytest.approx(75.0) and "75.0% lost" in lost.text
    assert claims.loses_sessions("m", 200, 0).verdict is Verdict.FAILS
    assert claims.loses_no_sessions("r", 200, 0).verdict is Verdict.HOLDS
    assert claims.loses_no_sessions("r", 200, 1).verdict is Verdict.FAILS
    assert claims.loses_no_sessions("r", 0, 0).verdict is Verdict.FAILS


def test_exit_code_counts_only_judged_failures() -> None:
    held = claims.no_failures("a", 10, 0)
    shown = claims.no_failures("b", 10, 3, judge=False, why_not="shown")
    skipped = claims.skipped("c", "needs local processes")
    assert claims.exit_code([held, shown, skipped]) == 0
    assert claims.exit_code([held, claims.no_failures("d", 10, 1)]) == 1
    assert claims.exit_code([shown, claims.no_failures("d", 10, 1)]) == 1
    assert skipped.verdict is Verdict.SKIPPED and skipped.measured is None and not skipped.judged


def test_a_demo_that_judged_nothing_does_not_pass() -> None:
    shown = claims.no_failures("b", 10, 3, judge=False, why_not="shown")
    skipped = claims.skipped("c", "needs local processes")
    assert claims.exit_code([shown, skipped]) == claims.NOTHING_JUDGED == 2
    assert claims.exit_code([]) == 2


def test_every_one_serves() -> None:
    held = claims.every_one_serves("all", ["api-1", "api-2", "api-2", "api-3"], 3, "containers", 40)
    assert held.verdict is Verdict.HOLDS and held.measured == 3 and "3 of 3 containers" in held.text
    short = claims.every_one_serves("all", ["api-1", "api-2"], 3, "containers", 40)
    assert short.verdict is Verdict.FAILS and "2 of 3" in short.text
    assert claims.every_one_serves("all", [], 3, "containers", 0).verdict is Verdict.FAILS
