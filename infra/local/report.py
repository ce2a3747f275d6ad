"""How the local stack talks to people: rich output for ``scalecube up``, ``down`` and ``status``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cluster import status as cluster_status
from infra.local.shutdown import DownReport
from infra.local.state import StackState


class ConsoleReporter:
    """The supervisor's ``Reporter``: what it does, as it does it."""

    def __init__(self, console: Console | None = None) -> None:
        # soft_wrap: long lines (URLs, paths, log lines) stay whole, for copying and for grep.
        self.console = console or Console(soft_wrap=True)

    def ready(self, state: StackState, state_dir: Path, detached: bool) -> None:
        grid = Table.grid(padding=(0, 2))
        for component in state.components:
            grid.add_row(f"  [bold]{escape(component['name'])}[/]", escape(component["url"]),
                         f"pid {component['pid']}")  # fmt: skip
            if component.get("stats"):
                grid.add_row(f"  {escape(component['name'])} stats", escape(component["stats"] + "/"), "")
        grid.add_row("  logs", escape(str(state_dir)), "")
        self.console.print(f"[green]scalecube stack is up[/] (supervisor pid {state.supervisor.pid})")
        self.console.print(grid)
        how_to_stop = f"scalecube down --state-dir {state_dir}" if detached else "Ctrl-C"
        self.console.print(f"{escape(how_to_stop)} to stop")

    def component_exited(self, name: str, how: str, log_path: Path, tail: str) -> None:
        self.console.print(f"[red bold]{escape(name)} exited unexpectedly ({escape(how)})[/]: stopping the stack")
        self.console.print(f"--- last lines of {log_path} ---", markup=False, highlight=False)
        self.console.print(tail, markup=False, highlight=False)

    def stopping(self, reason: str) -> None:
        self.console.print(f"{escape(reason)}: stopping the stack, last started first (the api drains before Redis stops)")

    def stopped(self, names: list[str]) -> None:
        self.console.print(f"stopped: {escape(', '.join(names)) or 'nothing was running'}")


def render_down(report: DownReport | None, state_dir: Path, console: Console) -> None:
    if report is None:
        console.print(f"no stack is running (state dir {escape(str(state_dir))})")
        return
    names = ", ".join(f"{c['name']} (pid {c['pid']})" for c in report.components) or "no components yet"
    if report.stale:
        console.print(f"the supervisor (pid {report.supervisor_pid}) was already gone; cleaned up: {escape(names)}")
    else:
        console.print(f"stopped the stack (supervisor pid {report.supervisor_pid}): {escape(names)}")
    if report.killed:
        console.print(f"[yellow]had to SIGKILL pid(s) {', '.join(map(str, report.killed))}[/]")


def render_stack(stack: dict[str, Any], console: Console) -> None:
    """The stack's processes, then the worker table of each of its clusters."""
    supervisor = stack["supervisor"]
    running = "running" if supervisor["alive"] else "[red]gone (stale; scalecube down cleans up)[/]"
    table = Table(
        title=f"local stack  ·  supervisor pid {supervisor['pid']} {running}  ·  {stack['phase']} since "
              f"{stack['started_at']}  ·  {escape(stack['state_dir'])}",
        title_justify="left",
    )  # fmt: skip
    for column in ("component", "pid", "url", "alive", "log"):
        table.add_column(column, justify="right" if column == "pid" else "left",
                         overflow="fold")  # a cut URL or path is useless  # fmt: skip
    for c in stack["components"]:
        alive = "[green]yes[/]" if c["alive"] else "[red]no[/]"
        url = c["url"] + (f"\nstats {c['stats']}/" if c.get("stats") else "")
        table.add_row(escape(c["name"]), str(c["pid"]), escape(url), alive, escape(c["log"]))
    console.print(table)
    for c in stack["components"]:
        if "backends" in c:
            console.print(f"{escape(c['name'])} ({escape(c['kind'])}) sees: {_backends(c['backends'])}")
    snapshots = [c["cluster"] for c in stack["components"] if c.get("cluster")]
    if snapshots:
        cluster_status.render(snapshots, console)


def _backends(backends: list[dict[str, Any]] | None) -> str:
    if backends is None:
        return "[yellow]its stats page does not answer right now[/]"
    if not backends:
        return "[red]no api backend[/]"
    return ", ".join(f"{escape(b['address'])} {'[green]UP[/]' if b['up'] else '[red]DOWN[/]'}" for b in backends)
