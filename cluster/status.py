"""``scalecube status``: find running masters and render their workers like ``pm2 ls``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cluster import control
from cluster.config import default_run_dir


def discover(run_dir: Path | None = None) -> list[Path]:
    """Control sockets of masters that answer; stale ones are skipped."""
    folder = run_dir or default_run_dir()
    return sorted(folder.glob("cluster-*.sock")) if folder.is_dir() else []


def collect(paths: list[Path]) -> list[dict[str, Any]]:
    snapshots = []
    for path in paths:
        try:
            snapshots.append({"control": str(path), **control.request(path, "status")})
        except (ConnectionError, OSError, ValueError):
            continue
    return snapshots


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def render(snapshots: list[dict[str, Any]], console: Console | None = None) -> None:
    console = console or Console()
    if not snapshots:
        console.print(
            "no running cluster found (start one with [bold]scalecube start[/], [bold]scalecube serve[/] "
            "or [bold]scalecube up[/])"
        )
        return
    for snap in snapshots:
        master = snap["master"]
        table = Table(
            title=f"{master.get('name', '?')}  ·  {master['app']}  ·  {master['address']}  ·  master pid {master['pid']}"
            f"  ·  policy {master['policy']}",
            title_justify="left",
        )
        for column in ("id", "slot", "pid", "state", "uptime", "requests", "↺", "cpu", "mem"):
            table.add_column(column, justify="right" if column not in ("state",) else "left")
        for w in snap["workers"]:
            colour = {"listening": "green", "draining": "yellow"}.get(w["state"], "cyan")
            table.add_row(
                str(w["id"]),
                str(w["slot"]),
                str(w["pid"]),
                f"[{colour}]{w['state']}[/]",
                _duration(w["uptime"]),
                str(w["requests"]),
                str(w["restarts"]),
                f"{w['cpu_percent']:.0f}%",
                f"{w['rss_mb']:.1f}mb",
            )
        console.print(table)
