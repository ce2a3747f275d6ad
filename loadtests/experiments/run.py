"""Run one demo (or all of them) end to end: measure, judge, print the table, write CSV and HTML."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.console import Console

from loadtests.experiments import report as render
from loadtests.experiments.context import DemoContext, DemoOptions
from loadtests.experiments.demos import DEMOS, runner
from loadtests.experiments.results import DemoReport


def run_demo(name: str, options: DemoOptions, *, out: Console, err: Console) -> tuple[DemoReport, Path]:
    ctx = DemoContext(name, options, err=err)
    report = runner(name)(ctx)
    report.started = ctx.started.isoformat(timespec="seconds")
    render.render_table(report, out)
    render.write_csv(report, ctx.out)
    html = render.write_html(report, ctx.out)
    out.print(f"report: {html}  (CSV next to it)", highlight=False)
    return report, html


def run_all(options: DemoOptions, *, out: Console, err: Console) -> tuple[list[DemoReport], Path]:
    """Every demo in turn, each in its own folder under one root, and ``index.html`` over them."""
    ctx = DemoContext("all", options, err=err)
    entries = []
    for name in DEMOS:
        err.rule(f"scalecube demo {name}")
        entries.append(run_demo(name, replace(options, out=ctx.out / name), out=out, err=err))
    index = render.write_index(entries, ctx.out)
    out.print(f"index: {index}", highlight=False)
    return [report for report, _ in entries], index
