"""``scalecube nodes up|ls|kill|start|partition|down``: several Docker engines on this machine, one Swarm (infra/docker/nodes.py).

Registered in ``scalecube/cli.py`` (``app.add_typer(nodes_app, name="nodes")``). Exit codes as ``scalecube docker``:
0 done, 1 the engine refused on the way, 2 usage, no engine, or a node/image missing.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from infra.docker.nodes import CLUSTER, DEFAULT_NODES
from infra.paths import REPO

nodes_app = typer.Typer(
    help="Docker engines in containers on this machine, joined in one Swarm: a multi-node stack on one host.",
    no_args_is_help=True,
)

Cluster = Annotated[str, typer.Option("--cluster", help="the nodes' name: their network's, their containers' prefix")]
AsJson = Annotated[bool, typer.Option("--json", help="machine-readable output")]


@contextlib.contextmanager
def _errors(command: str) -> Iterator[None]:
    import subprocess

    from docker.errors import DockerException
    from requests.exceptions import RequestException

    from infra.docker.engine import DockerError

    try:
        yield
    except DockerError as exc:
        typer.echo(f"scalecube nodes {command}: {exc}", err=True)
        raise typer.Exit(2) from None
    except (DockerException, RequestException, subprocess.SubprocessError) as exc:
        typer.echo(f"scalecube nodes {command}: the engine said: {exc}", err=True)
        raise typer.Exit(1) from None


def _say(command: str):  # noqa: ANN202
    return lambda line: typer.echo(f"scalecube nodes {command}: {line}")


def _nodes(cluster: str, command: str):  # noqa: ANN202
    from infra.docker.engine import engine_client
    from infra.docker.nodes import Nodes

    return Nodes(engine_client(), cluster, say=_say(command))


@nodes_app.command("up")
def up_command(
    nodes: Annotated[int, typer.Option("--nodes", "-n", min=1, max=9, help="how many engines")] = DEFAULT_NODES,
    images: Annotated[bool, typer.Option(help="load the compose file's images into every node")] = True,
    cluster: Cluster = CLUSTER,
    project_dir: Annotated[Path, typer.Option(help="folder with docker-compose.yml (and .env)")] = REPO,
) -> None:
    """Start N engines (one container each), join them in one Swarm, load the stack's images into each."""
    from infra.docker.compose import Compose
    from infra.docker.nodes import stack_images

    started = time.monotonic()
    with _errors("up"):
        wanted = stack_images(json.loads(Compose(project_dir).run(["config", "--format", "json"]))) if images else []
        running = _nodes(cluster, "up").up(nodes, wanted)
        _say("up")(
            f"{len(running)} node(s) in one Swarm in {time.monotonic() - started:.1f}s (manager {running[0].engine_url});"
            f" deploy with: scalecube docker swarm-deploy --nodes {cluster}"
        )


@nodes_app.command("ls")
def ls_command(cluster: Cluster = CLUSTER, as_json: AsJson = False) -> None:
    """The nodes: container state, address, Swarm role and state, running tasks."""
    from infra.docker.nodes import as_json as rows_json

    with _errors("ls"):
        rows = _nodes(cluster, "ls").rows()
    if as_json:
        typer.echo(rows_json(rows))
        return
    if not rows:
        typer.echo(f"no nodes in {cluster} (scalecube nodes up)")
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"nodes {cluster}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("node", "container", "state", "address", "role", "swarm", "availability", "tasks"):
        table.add_column(column, justify="right" if column == "tasks" else "left", no_wrap=True)
    for row in rows:
        tasks = "-" if row.tasks is None else str(row.tasks)
        table.add_row(row.name, row.container, row.state, row.address, row.role, row.swarm, row.availability, tasks)
    Console().print(table)


@nodes_app.command("kill")
def kill_command(
    node: Annotated[str, typer.Argument(metavar="NODE", help="node-K (or its container's name)")],
    cluster: Cluster = CLUSTER,
) -> None:
    """Stop a node's engine container abruptly (SIGKILL): a machine lost, with every task on it."""
    with _errors("kill"):
        killed = _nodes(cluster, "kill").kill(node)
    _say("kill")(f"{killed.plan.name} ({killed.plan.container}) killed; Swarm reschedules its tasks")


@nodes_app.command("start")
def start_command(
    node: Annotated[str, typer.Argument(metavar="NODE", help="node-K (or its container's name)")],
    cluster: Cluster = CLUSTER,
) -> None:
    """Start a killed node's engine container again and wait until the Swarm sees it ready (its tasks return)."""
    started = time.monotonic()
    with _errors("start"):
        back = _nodes(cluster, "start").start(node)
    _say("start")(f"{back.plan.name} ready in the Swarm again in {time.monotonic() - started:.1f}s")


@nodes_app.command("partition")
def partition_command(
    node: Annotated[str, typer.Argument(metavar="NODE", help="node-K (or its container's name)")],
    heal: Annotated[bool, typer.Option("--heal", help="undo: reconnect the node to the others")] = False,
    cluster: Cluster = CLUSTER,
) -> None:
    """Cut NODE off from the other nodes (it keeps running, the host still reaches it); --heal undoes it."""
    with _errors("partition"):
        cut = _nodes(cluster, "partition").partition(node, heal=heal)
    _say("partition")(f"{cut.plan.name} " + ("reconnected to the others" if heal else "cut off from the others"))


@nodes_app.command("down")
def down_command(cluster: Cluster = CLUSTER) -> None:
    """Remove every container, volume and network `nodes up` made (and so every engine and task in them)."""
    with _errors("down"):
        removed = _nodes(cluster, "down").down()
    _say("down")(", ".join(f"{len(names)} {kind}" for kind, names in removed.items()) + " removed")
