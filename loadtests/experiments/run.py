"""Run one demo (or all of them) end to end: measure, judge, print the table, write CSV and HTML."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from infra.docker.engine import DockerError
from infra.local.errors import StackError
from loadtests.experiments import report as render
from loadtests.experiments.claims import Verdict
from loadtests.experiments.context import DemoContext, DemoOptions
from loadtests.experiments.demos import DEMOS, runner
from loadtests.experiments.docker_stack import live_views
from loadtests.experiments.locust_runner import LocustError
from loadtests.experiments.results import DemoReport

# What stops a demo with a message for the user (a part missing or not starting, the stack unable to run it):
# exit 2 for one demo; ``demo all`` records it as that demo's outcome and goes on.
DEMO_ERRORS = (LocustError, StackError, DockerError, TimeoutError, RuntimeError, OSError)


def run_demo(name: str, options: DemoOptions, *, out: Console, err: Console) -> tuple[DemoReport, Path]:
    ctx = DemoContext(name, options, err=err)
    report = runner(name)(ctx)
    report.started = ctx.started.isoformat(timespec="seconds")
    if ctx.docker_project:
        report.live = live_views(ctx.docker_project)
    render.render_table(report, out)
    render.write_csv(report, ctx.out)
    html = render.write_html(report, ctx.out)
    out.print(f"report: {html}  (CSV next to it)", highlight=False)
    return report, html


def run_all(options: DemoOptions, *, out: Console, err: Console) -> tuple[list[DemoReport], Path]:
    """Every demo in turn, each in its own folder under one root, ``index.html`` over them and a summary
    table; a demo that cannot run (``DEMO_ERRORS``) is reported as refused, with why, and the next one runs."""
    ctx = DemoContext("all", options, err=err)
    entries = []
    for name in DEMOS:
        err.rule(f"scalecube demo {name}")
        folder = ctx.out / name
        try:
            entries.append(run_demo(name, replace(options, out=folder), out=out, err=err))
        except DEMO_ERRORS as exc:
            err.print(f"scalecube demo {name}: {exc}", highlight=False, markup=False)
            refused = DemoReport(
                name, f"scalecube demo {name}", "", refused=str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            )
            refused.started = ctx.started.isoformat(timespec="seconds")
            entries.append((refused, render.write_html(refused, folder)))
    index = render.write_index(entries, ctx.out)
    reports = [report for report, _ in entries]
    summary(reports, out)
    out.print(f"index: {index}", highlight=False)
    return reports, index


def summary(reports: list[DemoReport], console: Console) -> None:
    """One row per demo: its claims by verdict, its exit code and why; the run exits with the worst."""
    table = Table(title="scalecube demo all", title_justify="left")
    for column in ("demo", "holds", "fails", "not judged", "skipped", "exit", "outcome"):
        table.add_column(column, justify="left" if column in ("demo", "outcome") else "right", overflow="fold")
    for report in reports:
        code = report.exit_code
        style = "green" if code == 0 else "bold red"
        table.add_row(
            report.name,
            *(str(report.count(v)) for v in (Verdict.HOLDS, Verdict.FAILS, Verdict.NOT_JUDGED, Verdict.SKIPPED)),
            f"[{style}]{code}[/{style}]",
            report.outcome,
        )
    console.print(table)
