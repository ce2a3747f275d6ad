"""PM2's everyday commands, for clusters on this machine: start, stop, restart, reload, scale, logs, delete.

Each finds a cluster by name or port through the masters' control sockets (``cluster.manage``);
``scalecube status`` (alias ``ls``) lists them. Registered on the ``scalecube`` app by ``scalecube.cli``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from cluster import logfiles, manage
from cluster.config import default_name, default_run_dir

PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
NameArgument = Annotated[str, typer.Argument(metavar="NAME|PORT", help="a cluster's name, or the port it listens on")]
Timeout = Annotated[float | None, typer.Option(help="seconds to wait before giving up (exit 1)")]


@contextlib.contextmanager
def _reporting(command: str) -> Iterator[None]:
    """A command's failure: one line (or a log tail) on stderr, a non-zero exit — never a traceback."""
    try:
        yield
    except manage.ManageError as exc:
        typer.echo(f"scalecube {command}: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except (ConnectionError, OSError, ValueError) as exc:  # a master gone mid-command, an answer cut short
        typer.echo(f"scalecube {command}: {exc}", err=True)
        raise typer.Exit(1) from None


def _serve_command() -> Any:
    """``scalecube serve`` as typer built it: its options, their types and checks, defined once there."""
    from scalecube.cli import app

    return typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]


def _show(clusters: list[manage.Running]) -> None:
    from cluster.status import render

    render([{"control": str(c.control), **c.snapshot} for c in clusters])


def start_command(
    ctx: typer.Context,
    target: Annotated[
        str | None,
        typer.Argument(
            metavar="[MODULE:APP|NAME]",
            show_default=False,
            help="an app to start (then any `scalecube serve` option), or the NAME of one started before; with --config, the apps to start (default: all)",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="the cluster's name (default: the app module's, e.g. api)")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="start the apps of this TOML file (like PM2's ecosystem file)")
    ] = None,
    timeout: Timeout = None,
) -> None:
    """Start clusters in the background (`pm2 start app.js -i 0`); returns once every worker listens.

    scalecube start MODULE:APP --name NAME --workers 4 --port 8000   (any serve option)

    scalecube start --config scalecube.toml NAME...   (no NAME: every app of the file)

    scalecube start NAME   (again, as it was started before)
    """
    from scalecube.appfile import check_options, load_apps

    run_dir = default_run_dir()
    with _reporting("start"):
        if config is not None:
            if name is not None:
                raise manage.ManageError(
                    "--name goes with MODULE:APP; in a config file each [apps.NAME] names its app", 2
                )
            specs = load_apps(config, _serve_command())
            wanted = [*([target] if target else []), *ctx.args]
            unknown = sorted(set(wanted) - {spec.name for spec in specs})
            if unknown:
                raise manage.ManageError(
                    f"{config} has no app {unknown[0]!r} (it has {', '.join(s.name for s in specs)})", 2
                )
            specs = [spec for spec in specs if not wanted or spec.name in wanted]
        elif target is None:
            raise manage.ManageError("give MODULE:APP, the NAME of an app started before, or --config FILE", 2)
        elif ":" in target:
            check_options(_serve_command(), target, ctx.args, "")
            specs = [manage.AppSpec(name=name or default_name(target), target=target, options=list(ctx.args))]
        else:
            if ctx.args or name:
                raise manage.ManageError(f"{target!r} is not MODULE:APP; an app started before takes no options", 2)
            specs = [manage.remembered(target, run_dir)]
    code = 0
    for spec in specs:  # like PM2: one app failing to start does not keep the others from starting
        try:
            cluster = manage.start(spec, run_dir, timeout or manage.START_TIMEOUT)
        except manage.ManageError as exc:
            typer.echo(f"scalecube start: {exc}", err=True)
            code = code or exc.exit_code
            continue
        typer.echo(f"started {cluster.label()}; its output: scalecube logs {spec.name}")
        _show([cluster])
    if code:
        raise typer.Exit(code)


def stop_command(target: NameArgument, timeout: Timeout = None) -> None:
    """Stop a cluster gracefully (`pm2 stop`): no new connections, every worker drains, the master exits. `all` stops every one."""
    with _reporting("stop"):
        clusters = manage.running() if target == "all" else [manage.find(target)]
        for cluster in clusters:
            manage.stop(cluster, timeout or manage.STOP_TIMEOUT)
            typer.echo(f"stopped {cluster.label()}")


def restart_command(target: NameArgument, timeout: Timeout = None) -> None:
    """Hard restart (`pm2 restart`): stop the whole cluster, master included, start it as it was started (its worker count kept).

    The port is closed in between; `scalecube reload` is the zero-downtime one.
    """
    with _reporting("restart"):
        cluster = manage.restart(target, default_run_dir(), timeout or manage.START_TIMEOUT)
        typer.echo(f"restarted {cluster.label()}")
        _show([cluster])


def reload_command(target: NameArgument, timeout: Timeout = None) -> None:
    """Zero-downtime rolling reload (`pm2 reload`): waits until done and reports each worker replaced. `all` reloads every one, in turn."""

    def report(replaced: list[dict[str, int]]) -> None:
        for r in replaced:
            typer.echo(
                f"  slot {r['slot']}: worker {r['old_id']} (pid {r['old_pid']}) -> "
                f"worker {r['new_id']} (pid {r['new_pid']})"
            )

    with _reporting("reload"):
        for cluster in manage.running() if target == "all" else [manage.find(target)]:
            typer.echo(f"reloading {cluster.label()}, one worker at a time ...")
            try:
                replaced = manage.reload(cluster, timeout or manage.RELOAD_TIMEOUT)
            except manage.ReloadFailed as exc:
                report(exc.replaced)
                raise
            report(replaced)
            typer.echo(f"reloaded {cluster.name}: {len(replaced)} worker(s) replaced")


def scale_command(
    target: NameArgument,
    count: Annotated[str, typer.Argument(metavar="N|+N|-N", help="workers to have, or to add / remove")],
    timeout: Timeout = None,
) -> None:
    """Scale a cluster to N workers (`pm2 scale app N`), or by +N / -N; returns once they listen."""
    with _reporting("scale"):
        cluster = manage.find(target)
        before = cluster.master["target_workers"]
        cluster = manage.scale(cluster, count, timeout or manage.START_TIMEOUT)
        typer.echo(f"scaled {cluster.name}: {before} -> {cluster.master['target_workers']} worker(s)")
        _show([cluster])


def logs_command(
    target: NameArgument,
    slot: Annotated[
        int | None,
        typer.Option(
            help="one worker's: its slot (status's slot column; like PM2's instance id, kept across restarts)"
        ),
    ] = None,
    lines: Annotated[int, typer.Option(min=0, help="how many of the last lines to show")] = 15,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="then print new lines as they come, until Ctrl-C")
    ] = False,
) -> None:
    """A cluster's output (`pm2 logs`): the master's and every worker's, merged by time, each line labelled."""
    with _reporting("logs"):
        folder = manage.logs_of(target, default_run_dir())
        if slot is not None and not logfiles.worker_log(folder, slot).exists():
            slots = [label for label, _ in logfiles.sources(folder) if label != logfiles.MASTER]
            raise manage.ManageError(f"no log for slot {slot} in {folder} (slots: {', '.join(slots) or 'none'})")
    for line in logfiles.merged_tail(folder, lines, slot):
        typer.echo(line)
    if follow:
        # Ctrl-C (or SIGTERM) only sets a flag the loop checks between reads: a KeyboardInterrupt raised at
        # an arbitrary point could land in the middle of a write, and once in CI a follower outlived its SIGINT.
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        logfiles.follow(folder, typer.echo, slot, should_stop=stop.is_set)


def delete_command(target: NameArgument) -> None:
    """Stop a cluster if it runs, forget how it was started and remove its logs (`pm2 delete`)."""
    with _reporting("delete"):
        for line in manage.delete(target, default_run_dir()):
            typer.echo(line)


def register(app: typer.Typer) -> None:
    app.command("start", context_settings=PASS_THROUGH)(start_command)
    app.command("stop")(stop_command)
    app.command("restart")(restart_command)
    app.command("reload")(reload_command)
    app.command("scale", context_settings={"ignore_unknown_options": True})(scale_command)  # -1 is a count
    app.command("logs")(logs_command)
    app.command("delete")(delete_command)
