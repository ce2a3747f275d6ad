"""``scalecube demo NAME``: the guides' claims, reproduced under Locust load and judged.

Registered in ``scalecube/cli.py`` as ``app.add_typer(demo_app, name="demo")``. Heavy
imports stay inside the commands so that ``scalecube --help`` stays fast.
Exit codes: 0 every judged claim holds, 1 a claim failed, 2 usage, a missing part, a stack that cannot run
the demo, or no claim judged at all (a demo that could not fail); ``demo all`` exits with the worst.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

demo_app = typer.Typer(
    help="The guides' claims, measured: each demo starts what it needs, drives Locust, prints a table, "
    "writes CSV and an HTML report, and exits 1 if a claim fails.",
    no_args_is_help=True,
)


Users = Annotated[int | None, typer.Option(min=1, help="Locust users per phase (default: the demo's; 4 with --smoke)")]
Seconds = Annotated[float | None, typer.Option(min=1, help="seconds per phase (default: the demo's; 2 with --smoke)")]
Out = Annotated[Path | None, typer.Option(help="output folder (default ./demo-reports/<name>-<timestamp>/)")]
Target = Annotated[str | None, typer.Option(help="an existing stack's URL: run only the phases that start nothing")]
Docker = Annotated[
    bool,
    typer.Option(
        help="against the running compose stack (`docker compose up`; the project in "
        "COMPOSE_PROJECT_NAME, else scalecube): its balancer is the target, and the "
        "demo scales, kills or pauses containers as it needs, then puts them back"
    ),
]
Smoke = Annotated[bool, typer.Option(help="tiny load, ~2 s per phase (tests); performance targets not judged")]


def _run(
    name: str,
    users: int | None,
    seconds: float | None,
    out: Path | None,
    target: str | None,
    docker: bool,
    smoke: bool,
    **more: str | None,
) -> None:
    project = None
    if docker:
        if target is not None:
            raise typer.BadParameter("--docker finds the compose stack's balancer itself", param_hint="--target")
        target, project = _compose_balancer(name)
    if target is not None:
        parts = urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise typer.BadParameter(f"expected an http:// or https:// URL, got {target!r}", param_hint="--target")

    from rich.console import Console

    from loadtests.experiments.context import DemoOptions
    from loadtests.experiments.locust_runner import check_locust
    from loadtests.experiments.run import DEMO_ERRORS, run_all, run_demo

    options = DemoOptions(
        users=users, seconds=seconds, out=out, target=target, smoke=smoke, docker_project=project, **more
    )
    # Not a terminal (a file, a test): wide enough that the tables do not fold every cell.
    out_console = Console() if sys.stdout.isatty() else Console(width=160)
    err_console = Console(stderr=True)
    try:
        check_locust()
        if name == "all":
            reports, _ = run_all(options, out=out_console, err=err_console)
        else:
            reports = [run_demo(name, options, out=out_console, err=err_console)[0]]
    except DEMO_ERRORS as exc:
        typer.echo(f"scalecube demo {name}: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:  # everything started was stopped on the way out (each rig's finally)
        typer.echo(f"scalecube demo {name}: interrupted", err=True)
        raise typer.Exit(130) from None
    raise typer.Exit(max(report.exit_code for report in reports))


def _compose_balancer(name: str) -> tuple[str, str]:
    """The running compose stack's balancer URL and project name, or exit 2 saying what is missing."""
    import os

    from infra.docker.compose import PROJECT
    from infra.docker.engine import DockerError
    from infra.docker.ops.balancer import balancer_url
    from infra.docker.ops.project import Project
    from infra.paths import REPO

    project = os.environ.get("COMPOSE_PROJECT_NAME") or PROJECT
    try:
        stack = Project.connect(REPO, project)
        if not stack.containers("lb") or not stack.containers("api"):
            raise DockerError(f"the compose stack '{project}' is not running (docker compose up --scale api=3)")
        return balancer_url(stack), project
    except DockerError as exc:
        typer.echo(f"scalecube demo {name}: --docker: {exc}", err=True)
        raise typer.Exit(2) from None


# name -> the line `scalecube demo --help` shows for it, in the order `demo all` runs them (DEMOS).
COMMANDS = {
    "cloning": (
        "1 process vs a per-core cluster vs 3 clusters behind the balancer, same /cpu load (claim: cluster ≥ 1.6×)."
    ),
    "availability": (
        "Workers crash at random under load: a few users and the guides' 200 clients (≥ 99% / ≥ 99.5% "
        "succeed; 0 failed GETs through a retrying balancer)."
    ),
    "overload": (
        "Heavy /cpu beside cheap GET /: rr vs least vs uvicorn --workers, and no replica ejected behind a balancer."
    ),
    "reload": "Rolling reload of every worker, rolling restart of every replica, under load (claim: 0 failed).",
    "sessions": "Memory vs Redis sessions × sticky off/on (claim: only memory without sticky loses sessions).",
    "broadcast": (
        "Source reads per interval with 1, 2, 4 workers (claim: master broadcast ~1, each worker reading ~N)."
    ),
    "cache": (
        "A slow report through each worker's memory vs one Redis cache, 2 replicas (claims: memory ~1 "
        "computation per worker per TTL, Redis ~1 per TTL; 200 at once on an expiring key: exactly 1)."
    ),
    "splitting": "Users created through the router land on the shard of their country; router vs direct latency.",
    "decomposing": "Login throughput with 1 vs 2 auth replicas; the api keeps answering while auth is saturated.",
    "outage": (
        "Under mixed load, the sessions Redis, auth, a shard and the directory Redis frozen (SIGSTOP, "
        "--seconds) then killed in turn: other routes ≥ 99.9%, only 503s naming the part, back ≤ 2 s."
    ),
    "failover": (
        "The sessions Redis as primary + replica + 3 Sentinels, its primary SIGKILLed under session load (twice, "
        "the second time with a Sentinel down): 0 sessions lost, 503s ≤ 10 s, / unaffected, old primary a replica."
    ),
    "all": "Every demo in turn, one folder each, and one index.html.",
}


def _command(name: str) -> Callable[..., None]:
    def command(
        users: Users = None,
        seconds: Seconds = None,
        out: Out = None,
        target: Target = None,
        docker: Docker = False,
        smoke: Smoke = False,
    ) -> None:
        _run(name, users, seconds, out, target, docker, smoke)

    return command


for _name, _help in COMMANDS.items():
    demo_app.command(name=_name, help=_help)(_command(_name))


@demo_app.command(name="node-loss")
def node_loss_command(
    users: Annotated[int | None, typer.Option(min=1, help="session visitors (default 3; 1 with --smoke)")] = None,
    seconds: Annotated[
        float | None, typer.Option(min=1, help="seconds of load before the kill and after the recovery (default 10)")
    ] = None,
    out: Out = None,
    smoke: Smoke = False,
    cluster: Annotated[str, typer.Option(help="the `scalecube nodes` cluster")] = "scalecube-nodes",
    stack: Annotated[str, typer.Option(help="the Swarm stack deployed over it")] = "scalecube",
    node: Annotated[
        str | None,
        typer.Option(
            help="the node to lose (default: one with api replicas, no balancer, no Redis primary or replica)"
        ),
    ] = None,
    target: Target = None,
    docker: Docker = False,
) -> None:
    """A node of `scalecube nodes` SIGKILLed under mixed load through the balancer of the stack deployed over them
    (scalecube nodes up --nodes 3; scalecube docker swarm-deploy --nodes scalecube-nodes): 0 failed GETs, the api
    back on the survivors, 0 sessions lost; the node started again after. Not in `demo all`."""
    if docker or target is not None:
        typer.echo(
            "scalecube demo node-loss: it runs against the stack over `scalecube nodes` (--cluster, --stack), "
            "never --docker's compose stack nor a --target URL: nothing there is a node to lose",
            err=True,
        )
        raise typer.Exit(2)
    _run("node-loss", users, seconds, out, None, False, smoke, nodes_cluster=cluster, nodes_stack=stack, kill_node=node)


if __name__ == "__main__":  # python -m loadtests.demo_cli NAME ... (the same as `scalecube demo NAME ...`)
    demo_app()
