"""``scalecube docker ps``: the project's containers with their health and ports, and, for each
container that runs the cluster runtime, its workers (from the master's control socket).

A Swarm stack over several engines (``scalecube docker ps --nodes CLUSTER``, the nodes of ``scalecube nodes``):
each node's engine is asked for the stack's containers, and each row says which node runs it."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from infra.docker.ops.project import SERVICE_LABEL, health, short_name
from infra.docker.ops.workers import CLUSTER_SERVICES, Worker, workers_of

if TYPE_CHECKING:
    import docker
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
    node: str = ""  # the Swarm node that runs it (a stack over several engines), else ""


STACK_LABEL = "com.docker.stack.namespace"
SWARM_SERVICE_LABEL = "com.docker.swarm.service.name"  # STACK_SERVICE
TASK_NAME_LABEL = "com.docker.swarm.task.name"  # STACK_SERVICE.SLOT.TASKID (a global service: .NODEID.)


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


def collect_stack(
    engines: Mapping[str, docker.DockerClient], stack: str, service: str | None = None, *, workers: bool = True
) -> list[ContainerRow]:
    """The Swarm stack's containers on every node (``engines``: node name → its engine), each with its node."""
    found = [
        (node, container)
        for node, engine in engines.items()
        for container in engine.containers.list(all=True, filters={"label": f"{STACK_LABEL}={stack}"})
    ]

    def row(item: tuple[str, Container]) -> ContainerRow:
        node, container = item
        service_name = container.labels.get(SWARM_SERVICE_LABEL, "?").removeprefix(f"{stack}_")
        task = container.labels.get(TASK_NAME_LABEL, "").removeprefix(f"{stack}_")
        slot = task.split(".")[1] if task.count(".") >= 2 else "?"
        in_cluster = workers and service_name in CLUSTER_SERVICES
        return ContainerRow(
            service_name,
            f"{service_name}.{slot if slot.isdigit() else node}",
            container.short_id,
            container.status,
            health(container),
            published_ports(container),
            workers_of(container) if in_cluster else None,
            node,
        )

    chosen = [item for item in found if service is None or _swarm_service(item[1], stack) == service]
    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = list(pool.map(row, chosen))
    return sorted(rows, key=lambda r: (r.service, r.name, r.node))


def _swarm_service(container: Container, stack: str) -> str:
    return container.labels.get(SWARM_SERVICE_LABEL, "").removeprefix(f"{stack}_")


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
    on_nodes = any(row.node for row in rows)
    columns = ("container", "node") if on_nodes else ("container",)
    for column in (*columns, "state", "health", "ports", "pid", "requests", "rss", "worker"):
        table.add_column(column, justify="right" if column in ("pid", "requests", "rss") else "left", no_wrap=True)
    colours = {"healthy": "green", "unhealthy": "red", "starting": "yellow"}
    for row in rows:
        colour = colours.get(row.health, "white")
        first, *others = _worker_cells(row)
        ports = "\n".join(_short_port(port) for port in row.ports)
        names = (row.name, row.node) if on_nodes else (row.name,)
        table.add_row(*names, row.state, f"[{colour}]{row.health}[/]", ports, *first)
        for cells in others:
            table.add_row(*("" for _ in names), "", "", "", *cells)
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
