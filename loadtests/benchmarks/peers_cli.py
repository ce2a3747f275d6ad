"""``scalecube bench peers``: the command; the bench itself is ``loadtests.benchmarks.peers``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

EXIT_TARGET_MISSED = 1  # only with --strict
EXIT_CANNOT_RUN = 2  # no wrk, a server that would not start, ...


def bench_peers(
    seconds: Annotated[float, typer.Option(help="length of each load run (wrk takes whole seconds)")] = 8.0,
    rounds: Annotated[int, typer.Option(help="interleaved rounds (medians are reported)")] = 3,
    workers: Annotated[
        int | None, typer.Option(show_default="the CPUs available", help="workers of every target")
    ] = None,
    connections: Annotated[int, typer.Option(help="keep-alive connections on /")] = 64,
    cpu_connections: Annotated[
        int, typer.Option(help="keep-alive connections on /cpu (moderate: p99 is judged there)")
    ] = 8,
    cpu_iterations: Annotated[int, typer.Option(help="?iterations= of each /cpu request (90000 ≈ 3 ms)")] = 90_000,
    only: Annotated[
        list[str] | None, typer.Option(help="run only these targets (repeat the option); default all installed")
    ] = None,
    strict: Annotated[bool, typer.Option(help="exit 1 when a target does not hold")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """scalecube's cluster (rr, os) vs uvicorn --workers, gunicorn and granian: same app, same load, one run."""
    from loadtests.benchmarks import peers

    for name, value in (
        ("--seconds", seconds),
        ("--rounds", rounds),
        ("--connections", connections),
        ("--cpu-connections", cpu_connections),
        ("--cpu-iterations", cpu_iterations),
    ):
        if value < 1:
            raise typer.BadParameter("must be at least 1", param_hint=name)
    if workers is not None and workers < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--workers")
    known = [p.name for p in peers.PEERS]
    if only and (unknown := [n for n in only if n not in known]):
        raise typer.BadParameter(f"unknown target(s) {unknown}; known: {known}", param_hint="--only")
    if not peers.wrk_available():
        typer.echo(
            "scalecube bench peers: wrk is not installed, and this bench needs it: Python load generators "
            "(Locust, httpx threads) would be the bottleneck on this machine. Install wrk "
            "(apt-get install wrk) and run again.",
            err=True,
        )
        raise typer.Exit(EXIT_CANNOT_RUN)
    try:
        report = peers.run(
            seconds=seconds,
            rounds=rounds,
            workers=workers,
            connections=connections,
            cpu_connections=cpu_connections,
            cpu_iterations=cpu_iterations,
            names=only,
            progress=lambda line: typer.echo(f"… {line}", err=True),
        )
    except RuntimeError as exc:  # BenchError, wrk failing, no redis-server: a message, not a traceback
        typer.echo(f"scalecube bench peers: {exc}", err=True)
        raise typer.Exit(EXIT_CANNOT_RUN) from None
    if as_json:
        typer.echo(json.dumps(peers.as_dict(report), indent=2))
    else:
        peers.render(report)
    if strict and report.failed:
        raise typer.Exit(EXIT_TARGET_MISSED)
