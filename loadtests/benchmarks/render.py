"""Benchmark reports as terminal tables."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from loadtests.benchmarks.balancers import BalancerReport
from loadtests.benchmarks.foundation import FoundationReport


def render_foundation(report: FoundationReport, console: Console | None = None) -> None:
    console = console or Console()
    spread = Table(title=f"connection spread over 2 workers ({report.cpus} CPU(s) available)", title_justify="left")
    for column in ("policy", "clients", "per worker", "max - min", "busiest share"):
        spread.add_column(column)
    for policy, runs in report.spread.items():
        for clients, row in runs.items():
            spread.add_row(
                policy,
                clients,
                " / ".join(map(str, row["per_worker"])),
                str(row["max_minus_min"]),
                f"{row['busiest_share']:.1%}",
            )
    console.print(spread)

    reload = Table(title="rolling reload (SIGUSR2) of 2 workers under load", title_justify="left")
    for column in ("clients", "driver", "requests", "failed"):
        reload.add_column(column)
    for row in report.reload.values():
        reload.add_row(row["clients"], row["driver"], str(row["requests"]), str(row["failed"]))
    console.print(reload)

    cpu = Table(title=f"/cpu throughput — ratio {report.cpu_scaling['ratio']}×", title_justify="left")
    for column in ("workers", "requests/s", "p50 ms", "p99 ms", "errors", "driver"):
        cpu.add_column(column)
    for name, row in report.cpu_scaling["rows"].items():
        cpu.add_row(
            name, f"{row['rps']:.0f}", f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}", str(row["errors"]), row["driver"]
        )
    console.print(cpu)


def render_balancers(report: BalancerReport, console: Console | None = None) -> None:
    console = console or Console()
    title = (
        f"{report.replicas} replicas × {report.workers_per_replica} worker(s), {report.connections} connections, "
        f"{report.rounds} interleaved rounds of {report.seconds:g}s — load: {report.driver}"
    )
    table = Table(title=title, title_justify="left")
    for column in (
        "target",
        "requests/s (median)",
        "p50 ms",
        "p99 ms",
        "errors",
        "per round",
        "p50 ms @1 conn",
        "added p50 ms",
    ):
        table.add_column(column)
    for target, row in report.throughput.items():
        light = report.latency[target]
        added = report.added_p50_ms.get(target)
        table.add_row(
            target,
            f"{row['rps']:.0f}",
            f"{row['p50_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            str(row["errors"]),
            " / ".join(f"{r:.0f}" for r in row["runs"]),
            f"{light['p50_ms']:.2f}",
            "—" if added is None else f"{added:+.2f}",
        )
    console.print(table)
    console.print(
        f"Python balancer / HAProxy throughput: [bold]{report.ratio_python_to_haproxy}×[/] (target ≥ 0.9×); "
        f"added p50 at one connection: HAProxy {report.added_p50_ms.get('haproxy')} ms, "
        f"Python {report.added_p50_ms.get('python')} ms (target ≤ 1 ms)"
    )
