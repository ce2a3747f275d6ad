"""``scalecube docker …`` (the compose stack's operations, Docker SDK) and ``scalecube images``.

Registered in ``scalecube/cli.py``: ``app.add_typer(docker_app, name="docker")`` and
``app.command("images")(images_command)``. Heavy imports (the SDK, rich) stay inside the commands.
Exit codes: 0 done, 1 the operation failed on the way, 2 usage or no engine.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from infra.paths import REPO

if TYPE_CHECKING:
    from infra.docker.compose import Compose
    from infra.docker.ops.project import Project

docker_app = typer.Typer(
    help="The compose stack's operations through the Docker SDK: ps, scale, rolling-restart, chaos, logs.",
    no_args_is_help=True,
)

ProjectName = Annotated[
    str, typer.Option("--project", "-p", envvar="COMPOSE_PROJECT_NAME", help="compose project name")
]
ProjectDir = Annotated[Path, typer.Option(help="folder with docker-compose.yml (and .env)")]
Service = Annotated[str, typer.Argument(metavar="SERVICE", help="a compose service, e.g. api")]
AsJson = Annotated[bool, typer.Option("--json", help="machine-readable output")]
NodesCluster = Annotated[
    str | None,
    typer.Option(
        "--nodes",
        metavar="CLUSTER",
        help="the engines of `scalecube nodes up` (e.g. scalecube-nodes): their manager, the stack placed over them",
    ),
]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """``--since``: a duration back from now (``90s``, ``10m``, ``2h``, ``1d``) or an ISO date/time (UTC if naive)."""
    now = now or datetime.now(UTC)
    if match := _DURATION.match(value.strip()):
        return now - timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(f"expected a duration like 10m or an ISO time, got {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@contextlib.contextmanager
def _errors(command: str) -> Iterator[None]:
    """One line per failure, never a stack trace: no engine / unknown service → 2, the engine refused → 1."""
    import subprocess

    from docker.errors import DockerException
    from requests.exceptions import RequestException

    from infra.docker.engine import DockerError

    try:
        yield
    except DockerError as exc:
        typer.echo(f"scalecube docker {command}: {exc}", err=True)
        raise typer.Exit(2) from None
    except (DockerException, RequestException) as exc:
        typer.echo(f"scalecube docker {command}: the engine said: {exc}", err=True)
        raise typer.Exit(1) from None
    except subprocess.TimeoutExpired as exc:
        typer.echo(f"scalecube docker {command}: {' '.join(exc.cmd[:2])} … took longer than {exc.timeout:g}s", err=True)
        raise typer.Exit(1) from None


def _project(project_dir: Path, project: str) -> Project:
    from infra.docker.ops.project import Project

    return Project.connect(project_dir, project)


def _say(command: str):  # noqa: ANN202
    return lambda line: typer.echo(f"scalecube docker {command}: {line}")


@docker_app.command("ps")
def ps_command(
    service: Annotated[str | None, typer.Argument(metavar="[SERVICE]", help="only this service")] = None,
    workers: Annotated[bool, typer.Option(help="ask each cluster container for its workers (docker exec)")] = True,
    as_json: AsJson = False,
    nodes: NodesCluster = None,
    project: ProjectName = "scalecube",
    project_dir: ProjectDir = REPO,
) -> None:
    """The project's containers: state, health, published ports, and each cluster's workers; with `--nodes`,
    the Swarm stack PROJECT's containers on every node of CLUSTER, and which node runs each."""
    from rich.console import Console

    from infra.docker.ops import ps

    with _errors("ps"):
        if nodes is not None:
            rows = ps.collect_stack(_node_engines(nodes), project, service, workers=workers)
            name = f"{project} on {nodes}"
        else:
            stack = _project(project_dir, project)
            if service:
                stack.require_service(service)
            rows = ps.collect(stack, service, workers=workers)
            name = stack.name
    if as_json:
        typer.echo(json.dumps(ps.as_dict(rows), indent=2))
    else:
        ps.render(rows, name, Console())


def _node_engines(cluster: str) -> dict:
    """Each running node of ``cluster`` (``scalecube nodes``): its name → a client for its engine."""
    from infra.docker.engine import engine_client
    from infra.docker.nodes import Nodes

    return {
        node.plan.name: node.engine(timeout=10)
        for node in Nodes(engine_client(), cluster).nodes()
        if node.container.status == "running"
    }


@docker_app.command("scale")
def scale_command(
    service: Service,
    count: Annotated[int, typer.Argument(metavar="N", help="how many containers")],
    timeout: Annotated[float, typer.Option(min=10, help="seconds to wait for them to be healthy")] = 300,
    project: ProjectName = "scalecube",
    project_dir: ProjectDir = REPO,
) -> None:
    """Run N containers of SERVICE (compose creates or removes them), then wait until all are healthy."""
    if count < 0:
        raise typer.BadParameter("must be 0 or more", param_hint="N")
    from infra.docker.ops.scale import scale

    with _errors("scale"):
        outcome = scale(_project(project_dir, project), service, count, timeout=timeout)
    _say("scale")(str(outcome))


@docker_app.command("rolling-restart")
def rolling_restart_command(
    service: Service,
    stop_timeout: Annotated[int, typer.Option(min=1, help="seconds the old container may drain before SIGKILL")] = 40,
    as_json: AsJson = False,
    project: ProjectName = "scalecube",
    project_dir: ProjectDir = REPO,
) -> None:
    """Replace SERVICE's containers one at a time: start one more, wait until healthy and in the balancer,
    then drain and stop an old one. Picks up a rebuilt image (compose's config for the new ones)."""
    from infra.docker.ops.rolling import RollingRestart, as_dict

    with _errors("rolling-restart"):
        restart = RollingRestart(
            _project(project_dir, project),
            service,
            stop_timeout=stop_timeout,
            say=(lambda _: None) if as_json else _say("rolling-restart"),
        )
        replacements = restart.run()
    if as_json:
        typer.echo(json.dumps(as_dict(replacements), indent=2))
    else:
        total = sum(r.total_s for r in replacements)
        _say("rolling-restart")(f"{service}: {len(replacements)} container(s) replaced in {total:.1f}s")


@docker_app.command("chaos")
def chaos_command(
    every: Annotated[float, typer.Option(min=0.5, help="seconds between kills")] = 10.0,
    duration: Annotated[float, typer.Option(min=1, max=3600, help="seconds the chaos (and its load) lasts")] = 60.0,
    target: Annotated[
        str, typer.Option(help="container: SIGKILL an api container; worker: one worker inside one")
    ] = "container",
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="client threads of the GET load")] = 8,
    keepalive: Annotated[
        bool, typer.Option(help="clients keep their connections (--no-keepalive: one per request)")
    ] = True,
    seed: Annotated[int | None, typer.Option(help="seed for the choice of victims (repeatable runs)")] = None,
    restart: Annotated[
        bool, typer.Option(help="start a killed container again, as a restart policy does after a crash")
    ] = True,
    url: Annotated[
        str | None, typer.Option(help="the balancer (default: where the lb container publishes 8080)")
    ] = None,
    as_json: AsJson = False,
    project: ProjectName = "scalecube",
    project_dir: ProjectDir = REPO,
) -> None:
    """Kill a random api container (or worker) every T seconds for a bounded time, under a bounded GET
    load against the balancer; print the kills and what the clients saw."""
    from rich.console import Console

    from infra.docker.ops.balancer import balancer_url
    from infra.docker.ops.chaos import TARGETS, Chaos, render

    if target not in TARGETS:
        raise typer.BadParameter(f"one of {', '.join(TARGETS)}", param_hint="--target")
    if every > duration:
        raise typer.BadParameter("no kill would happen: --every is longer than --duration", param_hint="--every")
    with _errors("chaos"):
        stack = _project(project_dir, project)
        chaos = Chaos(
            stack,
            url or balancer_url(stack),
            every=every,
            duration=duration,
            target=target,
            concurrency=concurrency,
            keepalive=keepalive,
            seed=seed,
            restart=restart,
            say=(lambda _: None) if as_json else _say("chaos"),
        )
        report = chaos.run()
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        render(report, Console())


@docker_app.command("logs")
def logs_command(
    service: Service,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines until Ctrl-C")] = False,
    tail: Annotated[int | None, typer.Option(min=0, help="only the last N lines of each container")] = None,
    since: Annotated[str | None, typer.Option(help="only lines newer than this: 10m, 2h, or an ISO time")] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t", help="show each line's timestamp")] = False,
    project: ProjectName = "scalecube",
    project_dir: ProjectDir = REPO,
) -> None:
    """SERVICE's logs from all its containers, merged, each line prefixed like compose (``api-1 | …``)."""
    from infra.docker.ops.logs import LogFollower, format_line, prefix_width, read_merged

    moment = parse_since(since) if since else None
    with _errors("logs"):
        stack = _project(project_dir, project)
        stack.require_service(service)
        containers = stack.containers(service, all=not follow)
        if not containers:
            typer.echo(f"scalecube docker logs: {service} has no running container", err=True)
            raise typer.Exit(1)
        from infra.docker.ops.project import short_name

        width = prefix_width(short_name(c) for c in containers)
        if not follow:
            for line in read_merged(containers, tail=tail, since=moment):
                typer.echo(format_line(line, width, timestamps=timestamps))
            return
        follower = LogFollower(containers, follow=True, tail=tail, since=moment)
        with follower, contextlib.suppress(KeyboardInterrupt):
            for line in follower:
                typer.echo(format_line(line, width, timestamps=timestamps))


def images_command(
    airgap: Annotated[
        bool, typer.Option("--airgap", help="no registry: base images from Debian packages, a wheelhouse, .env")
    ] = False,
    rebuild_base: Annotated[
        bool, typer.Option("--rebuild-base", help="with --airgap: build the base images again")
    ] = False,
) -> None:
    """Build the stack's images (scalecube-service, scalecube-locust), from the registries or air-gapped."""
    from infra.docker.engine import DockerError
    from infra.docker.images import build_images

    if rebuild_base and not airgap:
        raise typer.BadParameter("only with --airgap", param_hint="--rebuild-base")
    try:
        build_images(lambda line: typer.echo(f"scalecube images: {line}"), airgap=airgap, rebuild_base=rebuild_base)
    except DockerError as exc:
        typer.echo(f"scalecube images: {exc}", err=True)
        raise typer.Exit(2) from None


def _swarm_compose(project_dir: Path, stack: str, cluster: str | None) -> tuple[Compose, list[str]]:
    """The compose for ``stack``: on this engine (DOCKER_HOST), or on a manager of ``cluster`` and its nodes."""
    from infra.docker.compose import Compose

    if cluster is None:
        return Compose(project_dir, project=stack), []
    from infra.docker.engine import engine_client
    from infra.docker.nodes import Nodes

    nodes = Nodes(engine_client(), cluster)
    manager = nodes.manager()
    names = [node.plan.name for node in nodes.nodes()]
    return Compose(project_dir, project=stack, env={"DOCKER_HOST": manager.engine_url}), names


@docker_app.command("swarm-deploy")
def swarm_deploy_command(
    stack: Annotated[str, typer.Argument(metavar="STACK", help="the Swarm stack's name")] = "scalecube",
    nodes: NodesCluster = None,
    project_dir: ProjectDir = REPO,
) -> None:
    """Deploy docker-compose.yml to Docker Swarm (`docker stack deploy`), adapted as infra/docker/swarm.py says.

    Build the images first (`scalecube images`); the node must be a swarm manager (`docker swarm init`), or
    `--nodes CLUSTER` deploys to the engines `scalecube nodes up` started (their images loaded there).
    """
    from infra.docker import swarm

    with _errors("swarm-deploy"):
        compose, names = _swarm_compose(project_dir, stack, nodes)
        swarm.deploy(compose, stack, names)
    where = f" over {', '.join(names)} ({compose.env['DOCKER_HOST']})" if names else ""
    _say("swarm-deploy")(f"stack {stack} deployed{where}; `docker stack ps {stack}` shows its tasks")


@docker_app.command("swarm-rm")
def swarm_rm_command(
    stack: Annotated[str, typer.Argument(metavar="STACK")] = "scalecube",
    nodes: NodesCluster = None,
    project_dir: ProjectDir = REPO,
) -> None:
    """Remove a Swarm stack (`docker stack rm`)."""
    from infra.docker import swarm

    with _errors("swarm-rm"):
        compose, _ = _swarm_compose(project_dir, stack, nodes)
        swarm.remove(compose, stack)
    _say("swarm-rm")(f"stack {stack} removed")
