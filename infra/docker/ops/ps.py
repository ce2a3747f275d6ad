"""``scalecube docker ps``: the project's containers with their health and ports, and, for each
container that runs the cluster runtime, its workers (from the master's control socket)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from infra.docker.ops.project import SERVICE_LABEL, health, short_name
from infra.docker.ops.workers import CLUSTER_SERVICES, Worker, workers_of

if TYPE_CHECKING:
    from docker.models.containers import Container
    from rich.console import Console

    from infra.docker.ops.project import Project


@dataclass
class ContainerRow:
    service: str
    name: str
    id: str
    state: str
    health: str
    ports: list[str]
    workers: list[Worker] | None = field(default=None)  # None: not a cluster, or its status did not answer


def published_ports(container: Container) -> list[str]:
    """``127.0.0.1:8080->8080/tcp`` like ``docker ps``; exposed-only ports are left out."""
    shown = []
    for port, bindings in sorted((container.ports or {}).items()):
        for binding in bindings or []:
            shown.append(f"{binding.get('HostIp') or '0.0.0.0'}:{binding['HostPort']}->{port}")
    return shown


def collect(project: Project, service: str | None = None, *, workers: bool = True) -> list[ContainerRow]:
    containers = project.containers(service, all=True)

    def row(container: Container) -> ContainerRow:
        service_name = container.labels.get(SERVICE_LABEL, "?")
        in_cluster = workers and service_name in CLUSTER_SERVICES
        return ContainerRow(
            service_name,
            short_name(container),
            container.short_id,
            container.status,
            health(container),
            published_ports(container),
            workers_of(container) if in_cluster else None,
        )

    # One `docker exec` per cluster container: in parallel, a dozen take as long as one.
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(row, containers))


def as_dict(rows: list[ContainerRow]) -> dict[str, Any]:
    return {"containers": [asdict(row) for row in rows]}


def render(rows: list[ContainerRow], project: str, console: Console) -> None:
    """One line per container, plus one per worker beyond the first (pid, requests, RSS, state)."""
    from rich import box
    from rich.table import Table

    if not rows:
        console.print(f"no containers in project [bold]{project}[/] (docker compose up -d)")
        return
    table = Table(
        title=f"project {project}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0)
    )
    for column in ("container", "state", "health", "ports", "pid", "requests", "rss", "worker"):
        table.add_column(column, justify="right" if column in ("pid", "requests", "rss") else "left", no_wrap=True)
    colours = {"healthy": "green", "unhealthy": "red", "starting": "yellow"}
    for row in rows:
        colour = colours.get(row.health, "white")
        first, *others = _worker_cells(row)
        ports = "\n".join(_short_port(port) for port in row.ports)
        table.add_row(row.name, row.state, f"[{colour}]{row.health}[/]", ports, *first)
        for cells in others:
            table.add_row("", "", "", "", *cells)
    console.print(table)


def _short_port(port: str) -> str:
    """``127.0.0.1:18480->8080/tcp`` → ``18480→8080`` (the JSON keeps the whole binding)."""
    return port.rpartition(":")[2].replace("->", "→").removesuffix("/tcp")


def _worker_cells(row: ContainerRow) -> list[tuple[str, str, str, str]]:
    if row.workers is None:
        return [("", "", "", "[dim]no status[/]" if row.service in CLUSTER_SERVICES else "")]
    if not row.workers:
        return [("", "", "", "none")]
    return [(str(w.pid), str(w.requests), f"{w.rss_mb:.0f}mb", w.state) for w in row.workers]
