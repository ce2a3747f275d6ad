"""Locust as a subprocess, and the parsers of what it writes — on the files of real runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.local.processes import ClusterProcess
from loadtests.experiments.locust_runner import (
    AGGREGATED,
    LoadResult,
    LoadSpec,
    LocustError,
    check_locust,
    error_text,
    parse_failures_csv,
    parse_history_csv,
    parse_served_by,
    parse_stats_csv,
    read_result,
)


def test_a_real_run_is_read_back_whole(cpu_run: tuple[LoadResult, Path], api_cluster: ClusterProcess) -> None:
    result, _ = cpu_run
    assert result.final, "the final stats (our Locust plugin) were written"
    assert result.requests > 20 and result.failures == 0 and result.exit_code == 0
    assert result.requests_by_name == {"/cpu": result.requests}
    assert 0.5 < result.seconds < 4 and result.rps == pytest.approx(result.requests / result.seconds)
    assert result.p50_ms is not None and result.p50_ms <= result.p95_ms <= result.p99_ms  # type: ignore[operator]
    # Who served: both workers of the cluster, and nothing else; the counts add up to the requests.
    pids = {int(key.rsplit("/", 1)[1]) for key in result.served_by}
    assert pids == api_cluster.listening_pids()
    assert sum(result.served_by.values()) == result.requests


def test_stats_csv_is_a_snapshot_the_final_stats_complete(cpu_run: tuple[LoadResult, Path]) -> None:
    result, prefix = cpu_run
    table = parse_stats_csv(Path(f"{prefix}_stats.csv"))
    assert set(table) == {"/cpu", AGGREGATED}
    # Locust rewrites the CSV once a second: it may miss the last second, never count more.
    assert 0 < (table[AGGREGATED]["requests"] or 0) <= result.requests
    assert table[AGGREGATED]["failures"] == 0


def test_history_gives_one_point_per_second_with_throughput(cpu_run: tuple[LoadResult, Path]) -> None:
    result, prefix = cpu_run
    series = parse_history_csv(Path(f"{prefix}_stats_history.csv"))
    assert series == result.series and len(series) >= 1
    assert [p.t for p in series] == sorted(p.t for p in series)
    assert all(p.rps >= 0 and p.failures_per_s == 0 and p.users <= 3 for p in series)
    # Per-second throughput is the difference of Locust's running totals: it sums to its last total.
    rows = list(Path(f"{prefix}_stats_history.csv").read_text().splitlines())
    last_total = int([r for r in rows if f",{AGGREGATED}," in r][-1].split(",")[17])
    assert sum(p.rps * (1.0 if i == 0 else p.t - series[i - 1].t) for i, p in enumerate(series)) == pytest.approx(
        last_total
    )


def test_failures_are_counted_by_error(refused: tuple[LoadResult, Path]) -> None:
    refused_run, _ = refused
    assert refused_run.requests > 0 and refused_run.failures == refused_run.requests
    assert refused_run.success_ratio == 0.0 and refused_run.failure_ratio == 1.0
    assert refused_run.exit_code == 1  # Locust's own verdict on a run with failures
    assert sum(refused_run.failures_by_error.values()) == refused_run.failures
    assert any("refused" in error.lower() for error in refused_run.failures_by_error)
    assert refused_run.failures_by_name == {"/": refused_run.failures}


def test_failures_csv_of_a_real_run_parses(refused: tuple[LoadResult, Path]) -> None:
    result, prefix = refused
    counts = parse_failures_csv(Path(f"{prefix}_failures.csv"))
    assert counts and set(counts) <= set(result.failures_by_error) and sum(counts.values()) <= result.failures


def test_without_final_stats_the_csv_snapshot_is_used(cpu_run: tuple[LoadResult, Path], tmp_path: Path) -> None:
    result, prefix = cpu_run
    copy = tmp_path / "copy"
    for suffix in ("_stats.csv", "_stats_history.csv", "_failures.csv", "_served_by.json"):
        Path(f"{copy}{suffix}").write_bytes(Path(f"{prefix}{suffix}").read_bytes())
    snapshot = read_result("copy", copy)
    assert not snapshot.final
    assert 0 < snapshot.requests <= result.requests and snapshot.served_by == result.served_by


def test_error_text_unwraps_locust_failures() -> None:
    assert error_text("CatchResponseError('lost session')") == "lost session"
    assert error_text('CatchResponseError("it\'s gone")') == "it's gone"
    assert (
        error_text("ConnectionRefusedError(111, 'Connection refused')")
        == "ConnectionRefusedError(111, 'Connection refused')"
    )


def test_served_by_missing_file_is_empty(tmp_path: Path) -> None:
    assert parse_served_by(tmp_path / "none.json") == {}
    (tmp_path / "s.json").write_text(json.dumps({"vm/12": 3}))
    assert parse_served_by(tmp_path / "s.json") == {"vm/12": 3}


def test_argv_is_headless_bounded_and_has_our_plugin(tmp_path: Path) -> None:
    argv = LoadSpec("SessionUser", "http://127.0.0.1:1", users=5, seconds=2.4, tags=("me",)).argv(
        tmp_path / "x", Path("lf.py")
    )
    assert argv[argv.index("-f") + 1].startswith("lf.py,") and argv[argv.index("-f") + 1].endswith("locust_final.py")
    for flag, value in (("-u", "5"), ("-r", "5"), ("-t", "2s"), ("--csv", str(tmp_path / "x")), ("--tags", "me")):
        assert argv[argv.index(flag) + 1] == value
    assert {"--headless", "--csv-full-history", "--only-summary", "SessionUser"} <= set(argv)


def test_a_missing_locustfile_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LocustError, match="does not exist"):
        check_locust(tmp_path / "nope.py")
    check_locust()  # the project's own locustfile is there
