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
            grid.add_row(f"  [bold]{escape(component['name'])}[/]", escape(component["url"]), f"pid {component['pid']}")
            if component.get("stats"):
                grid.add_row(f"  {escape(component['name'])} stats", escape(component["stats"] + "/"), "")
        grid.add_row("  logs", escape(str(state_dir)), "")
        self.console.print(f"[green]scalecube stack is up[/] (supervisor pid {state.supervisor.pid})")
        self.console.print(grid)
        for component in state.components:  # one line each, unwrapped: a path to copy
            if component.get("admin_password_file"):
                self.console.print(
                    f"  {escape(component['name'])} stats: user {escape(component['admin_user'])}, "
                    f"password in {escape(component['admin_password_file'])}",
                    highlight=False,
                )
        how_to_stop = f"scalecube down --state-dir {state_dir}" if detached else "Ctrl-C"
        self.console.print(f"{escape(how_to_stop)} to stop")

    def component_exited(self, name: str, how: str, log_path: Path, tail: str, restart_in: float) -> None:
        when = f"in {restart_in:g}s" if restart_in else "now"
        self.console.print(f"[red bold]{escape(name)} exited unexpectedly ({escape(how)})[/]: restarting it {when}")
        self._tail(log_path, tail)

    def component_restarted(self, name: str, pid: int | None, restarts: int) -> None:
        self.console.print(f"{escape(name)} restarted (pid {pid}, restart {restarts})")

    def component_back(self, name: str, restarts: int) -> None:
        self.console.print(f"[green]{escape(name)} is ready again[/] (after {restarts} restart{'s' * (restarts != 1)})")

    def component_failed(self, name: str, why: str, log_path: Path, tail: str) -> None:
        self.console.print(
            f"[red bold]giving up on {escape(name)}[/]: {escape(why)}; the rest of the stack keeps "
            f"running (scalecube status; scalecube down to stop it)"
        )
        self._tail(log_path, tail)

    def _tail(self, log_path: Path, tail: str) -> None:
        self.console.print(f"--- last lines of {log_path} ---", markup=False, highlight=False)
        self.console.print(tail, markup=False, highlight=False)

    def stopping(self, reason: str) -> None:
        self.console.print(
            f"{escape(reason)}: stopping the stack, last started first (the api drains before Redis stops)"
        )

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
    )
    for column in ("component", "pid", "url", "state", "restarts", "log"):
        table.add_column(
            column,
            justify="right" if column in ("pid", "restarts") else "left",
            no_wrap=column in ("component", "pid", "state", "restarts"),  # whole words, for grep
            overflow="fold",
        )  # a cut URL or path is useless
    for c in stack["components"]:
        url = c["url"] + (f"\nstats {c['stats']}/" if c.get("stats") else "")
        table.add_row(
            escape(c["name"]), str(c["pid"]), escape(url), _state(c), str(c.get("restarts", 0)), escape(c["log"])
        )
    console.print(table)
    for c in stack["components"]:  # below the table: whole lines, never folded into a narrow column
        if c.get("last_exit"):
            console.print(f"{escape(c['name'])} last exited: {_last_exit(c['last_exit'])}")
        if c.get("failure"):
            console.print(f"[red bold]{escape(c['name'])} failed[/]: {escape(c['failure'])}; see {escape(c['log'])}")
    for c in stack["components"]:
        if "backends" in c:
            console.print(f"{escape(c['name'])} ({escape(c['kind'])}) sees: {_backends(c['backends'])}")
    snapshots = [c["cluster"] for c in stack["components"] if c.get("cluster")]
    if snapshots:
        cluster_status.render(snapshots, console)


def _state(component: dict[str, Any]) -> str:
    """up, or the supervisor's word (starting, restarting, failed), or dead: its process is gone unnoticed
    (the supervisor is about to notice, or is gone itself)."""
    state = component.get("state", "running")
    if not component["alive"] and state not in ("restarting", "failed"):
        return "[red]dead[/]"
    if state == "running":
        return "[green]up[/]"
    return f"[{'red' if state == 'failed' else 'yellow'}]{escape(state)}[/]"


def _last_exit(last: dict[str, Any] | None) -> str:
    if not last:
        return ""
    served = f"after serving {last['uptime']:g}s" if last["uptime"] else "before it was ready"
    return f"{escape(last['how'])} at {escape(last['at'])}, {served}"


def _backends(backends: list[dict[str, Any]] | None) -> str:
    if backends is None:
        return "[yellow]its stats page does not answer right now[/]"
    if not backends:
        return "[red]no api backend[/]"
    return ", ".join(f"{escape(b['address'])} {'[green]UP[/]' if b['up'] else '[red]DOWN[/]'}" for b in backends)
