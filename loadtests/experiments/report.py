"""A demo's results, shown three ways: a rich table on stdout, CSV files, one self-contained HTML page.

Files in the demo's output folder:
  phases.csv       one row per phase (variant): requests, failures, req/s, p50/p95/p99, workers seen
  timeseries.csv   one row per phase and second: users, req/s, failures/s, p50/p95/p99
  served_by.csv    one row per phase and worker (host/pid), with its replica
  claims.csv       one row per claim: measured, threshold, verdict, how
  <table>.csv      each table of the demo's own (``DemoReport.tables``: the outage demo's faults.csv)
  report.html      all of it, with inline SVG charts (no JavaScript, no network)
``index.html`` (``demo all``) links each demo's report with its verdicts.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from html import escape
from pathlib import Path

from rich.console import Console
from rich.table import Table

from loadtests.experiments import charts
from loadtests.experiments.claims import Claim, Verdict
from loadtests.experiments.locust_runner import as_row, safe_name
from loadtests.experiments.results import DemoReport, Phase
from loadtests.experiments.results import Table as ExtraTable

VERDICT_STYLE = {
    Verdict.HOLDS: "green",
    Verdict.FAILS: "bold red",
    Verdict.NOT_JUDGED: "yellow",
    Verdict.SKIPPED: "dim",
}
VERDICT_COLOR = {
    Verdict.HOLDS: "#1a7f37",
    Verdict.FAILS: "#cf222e",
    Verdict.NOT_JUDGED: "#9a6700",
    Verdict.SKIPPED: "#6e7781",
}
PHASE_COLUMNS = [
    "phase",
    "requests",
    "failures",
    "failure_pct",
    "rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "seconds",
    "workers_seen",
    "note",
]


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


# -- the terminal -------------------------------------------------------------------------------


def render_table(report: DemoReport, console: Console) -> None:
    phases = Table(title=f"{report.title}", title_justify="left")
    for column in ("phase", "req", "failed", "failed %", "req/s", "p50 ms", "p95 ms", "p99 ms", "workers", "note"):
        phases.add_column(column, justify="left" if column in ("phase", "note") else "right", overflow="fold")
    for phase in report.phases:
        result = phase.result
        if result is None:
            phases.add_row(phase.name, *("—",) * 8, f"[dim]{phase.note}[/dim]")
            continue
        phases.add_row(
            phase.name,
            f"{result.requests:,}",
            f"{result.failures:,}",
            f"{100 * result.failure_ratio:.2f}",
            f"{result.rps:,.1f}",
            _ms(result.p50_ms),
            _ms(result.p95_ms),
            _ms(result.p99_ms),
            str(len(result.served_by)),
            phase.note,
        )
    console.print(phases)
    for extra in report.tables:
        table = Table(title=extra.name, title_justify="left")
        for column in extra.columns:
            table.add_column(column, overflow="fold")
        for row in extra.rows:
            table.add_row(*row)
        console.print(table)
    claims = Table(title="claims", title_justify="left")
    for column in ("claim", "measured", "verdict", "how"):
        claims.add_column(column, overflow="fold")
    for claim in report.claims:
        style = VERDICT_STYLE[claim.verdict]
        claims.add_row(claim.name, _measured(claim), f"[{style}]{claim.verdict.value.upper()}[/{style}]", claim.text)
    console.print(claims)
    for phase, errors in failures(report):
        console.print(
            f"failures in {phase}: " + "; ".join(f"{count:,}× {error}" for error, count in errors),
            highlight=False,
            markup=False,
        )
    for note in report.notes:
        console.print(f"• {note}", highlight=False)
    style = "green" if report.exit_code == 0 else "bold red"
    console.print(f"[{style}]{report.outcome}[/{style}] (exit {report.exit_code})", highlight=False)


def failures(report: DemoReport, top: int = 3, width: int = 140) -> list[tuple[str, list[tuple[str, int]]]]:
    """Each phase that had failures: its most frequent errors, cut to ``width`` characters (what a failed
    claim is about; the whole messages are in ``locust/<phase>_failures.csv``)."""
    listed = []
    for phase in report.phases:
        if phase.result is not None and phase.result.failures_by_error:
            errors = sorted(phase.result.failures_by_error.items(), key=lambda item: -item[1])[:top]
            listed.append((phase.name, [(_cut(error, width), count) for error, count in errors]))
    return listed


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _measured(claim: Claim) -> str:
    if claim.measured is None:
        return "—"
    return f"{claim.measured:g} {claim.unit}".strip()


# -- CSV ----------------------------------------------------------------------------------------


def write_csv(report: DemoReport, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "phases.csv", out / "timeseries.csv", out / "served_by.csv", out / "claims.csv"]
    with open(paths[0], "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, PHASE_COLUMNS)
        writer.writeheader()
        for phase in report.phases:
            row = as_row(phase.result) if phase.result else {}
            writer.writerow({"phase": phase.name, **row, "note": phase.note})
    with open(paths[1], "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["phase", "t", "users", "rps", "failures_per_s", "p50_ms", "p95_ms", "p99_ms"])
        for phase in report.phases:
            for p in phase.result.series if phase.result else []:
                writer.writerow(
                    [
                        phase.name,
                        p.t,
                        p.users,
                        round(p.rps, 3),
                        round(p.failures_per_s, 3),
                        p.p50_ms,
                        p.p95_ms,
                        p.p99_ms,
                    ]
                )
    with open(paths[2], "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["phase", "served_by", "replica", "requests"])
        for phase in report.phases:
            for served_by, count in phase.per_worker():
                writer.writerow([phase.name, served_by, phase.replica_of.get(served_by, ""), count])
    with open(paths[3], "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["claim", "measured", "unit", "threshold", "verdict", "how"])
        for claim in report.claims:
            writer.writerow([claim.name, claim.measured, claim.unit, claim.threshold, claim.verdict.value, claim.text])
    for extra in report.tables:
        paths.append(out / f"{safe_name(extra.name)}.csv")
        with open(paths[-1], "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(extra.columns)
            writer.writerows(extra.rows)
    return paths


# -- HTML ---------------------------------------------------------------------------------------

STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;max-width:1100px;color:#1f2328}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #d0d7de;padding:4px 8px;font-size:13px}
th{background:#f6f8fa;text-align:left}td.n{text-align:right}.verdict{font-weight:bold}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #eee;background:#fff}
h2{margin-top:28px;border-bottom:1px solid #d0d7de}.note{color:#57606a}
"""


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


def _verdict_html(verdict: Verdict) -> str:
    return f'<span class="verdict" style="color:{VERDICT_COLOR[verdict]}">{escape(verdict.value.upper())}</span>'


def _phases_html(phases: Sequence[Phase]) -> str:
    head = "".join(
        f"<th>{escape(c)}</th>"
        for c in ("phase", "requests", "failed", "failed %", "req/s", "p50 ms", "p95 ms", "p99 ms", "workers", "note")
    )
    rows = []
    for phase in phases:
        r = phase.result
        cells = (
            [
                f"{r.requests:,}",
                f"{r.failures:,}",
                f"{100 * r.failure_ratio:.2f}",
                f"{r.rps:,.1f}",
                _ms(r.p50_ms),
                _ms(r.p95_ms),
                _ms(r.p99_ms),
                str(len(r.served_by)),
            ]
            if r
            else ["—"] * 8
        )
        rows.append(
            f"<tr><td>{escape(phase.name)}</td>"
            + "".join(f'<td class="n">{c}</td>' for c in cells)
            + f'<td class="note">{escape(phase.note)}</td></tr>'
        )
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _table_html(table: ExtraTable) -> str:
    head = "".join(f"<th>{escape(column)}</th>" for column in table.columns)
    rows = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in table.rows)
    return f"<h2>{escape(table.name)}</h2><table><tr>{head}</tr>{rows}</table>"


def _claims_html(claims: Sequence[Claim]) -> str:
    rows = "".join(
        f"<tr><td>{escape(c.name)}</td><td class='n'>{escape(_measured(c))}</td>"
        f"<td>{_verdict_html(c.verdict)}</td><td>{escape(c.text)}</td></tr>"
        for c in claims
    )
    return f"<table><tr><th>claim</th><th>measured</th><th>verdict</th><th>how</th></tr>{rows}</table>"


def _charts_html(report: DemoReport) -> str:
    ran = [phase for phase in report.phases if phase.result is not None]
    parts = []
    if report.bars:
        parts.append('<h2>Counted</h2><div class="charts">')
        parts += [charts.bar_chart(title, bars, width=540) for title, bars in report.bars.items()]
        parts.append("</div>")
    if report.lines:
        parts.append('<h2>Over time</h2><div class="charts">')
        parts += [charts.line_chart(title, series, y_label="responses/s") for title, series in report.lines.items()]
        parts.append("</div>")
    parts.append('<h2>Throughput over time</h2><div class="charts">')
    parts.append(
        charts.line_chart(
            "requests/s, per phase",
            {p.name: [(s.t, s.rps) for s in p.result.series] for p in ran if p.result},
            y_label="req/s",
        )
    )
    failing = {
        p.name: [(s.t, s.failures_per_s) for s in p.result.series] for p in ran if p.result and p.result.failures
    }
    if failing:
        parts.append(charts.line_chart("failures/s, per phase", failing, y_label="failures/s"))
    parts.append('</div><h2>Latency over time (p50 / p95 / p99, Locust\'s rolling window)</h2><div class="charts">')
    for phase in ran:
        series = phase.result.series if phase.result else []
        parts.append(
            charts.line_chart(
                phase.name,
                {
                    "p50": [(s.t, s.p50_ms) for s in series],
                    "p95": [(s.t, s.p95_ms) for s in series],
                    "p99": [(s.t, s.p99_ms) for s in series],
                },
                y_label="ms",
                width=540,
            )
        )
    parts.append('</div><h2>Requests per worker (host/pid) and per container (replica)</h2><div class="charts">')
    for phase in ran:
        parts.append(charts.bar_chart(f"{phase.name}: per worker", phase.per_worker(), width=540))
        parts.append(charts.bar_chart(f"{phase.name}: per container", phase.per_container(), width=540))
    parts.append("</div>")
    return "\n".join(parts)


def _live_html(live: dict[str, str]) -> str:
    """Links to the live views of the stack the demo ran against (while it still runs)."""
    if not live:
        return ""
    links = ", ".join(f"<a href='{escape(url)}'>{escape(name)}</a>" for name, url in live.items())
    return f"<p class='note'>The same metrics, live while the stack runs: {links}</p>"


def render_html(report: DemoReport) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in report.settings.items())
    notes = "".join(f"<li>{escape(note)}</li>" for note in [*report.notes, f"outcome: {report.outcome}"])
    notes += "".join(
        f"<li>failures in {escape(phase)}: "
        + "; ".join(f"{count:,}× {escape(error)}" for error, count in errors)
        + "</li>"
        for phase, errors in failures(report)
    )
    body = (
        f"<h1>{escape(report.title)}</h1><p><b>The guides:</b> {escape(report.guide_claim)}</p>"
        f"<p class='note'>scalecube demo {escape(report.name)} — {escape(report.started)} — {escape(settings)}</p>"
        f"{_live_html(report.live)}"
        f"<h2>Claims</h2>{_claims_html(report.claims)}<h2>Phases</h2>{_phases_html(report.phases)}"
        f"{''.join(_table_html(table) for table in report.tables)}"
        f"{'<ul>' + notes + '</ul>' if notes else ''}{_charts_html(report)}"
    )
    return _page(f"scalecube demo {report.name}", body)


def write_html(report: DemoReport, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    return path


def write_index(entries: Sequence[tuple[DemoReport, Path]], out: Path) -> Path:
    """``index.html`` for ``demo all``: each demo, its verdicts, a link to its report (relative)."""
    rows = []
    for report, html in entries:
        link = html.relative_to(out) if html.is_relative_to(out) else html
        verdicts = "<br>".join(f"{_verdict_html(c.verdict)} {escape(c.name)}" for c in report.claims)
        rows.append(
            f"<tr><td><a href='{escape(str(link))}'>{escape(report.name)}</a></td>"
            f"<td>{escape(report.title)}</td><td>{verdicts}</td>"
            f"<td>exit {report.exit_code}: {escape(report.outcome)}</td></tr>"
        )
    body = (
        "<h1>scalecube demo all</h1><table><tr><th>demo</th><th>what</th><th>claims</th><th>outcome</th></tr>"
        f"{''.join(rows)}</table>"
    )
    path = out / "index.html"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(_page("scalecube demo all", body), encoding="utf-8")
    return path
