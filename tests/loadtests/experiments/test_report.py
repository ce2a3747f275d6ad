"""The report of a demo made of real runs: the table, the CSV files, the self-contained HTML, the index."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from rich.console import Console

from loadtests.experiments import claims, report
from loadtests.experiments.locust_runner import LoadResult
from loadtests.experiments.results import DemoReport, Phase


def make_report(cpu_run: tuple[LoadResult, Path], refused: tuple[LoadResult, Path]) -> DemoReport:
    ok, failing = cpu_run[0], refused[0]
    first = next(iter(ok.served_by))
    demo = DemoReport(
        "example",
        "An example",
        "what the guides say",
        {"users": 3},
        phases=[
            Phase("cluster", ok, note="2 workers", replica_of={first: "127.0.0.2"}),
            Phase("nobody", failing, note="refused"),
            Phase("containers", note="skipped: needs --docker"),
        ],
    )
    demo.claims = [
        claims.no_failures("0 failed", ok.requests, ok.failures),
        claims.no_failures("0 failed either", failing.requests, failing.failures),
        claims.skipped("containers restart", "needs --docker"),
    ]
    return demo


def test_the_table_shows_phases_claims_and_failures(cpu_run, refused) -> None:  # type: ignore[no-untyped-def]
    demo = make_report(cpu_run, refused)
    console = Console(record=True, width=200)
    report.render_table(demo, console)
    text = console.export_text()
    for expected in ("cluster", "nobody", "skipped: needs --docker", "HOLDS", "FAILS", "SKIPPED", "failures in nobody"):
        assert expected in text
    assert f"{cpu_run[0].requests:,}" in text
    assert demo.exit_code == 1


def test_csv_files_one_row_per_phase_second_worker_and_claim(cpu_run, refused, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    demo = make_report(cpu_run, refused)
    phases, series, served, claim_rows = (list(csv.DictReader(open(p))) for p in report.write_csv(demo, tmp_path))
    assert [row["phase"] for row in phases] == ["cluster", "nobody", "containers"]
    assert int(phases[0]["requests"]) == cpu_run[0].requests and phases[2]["requests"] == ""
    assert float(phases[1]["failure_pct"]) == 100.0
    assert {row["phase"] for row in series} <= {"cluster", "nobody"} and len(series) >= len(cpu_run[0].series)
    assert sum(int(row["requests"]) for row in served if row["phase"] == "cluster") == cpu_run[0].requests
    assert "127.0.0.2" in {row["replica"] for row in served}
    assert [row["verdict"] for row in claim_rows] == ["holds", "fails", "skipped"]


def test_html_is_self_contained_with_every_chart(cpu_run, refused, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    demo = make_report(cpu_run, refused)
    html = report.write_html(demo, tmp_path).read_text()
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"(src|href)=\"?https?:", html)  # nothing to fetch
    # throughput + failures/s; p50/p95/p99 for each of the 2 phases run; per-worker and per-container bars for each.
    assert html.count("<svg") == 2 + 2 + 2 * 2
    assert "requests/s, per phase" in html and "cluster: per worker" in html and "cluster: per container" in html
    assert html.count('class="series"') >= 1  # lines drawn, not just axes (2 s runs: few points)
    assert "FAILS" in html and "skipped: needs --docker" in html


def test_html_links_the_live_views_only_where_a_stack_gave_them(cpu_run, refused, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    demo = make_report(cpu_run, refused)
    assert "live while the stack runs" not in report.render_html(demo)
    demo.live = {
        "console": "http://127.0.0.1:8090/#charts-panel",
        "Prometheus": "http://127.0.0.1:9090/graph?g0.expr=up",
    }
    html = report.render_html(demo)
    assert "live while the stack runs" in html
    assert "<a href='http://127.0.0.1:8090/#charts-panel'>console</a>" in html
    assert "<a href='http://127.0.0.1:9090/graph?g0.expr=up'>Prometheus</a>" in html


def test_index_links_each_report(cpu_run, refused, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    demo = make_report(cpu_run, refused)
    html = report.write_html(demo, tmp_path / "example")
    index = report.write_index([(demo, html)], tmp_path).read_text()
    assert "href='example/report.html'" in index and "FAILS" in index and "0 failed either" in index


def test_per_container_uses_the_replica_map_else_the_host(cpu_run) -> None:  # type: ignore[no-untyped-def]
    result = cpu_run[0]
    first, *others = sorted(result.served_by)
    phase = Phase("p", result, replica_of={first: "127.0.0.2"})
    containers = dict(phase.per_container())
    assert containers["127.0.0.2"] == result.served_by[first]
    assert sum(containers.values()) == result.requests
    if others:
        assert others[0].rsplit("/", 1)[0] in containers


def test_demo_all_summary_shows_each_demo_s_exit_code_and_why() -> None:
    from loadtests.experiments.run import summary

    held = DemoReport(
        "cloning", "Cloning", "", claims=[claims.no_failures("0 failed", 10, 0), claims.skipped("ratio", "--smoke")]
    )
    failed = DemoReport("reload", "Reload", "", claims=[claims.no_failures("0 failed", 10, 2)])
    nothing = DemoReport("sessions", "Sessions", "", claims=[claims.skipped("memory loses", "--target")])
    refused = DemoReport("splitting", "Splitting", "", refused="--docker: the stack runs no router")
    assert [r.exit_code for r in (held, failed, nothing, refused)] == [0, 1, 2, 2]
    console = Console(width=200, record=True)
    summary([held, failed, nothing, refused], console)
    text = console.export_text()
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines() if line.count("│") > 3]
    rows = {row[0]: row[1:] for row in cells}  # holds, fails, not judged, skipped, exit, outcome
    assert rows["cloning"] == ["1", "0", "0", "1", "0", "every judged claim holds"]
    assert rows["reload"] == ["0", "1", "0", "0", "1", "1 claim(s) failed"]
    assert rows["sessions"][4] == "2" and rows["sessions"][5].startswith("no claim judged")
    assert rows["splitting"][4:] == ["2", "refused: --docker: the stack runs no router"]
