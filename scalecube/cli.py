"""The ``scalecube`` command."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from cluster.config import MASTER_HOOK_ENV, ClusterConfig
from cluster.handoff import HandoffLimits

_HANDOFF = HandoffLimits()  # the defaults, defined once in cluster.handoff
_CLUSTER = ClusterConfig  # serve's defaults: its fields' (cluster.config), never copies

app = typer.Typer(
    help="scalecube: clone, decompose and split a web application — and measure it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def parse_workers(value: str) -> int:
    if value == "auto":
        from cluster.cpus import available_cpus

        return available_cpus()
    try:
        count = int(value)
    except ValueError:
        raise typer.BadParameter(f"expected 'auto' or a whole number, got {value!r}") from None
    if count < 1:
        raise typer.BadParameter("needs at least 1 worker")
    return count


def _check_workers(value: str) -> str:
    parse_workers(value)  # while parsing, so `scalecube start` and config files are checked before starting
    return value


def _check_policy(value: str) -> str:
    from cluster.config import POLICIES

    if value not in POLICIES:
        raise typer.BadParameter(f"policy must be one of {', '.join(POLICIES)}, got {value!r}")
    return value


@app.command()
def serve(
    target: Annotated[str, typer.Argument(metavar="MODULE:APP", help="the ASGI app each worker imports")],
    workers: Annotated[
        str, typer.Option(envvar="WORKERS", callback=_check_workers, help="'auto' = the CPUs this process may use")
    ] = "auto",
    policy: Annotated[
        str,
        typer.Option(
            envvar="POLICY",
            callback=_check_policy,
            help="rr: the master hands each connection to the next worker with room; least: to an idle worker, else it waits in the master for the first to finish; os: the kernel decides",
        ),
    ] = _CLUSTER.policy,
    host: Annotated[str, typer.Option(envvar="HOST")] = _CLUSTER.host,
    port: Annotated[int, typer.Option(envvar="PORT")] = _CLUSTER.port,
    health_port: Annotated[
        int | None,
        typer.Option(
            envvar="HEALTH_PORT",
            help="the master answers /healthz and /readyz here for probes, even when every worker is busy (0 = any free port)",
        ),
    ] = _CLUSTER.health_port,
    handoff_limit: Annotated[
        int,
        typer.Option(
            envvar="HANDOFF_LIMIT",
            min=1,
            help="rr: connections one worker may hold before it has started on them (least: 1 unanswered); the rest wait in the master",
        ),
    ] = _HANDOFF.limit,
    max_queue: Annotated[
        int,
        typer.Option(
            envvar="MAX_QUEUE",
            min=0,
            help="rr/least: connections the master holds when every worker is full; more get a fast 503",
        ),
    ] = _HANDOFF.max_queue,
    queue_timeout: Annotated[
        float,
        typer.Option(
            envvar="QUEUE_TIMEOUT", help="rr/least: seconds a connection may wait in the master before a fast 503"
        ),
    ] = _HANDOFF.queue_timeout,
    drain_timeout: Annotated[
        float, typer.Option(help="seconds a leaving worker may finish requests")
    ] = _CLUSTER.drain_timeout,
    keep_alive: Annotated[
        float,
        typer.Option(help="seconds an idle keep-alive connection stays open (keep above any balancer's reuse window)"),
    ] = _CLUSTER.keep_alive,
    max_requests: Annotated[
        int, typer.Option(help="recycle a worker after N requests (0 = never)")
    ] = _CLUSTER.max_requests,
    max_requests_jitter: Annotated[
        int, typer.Option(help="plus up to N more, per worker")
    ] = _CLUSTER.max_requests_jitter,
    max_rss_mb: Annotated[
        float, typer.Option(help="recycle a worker above this RSS (0 = never)")
    ] = _CLUSTER.max_rss_mb,
    max_crashes: Annotated[
        int, typer.Option(help="crashes within --crash-window before the master exits 1 (0 = never)")
    ] = _CLUSTER.max_crashes,
    crash_window: Annotated[float, typer.Option()] = _CLUSTER.crash_window,
    control: Annotated[
        Path | None, typer.Option(help="control socket (default $SCALECUBE_RUN_DIR/cluster-PORT.sock)")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="what `scalecube reload/scale/stop/logs NAME` call it (default: the app module's name, e.g. api)"
        ),
    ] = None,
    log_dir: Annotated[
        Path | None,
        typer.Option(help="each worker's output to DIR/worker-SLOT.log (`scalecube logs`); default: this terminal"),
    ] = None,
    master_hook: Annotated[
        str,
        typer.Option(
            envvar=MASTER_HOOK_ENV,
            help="MODULE:ATTR run in the master with the cluster (default: the app package's master:on_master, if there is one); the app itself is never imported there",
        ),
    ] = _CLUSTER.master_hook,
) -> None:
    """Run MODULE:APP as a cluster: one master, one worker per core behind one port.

    Signals to the master: SIGUSR2/SIGHUP rolling reload, SIGTERM/SIGINT graceful
    stop, SIGTTIN one worker more, SIGTTOU one fewer. In the background: `scalecube start`.
    """
    from cluster.config import ClusterConfig
    from cluster.master import configure_master_logging, run_cluster
    from cluster.master import log as master_log

    configure_master_logging()
    try:
        config = ClusterConfig(
            app=target,
            workers=parse_workers(workers),
            policy=policy,
            host=host,
            port=port,
            health_port=health_port,
            handoff=HandoffLimits(limit=handoff_limit, max_queue=max_queue, queue_timeout=queue_timeout),
            drain_timeout=drain_timeout,
            keep_alive=keep_alive,
            max_requests=max_requests,
            max_requests_jitter=max_requests_jitter,
            max_rss_mb=max_rss_mb,
            max_crashes=max_crashes,
            crash_window=crash_window,
            control_path=control,
            name=name or "",
            log_dir=log_dir.resolve() if log_dir else None,
            master_hook=master_hook,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    from kit import secrets

    if secrets.provide("SESSION_SECRET"):  # before any worker starts: each one inherits it
        master_log.info(
            "SESSION_SECRET is not set: made a random one, shared by this cluster's workers only (one cluster, "
            "one secret); set SESSION_SECRET or SESSION_SECRET_FILE for sessions valid across clusters"
        )
    try:
        code = run_cluster(config)
    except OSError as exc:  # e.g. the port is taken
        typer.echo(f"scalecube serve: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


StateDirOption = Annotated[
    Path | None,
    typer.Option(
        envvar="SCALECUBE_STATE_DIR",
        show_default=False,
        help="the local stack's state file and logs (default ~/.local/state/scalecube)",
    ),
]


def _state_dir(option: Path | None) -> Path:
    from infra.local.state import default_state_dir

    # Absolute: a detached supervisor runs from the project root, not from here.
    return (option or default_state_dir()).expanduser().resolve()


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable: {stack, clusters, stopped}")] = False,
    control: Annotated[Path | None, typer.Option(help="one master's control socket")] = None,
    state_dir: StateDirOption = None,
) -> None:
    """Workers of every running cluster on this machine (like `pm2 ls`), the apps `scalecube start` started
    that are stopped now, and the local stack if one runs."""
    from rich.console import Console

    from cluster import manage
    from cluster import status as cluster_status
    from infra.local.report import render_stack
    from infra.local.stack_status import stack_status

    paths = [control] if control else cluster_status.discover()
    snapshots = cluster_status.collect(paths)
    stack = None if control else stack_status(_state_dir(state_dir))
    stopped = [] if control else [spec.name for spec in manage.stopped()]  # `scalecube start`ed, not running now
    if as_json:
        typer.echo(json.dumps({"stack": stack, "clusters": snapshots, "stopped": stopped}, indent=2))
    else:
        console = Console()
        if stack is not None:
            render_stack(stack, console)
        if snapshots or stack is None:
            cluster_status.render(snapshots, console)
        if stopped:
            console.print(f"stopped: {', '.join(stopped)} (`scalecube start NAME` starts one again)")
    if control and not snapshots:
        raise typer.Exit(1)


@app.command()
def up(
    port: Annotated[
        int,
        typer.Option(
            envvar="PORT", min=1, max=65535, help="the stack's front door: the balancer's, or the api's with --lb none"
        ),
    ] = 8080,
    api: Annotated[
        int,
        typer.Option(
            help="api replicas (1-8), each a cluster on its own loopback address (127.0.0.2...) like a container"
        ),
    ] = 1,
    lb: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="python | haproxy | none (default: none for one replica, else haproxy if installed, else python)",
        ),
    ] = None,
    sticky: Annotated[
        bool,
        typer.Option("--sticky/--no-sticky", help="the balancer pins each client to a replica (cookie SCALECUBE_LB)"),
    ] = False,
    workers: Annotated[
        str, typer.Option(envvar="WORKERS", help="workers per api replica; 'auto' = one per CPU")
    ] = "auto",
    policy: Annotated[
        str,
        typer.Option(
            envvar="POLICY",
            help="each cluster's: rr (master hands out connections), least (to an idle worker), os (kernel)",
        ),
    ] = "rr",
    session_backend: Annotated[str, typer.Option(envvar="SESSION_BACKEND", help="redis or memory")] = "redis",
    redis_port: Annotated[int, typer.Option(min=0, max=65535, help="0 = any free port")] = 0,
    stats_port: Annotated[
        int, typer.Option(min=1, max=65535, help="the balancer's stats page (HAProxy) / admin page (Python)")
    ] = 8404,
    api_port: Annotated[
        int,
        typer.Option(
            min=0,
            max=65535,
            help="the port every replica listens on, behind a balancer; 0 = any port free on all their addresses",
        ),
    ] = 0,
    dns_port: Annotated[
        int,
        typer.Option(min=0, max=65535, help="the loopback DNS server's (UDP), behind a balancer; 0 = any free port"),
    ] = 0,
    services: Annotated[
        str,
        typer.Option(
            help="all: the api plus auth, the router and two shards, each with its Redis (one worker each); api: the api alone, lighter"
        ),
    ] = "all",
    redis: Annotated[
        str,
        typer.Option(
            help="the sessions Redis: single (one server, the default: lighter) or sentinel (a primary, a replica "
            "and three Sentinels that fail over; logins wait until the replica holds the session)"
        ),
    ] = "single",
    state_dir: StateDirOption = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="run in the background (`scalecube down`)")] = False,
    detached_child: Annotated[bool, typer.Option("--detached-child", hidden=True)] = False,
) -> None:
    """Run Redis and the api on this machine, no Docker, until Ctrl-C (or `-d` and `scalecube down`).

    One api cluster on --port; or, with --api N, N replicas on 127.0.0.2.. (one port, named `api` by a loopback DNS server, like compose's containers) behind HAProxy or the Python balancer on --port.
    With --services all (the default) also auth, the shard router and shards a and b, each with its own Redis; behind a balancer, /auth/* goes to auth and /users* to the router.
    """
    from rich.console import Console

    from infra.local.errors import StackError
    from infra.local.report import ConsoleReporter
    from infra.local.stack import LocalStack, StackOptions, choose_balancer, stack_secrets
    from infra.local.state import StateFile
    from infra.local.supervisor import Supervisor, start_detached

    parse_workers(workers)
    from cluster.config import POLICIES

    if policy not in POLICIES:
        raise typer.BadParameter(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}", param_hint="--policy")
    if services not in ("all", "api"):
        raise typer.BadParameter(f"must be all or api, got {services!r}", param_hint="--services")
    if session_backend not in ("redis", "memory"):
        raise typer.BadParameter(f"must be redis or memory, got {session_backend!r}", param_hint="--session-backend")
    from infra.local.stack import REDIS_TOPOLOGIES

    if redis not in REDIS_TOPOLOGIES:
        raise typer.BadParameter(f"must be {' or '.join(REDIS_TOPOLOGIES)}, got {redis!r}", param_hint="--redis")
    errors = Console(stderr=True, soft_wrap=True)
    try:
        balancer = choose_balancer(api, lb, sticky)  # before anything starts: HAProxy missing, --sticky alone...
        options = StackOptions(
            state_dir=_state_dir(state_dir),
            port=port,
            workers=workers,
            policy=policy,
            session_backend=session_backend,
            redis_port=redis_port,
            api=api,
            lb=balancer,
            sticky=sticky,
            stats_port=stats_port,
            api_port=api_port,
            dns_port=dns_port,
            services=services,
            redis=redis,
        )
        stack_secrets(options.state_dir)  # made or checked before anything starts (a placeholder is refused here)
        reporter = ConsoleReporter()
        if detach:
            reporter.ready(start_detached(options), options.state_dir, detached=True)
            return
        stack = LocalStack.from_options(options)
        code = Supervisor(stack, StateFile(options.state_dir), reporter, detached=detached_child).run()
    except StackError as exc:
        if str(exc):
            errors.print(f"scalecube up: {exc}", markup=False, highlight=False)
        raise typer.Exit(exc.exit_code) from None
    raise typer.Exit(code)


@app.command("prometheus-config")
def prometheus_config(state_dir: StateDirOption = None) -> None:
    """Write STATE_DIR/prometheus.yml: every component of the running local stack as a static target, with the
    same labels and recording rules as in compose; prints how to run Debian's Prometheus against it."""
    from infra.local.state import StateFile
    from infra.prometheus.local import write_local_config

    folder = _state_dir(state_dir)
    state = StateFile(folder).read()
    if state is None or not state.components:
        typer.echo(f"no local stack in {folder} (scalecube up -d first)", err=True)
        raise typer.Exit(1)
    path = write_local_config(folder, state.components)
    typer.echo(f"wrote {path}")
    typer.echo(
        f"run: prometheus --config.file {path} --storage.tsdb.path {folder / 'prometheus-data'} "
        "--web.listen-address 127.0.0.1:9090"
    )


@app.command()
def console(
    port: Annotated[int, typer.Option(min=1, max=65535, help="where the console listens, on 127.0.0.1")] = 8090,
    prometheus: Annotated[
        str, typer.Option(help="Prometheus's URL (run it against `scalecube prometheus-config`'s file)")
    ] = "http://127.0.0.1:9090",
    locust: Annotated[str, typer.Option(help="a Locust web UI's URL, for the swarm actions")] = "http://127.0.0.1:8089",
    state_dir: StateDirOption = None,
) -> None:
    """The console for the local stack (`scalecube up -d`): its topology, live rates from Prometheus, and actions by
    signals, on http://127.0.0.1:PORT (loopback only, so no password). The compose stack runs its own console."""
    from infra.local.state import StateFile

    folder = _state_dir(state_dir)
    state = StateFile(folder).read()
    if state is None or not state.components:
        typer.echo(f"no local stack in {folder} (scalecube up -d first)", err=True)
        raise typer.Exit(1)
    urls = {c["name"]: c.get("url", "") for c in state.components}
    env = {
        **os.environ,
        "CONSOLE_BACKEND": "local",
        "CONSOLE_STATE_DIR": str(folder),
        "PROMETHEUS_URL": prometheus,
        "LOCUST_URL": locust,
        "REDIS_URL": urls.get("redis") or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "ROUTER_URL": urls.get("router") or "http://127.0.0.1:1",  # no router in the stack: the panel says down
    }
    env.pop("CONSOLE_PASSWORD", None)  # loopback only
    argv = [sys.executable, "-m", "scalecube", "serve", "services.console.app:app"]
    argv += ["--workers", "1", "--host", "127.0.0.1", "--port", str(port), "--health-port", "0"]
    typer.echo(f"console: http://127.0.0.1:{port} (the local stack in {folder})")
    os.execve(sys.executable, argv, env)  # the console's master in this process's place: signals reach it


@app.command()
def down(state_dir: StateDirOption = None) -> None:
    """Stop the local stack (`scalecube up -d`), last started first: the balancer, the api (it drains), Redis."""
    from rich.console import Console

    from infra.local.report import render_down
    from infra.local.shutdown import stop_stack

    folder = _state_dir(state_dir)
    render_down(stop_stack(folder), folder, Console(soft_wrap=True))


@app.command()
def lb(
    listen: Annotated[
        str | None, typer.Option(help="HOST:PORT for clients (default from the config: 0.0.0.0:8080)")
    ] = None,
    admin: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT of the status page, JSON and /metrics (default from the config: 127.0.0.1:8404); user admin, password LB_ADMIN_PASSWORD"
        ),
    ] = None,
    admin_password_file: Annotated[
        Path | None,
        typer.Option(
            help="where a generated admin password goes when LB_ADMIN_PASSWORD (and LB_ADMIN_PASSWORD_FILE) is unset (default: STATE_DIR/lb-admin-PORT.password, mode 0600)"
        ),
    ] = None,
    upstream: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=SPEC, repeatable; SPEC is static:H:P,H:P | dns:NAME:PORT[@NS] | docker:SERVICE:PORT, or with --discovery just the address part"
        ),
    ] = None,
    route: Annotated[list[str] | None, typer.Option(help="PREFIX=UPSTREAM, repeatable")] = None,
    check_port: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=PORT, repeatable: that upstream's health checks go to this port of each backend (its cluster master's --health-port)"
        ),
    ] = None,
    discovery: Annotated[
        str | None, typer.Option(help="static|dns|docker: how to read --upstream values without a scheme")
    ] = None,
    policy: Annotated[str | None, typer.Option(help="rr|leastconn for every upstream")] = None,
    sticky: Annotated[
        bool | None, typer.Option("--sticky/--no-sticky", help="pin clients with a signed cookie")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="the balancer's TOML file (default lb/balancer.toml)")] = None,
    connect_timeout: Annotated[float | None, typer.Option()] = None,
    read_timeout: Annotated[float | None, typer.Option()] = None,
    idle_timeout: Annotated[float | None, typer.Option()] = None,
    header_timeout: Annotated[float | None, typer.Option()] = None,
    max_header_bytes: Annotated[int | None, typer.Option()] = None,
    max_headers: Annotated[int | None, typer.Option()] = None,
    max_connections: Annotated[int | None, typer.Option()] = None,
    max_connections_per_client: Annotated[
        int | None, typer.Option(help="open connections one client address may hold; more get a 429")
    ] = None,
    retries: Annotated[int | None, typer.Option()] = None,
    health_interval: Annotated[float | None, typer.Option()] = None,
    discovery_interval: Annotated[float | None, typer.Option()] = None,
) -> None:
    """The Python balancer: round-robin or least-connections, sticky cookies, health checks, retries, discovery."""
    from lb import app as lb_app
    from lb.config import ConfigError, load_config, with_overrides

    logging.basicConfig(level=logging.INFO, format="%(asctime)s [lb %(process)d] %(levelname)s %(message)s")
    specs = [_with_scheme(text, discovery) for text in upstream or []]
    try:
        settings = with_overrides(
            load_config(config),
            upstreams=specs,
            routes=route or [],
            listen=listen,
            admin_listen=admin,
            sticky=sticky,
            check_ports=check_port or [],
        )
        settings = lb_app.with_cli_settings(
            settings,
            policy=policy,
            timeouts__connect=connect_timeout,
            timeouts__read=read_timeout,
            timeouts__idle=idle_timeout,
            timeouts__header=header_timeout,
            limits__max_header_bytes=max_header_bytes,
            limits__max_headers=max_headers,
            limits__max_connections=max_connections,
            limits__retries=retries,
            limits__max_connections_per_client=max_connections_per_client,
            health__interval=health_interval,
            discovery__interval=discovery_interval,
        )
        settings.sticky.secret()  # a known or short LB_STICKY_SECRET(_FILE) refuses to start, sticky or not
        password_file = admin_password_file or _state_dir(None) / f"lb-admin-{settings.admin_listen[1]}.password"
        password = lb_app.admin_password(settings, password_file)
    except (ConfigError, ValueError) as exc:
        typer.echo(f"scalecube lb: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        lb_app.run(settings, password)
    except OSError as exc:
        typer.echo(f"scalecube lb: {exc}", err=True)
        raise typer.Exit(2) from None


def _with_scheme(text: str, discovery: str | None) -> str:
    """``api=127.0.0.1:8001`` + ``--discovery static`` -> ``api=static:127.0.0.1:8001``."""
    name, sep, spec = text.partition("=")
    if discovery and sep and not spec.startswith(("static:", "dns:", "docker:")):
        return f"{name}={discovery}:{spec}"
    return text


bench = typer.Typer(help="Benchmarks: side by side in one run, reported as ratios.", no_args_is_help=True)
app.add_typer(bench, name="bench")


def _show(
    report: object, as_dict: Callable[[Any], dict[str, Any]], render: Callable[[Any], None], as_json: bool
) -> None:
    """Every benchmark prints the same way: a table for people, or JSON for scripts."""
    if as_json:
        typer.echo(json.dumps(as_dict(report), indent=2))
    else:
        render(report)


@bench.command("foundation")
def bench_foundation(
    connections: Annotated[int, typer.Option(help="new connections for the spread test")] = 1000,
    seconds: Annotated[float, typer.Option(help="length of each load run")] = 10.0,
    concurrency: Annotated[int, typer.Option(help="concurrent clients")] = 16,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """rr vs os spread, failures during a rolling reload, and 1 worker vs per-core on /cpu."""
    from loadtests.benchmarks import foundation
    from loadtests.benchmarks.render import render_foundation

    report = foundation.run(connections=connections, seconds=seconds, concurrency=concurrency)
    _show(report, foundation.as_dict, render_foundation, as_json)


@bench.command("balancers")
def bench_balancers(
    seconds: Annotated[float, typer.Option(help="length of each throughput run")] = 10.0,
    connections: Annotated[int, typer.Option(help="concurrent connections in the throughput runs")] = 32,
    rounds: Annotated[int, typer.Option(help="interleaved rounds (medians are reported)")] = 3,
    replicas: Annotated[int, typer.Option(help="api replicas behind each balancer")] = 3,
    workers: Annotated[int, typer.Option(help="workers per replica")] = 1,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Direct vs HAProxy vs the Python balancer: same replicas, same load, one run."""
    from loadtests.benchmarks import balancers
    from loadtests.benchmarks.render import render_balancers

    report = balancers.run(seconds=seconds, connections=connections, rounds=rounds, replicas=replicas, workers=workers)
    _show(report, balancers.as_dict, render_balancers, as_json)


@bench.command("router")
def bench_router(
    seconds: Annotated[float, typer.Option(help="length of each throughput run")] = 5.0,
    connections: Annotated[int, typer.Option(help="concurrent connections in the throughput runs")] = 32,
    rounds: Annotated[int, typer.Option(help="interleaved rounds (medians are reported)")] = 3,
    router_workers: Annotated[int, typer.Option(help="router workers")] = 1,
    shard_workers: Annotated[int, typer.Option(help="shard workers")] = 1,
    placement: Annotated[
        str,
        typer.Option(
            help="shared | split | router-alone | all: where the router, the shard and the load generator run"
        ),
    ] = "all",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """GET /users/{id} through the router vs straight to the shard: same shard, same run, interleaved."""
    from loadtests.benchmarks import router as router_bench

    placements = tuple(router_bench.PLACEMENTS) if placement == "all" else (placement,)
    if not set(placements) <= set(router_bench.PLACEMENTS):
        raise typer.BadParameter("shared, split, router-alone or all", param_hint="--placement")
    report = router_bench.run(
        seconds=seconds,
        connections=connections,
        rounds=rounds,
        router_workers=router_workers,
        shard_workers=shard_workers,
        placements=placements,
    )
    _show(report, router_bench.as_dict, router_bench.render, as_json)


shard = typer.Typer(help="The users store's shards (splitting by country).", no_args_is_help=True)
app.add_typer(shard, name="shard")


@shard.command("move")
def shard_move(
    country: Annotated[str, typer.Argument(metavar="COUNTRY", help="ISO 3166-1 alpha-2 code, e.g. FR")],
    target: Annotated[str | None, typer.Argument(metavar="[SHARD]", help="where to move it (not with --abort)")] = None,
    router_redis: Annotated[
        str,
        typer.Option(
            envvar=["ROUTER_REDIS_URL", "REDIS_URL"], help="the router's Redis: directory, map overrides, moves"
        ),
    ] = "redis://127.0.0.1:6379/0",
    shard_map: Annotated[
        Path | None,
        typer.Option(envvar="SHARD_MAP", show_default=False, help="the router's map file (default: the packaged one)"),
    ] = None,
    shard_urls: Annotated[str, typer.Option(envvar="SHARD_URLS", help="shard-a=http://HOST:PORT,shard-b=...")] = "",
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="users per copy and delete batch")] = 500,
    throttle: Annotated[float, typer.Option(min=0, help="seconds between batches, to spare the shards")] = 0.0,
    grace: Annotated[
        float,
        typer.Option(
            min=0, help="seconds between the flip and deleting from the old shard (> the routers' MAP_CACHE_SECONDS)"
        ),
    ] = 1.5,
    abort: Annotated[bool, typer.Option("--abort", help="undo a move that has not flipped yet")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Move COUNTRY's users to SHARD online: copy, catch up, flip the map, clean up. Re-run to resume."""
    import asyncio

    from kit import secrets
    from kit.errors import DependencyUnavailable
    from services.router.move import MoveError, MoveReport, run_move
    from services.router.shard_map import DEFAULT_MAP_FILE, ShardMapError

    try:
        outcome = asyncio.run(
            run_move(
                country,
                target,
                router_redis_url=router_redis,
                shard_map=str(shard_map or DEFAULT_MAP_FILE),
                redis_password=secrets.from_environment("REDIS_PASSWORD"),  # REDIS_PASSWORD or REDIS_PASSWORD_FILE
                shard_urls=shard_urls,
                abort=abort,
                batch=batch,
                throttle=throttle,
                grace=grace,
                say=None if as_json else (lambda line: typer.echo(f"scalecube shard move: {line}")),
            )
        )
    except (MoveError, ShardMapError, secrets.SecretError) as exc:
        typer.echo(f"scalecube shard move: {exc}", err=True)
        raise typer.Exit(2) from None
    except DependencyUnavailable as exc:
        typer.echo(f"scalecube shard move: {exc}; run the same command again to resume", err=True)
        raise typer.Exit(1) from None
    if isinstance(outcome, MoveReport):
        if as_json:
            typer.echo(json.dumps(outcome.as_dict(), indent=2))
    else:
        typer.echo(json.dumps({"message": outcome}) if as_json else f"scalecube shard move: {outcome}")


secrets_app = typer.Typer(help="Random secrets where none is set: never a known placeholder.", no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")


@secrets_app.command("write")
def secrets_write(
    directory: Annotated[Path, typer.Argument(help="one file per secret: DIRECTORY/NAME")],
    mode: Annotated[
        str, typer.Option(help="the files' mode, octal (0444: containers running as other users read them)")
    ] = "0600",
) -> None:
    """One file per secret (SESSION_SECRET, LB_COOKIE_KEY, LB_STICKY_SECRET, REDIS_PASSWORD, LB_ADMIN_PASSWORD):
    the environment's value where set (it wins), else the file's own, else a new random one. Compose's
    `secrets` service runs it once into a volume every replica reads (NAME_FILE)."""
    from kit import secrets

    try:
        paths = secrets.write_missing(directory, environ=None, mode=int(mode, 8))
    except (secrets.SecretError, ValueError) as exc:
        typer.echo(f"scalecube secrets write: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"scalecube secrets write: {', '.join(paths)} in {directory} (values not shown)")


@secrets_app.command("k8s")
def secrets_k8s(
    path: Annotated[
        Path | None, typer.Argument(show_default=False, help="default: infra/k8s/secrets.env (gitignored)")
    ] = None,
) -> None:
    """Write infra/k8s/secrets.env (kustomize's secretGenerator input, mode 0600): random values, keeping
    valid ones already there; the environment's values where set. `kubectl apply -k infra/k8s` needs it."""
    from infra.k8s.copies import K8S_DIR
    from kit import secrets

    target = path or K8S_DIR / "secrets.env"
    try:
        values = secrets.write_env_file(target, header=K8S_SECRETS_HEADER)
    except secrets.SecretError as exc:
        typer.echo(f"scalecube secrets k8s: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"scalecube secrets k8s: {', '.join(values)} in {target} (values not shown)")


K8S_SECRETS_HEADER = """\
# Written by `scalecube secrets k8s` (random values; never commit this file: it is gitignored).
# kustomize turns it into the Secret `scalecube-secrets` (a new name on every change, so the pods that read it roll).
"""


def _register_commands() -> None:
    """Commands that live next to what they drive (each module keeps its heavy imports inside the command)."""
    from infra.docker.cli import docker_app, images_command
    from infra.docker.nodes_cli import nodes_app
    from loadtests.benchmarks.peers_cli import bench_peers
    from loadtests.demo_cli import demo_app
    from loadtests.locust_cli import locust_command
    from scalecube import pm

    app.command("ls", help="The same as `scalecube status` (`pm2 ls`).")(status)
    pm.register(app)
    bench.command("peers")(bench_peers)
    app.command("locust")(locust_command)
    app.add_typer(demo_app, name="demo")
    app.add_typer(docker_app, name="docker")
    app.command("images")(images_command)
    app.add_typer(nodes_app, name="nodes")


_register_commands()


def main() -> None:
    app(prog_name="scalecube")


if __name__ == "__main__":
    sys.exit(main())
