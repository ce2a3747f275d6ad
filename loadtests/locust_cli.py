"""``scalecube locust``: Locust against the local stack, in its web UI or headless.

This process never imports Locust (it monkey-patches everything with gevent): it checks
the target, builds Locust's command line and replaces itself with it (``exec``), so
Ctrl-C and signals go straight to Locust and its exit code is the command's.

Every class needs the api; some need auth or the shard router too (``loadtests.locust.target``).
Behind a balancer the host routes them. The local stack without one (``scalecube up``: the api alone
on :8080) does not: its state file says where auth and the router listen, and the users are told
(``SCALECUBE_AUTH_URL`` / ``SCALECUBE_ROUTER_URL``). A class named with ``--class`` that the target
cannot serve is refused here, saying why; by default such classes are simply not offered.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

PROFILES = Path(__file__).resolve().parent / "locust"
LOCUSTFILE = PROFILES / "locustfile.py"
SHAPES = {"step": PROFILES / "shapes" / "step.py", "ramp": PROFILES / "shapes" / "ramp.py"}
USER_CLASSES = ("CloningUser", "SessionUser", "SplittingUser", "AuthUser", "MixedUser")
PART_URL_ENV = {"auth": "SCALECUBE_AUTH_URL", "router": "SCALECUBE_ROUTER_URL"}
EXIT_NO_TARGET = 1
EXIT_NO_LOCUST = 2


def locust_command(
    host: Annotated[
        str,
        typer.Option(envvar="SCALECUBE_LOCUST_HOST", help="the stack's front door (`scalecube up` listens on 8080)"),
    ] = "http://127.0.0.1:8080",
    web_host: Annotated[
        str, typer.Option(help="the web UI's address; 0.0.0.0 exposes it beyond this machine")
    ] = "127.0.0.1",
    web_port: Annotated[int, typer.Option(min=1, max=65535, help="the web UI's port")] = 8089,
    headless: Annotated[bool, typer.Option("--headless", help="no web UI: run now, print the statistics (CI)")] = False,
    users: Annotated[int | None, typer.Option("--users", "-u", min=1, help="peak number of users")] = None,
    spawn_rate: Annotated[
        float | None, typer.Option("--spawn-rate", "-r", min=0.001, help="users started per second")
    ] = None,
    run_time: Annotated[
        str | None, typer.Option("--run-time", "-t", help="stop after e.g. 30s, 5m, 1h30m (headless)")
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(help="Locust worker processes (-1 = one per core): a master and N workers on this machine"),
    ] = None,
    user_class: Annotated[
        list[str] | None,
        typer.Option(
            "--class", help=f"user class to run, repeatable: {', '.join(USER_CLASSES)} (default: all, by weight)"
        ),
    ] = None,
    tags: Annotated[
        list[str] | None,
        typer.Option(
            "--tags",
            help="run only tasks with this tag, repeatable (root, cpu, me, login, users-create, users-read, users-list, auth-register, auth-login, or an axis: cloning, sessions, splitting, auth)",
        ),
    ] = None,
    exclude_tags: Annotated[
        list[str] | None, typer.Option("--exclude-tags", help="skip tasks with this tag, repeatable")
    ] = None,
    shape: Annotated[
        str | None,
        typer.Option(
            help="step | ramp: users over time from a load shape (SCALECUBE_SHAPE_* variables; ignores --users/--run-time)"
        ),
    ] = None,
    max_fail_ratio: Annotated[
        float | None,
        typer.Option(
            min=0, max=1, help="threshold: most failures allowed, share of requests (0 = none); broken -> exit 3"
        ),
    ] = None,
    max_p95_ms: Annotated[
        float, typer.Option(min=0, help="threshold: highest p95 in ms (0 = off); broken -> exit 3")
    ] = 0.0,
    max_p99_ms: Annotated[
        float, typer.Option(min=0, help="threshold: highest p99 in ms (0 = off); broken -> exit 3")
    ] = 0.0,
    csv: Annotated[
        Path | None, typer.Option(help="write Locust's CSV statistics with this prefix (with the full history)")
    ] = None,
    served_by_file: Annotated[
        Path | None, typer.Option(help="write the X-Served-By tally here as JSON at test stop")
    ] = None,
    cpu_iterations: Annotated[
        int | None, typer.Option(min=1, help="iterations of GET /cpu (default 90000, ~3 ms)")
    ] = None,
    auth_passwords: Annotated[
        bool | None,
        typer.Option(
            "--auth-passwords/--no-auth-passwords",
            show_default=False,
            help="session users register at auth and send passwords (the api checks them at AUTH_URL), or not (default: yes wherever the target has auth)",
        ),
    ] = None,
    auth_url: Annotated[
        str | None,
        typer.Option(
            envvar="SCALECUBE_AUTH_URL",
            help="where auth answers, if not at --host (default: the host, or the local stack's auth)",
        ),
    ] = None,
    router_url: Annotated[
        str | None,
        typer.Option(
            envvar="SCALECUBE_ROUTER_URL",
            help="where the shard router answers, if not at --host (default: the host, or the local stack's router)",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="SCALECUBE_STATE_DIR",
            show_default=False,
            help="the local stack to read auth's and the router's URLs from (default ~/.local/state/scalecube)",
        ),
    ] = None,
    new_connections: Annotated[
        bool,
        typer.Option(
            "--new-connections",
            help="a new connection per request (Connection: close), so requests spread over workers",
        ),
    ] = False,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="start even if the host does not answer /healthz")
    ] = False,
    locust_args: Annotated[
        list[str] | None, typer.Argument(metavar="[-- LOCUST OPTIONS]", help="anything else for Locust, after --")
    ] = None,
) -> None:
    """Load the stack with Locust: the web UI on http://127.0.0.1:8089 (pick user classes and a shape there), or --headless.

    User classes: CloningUser (GET /, /cpu), SessionUser (log in, then /session/me; a lost session is a failure named `lost session`), SplittingUser (users through the shard router), AuthUser (register, log in; 429s counted as their own name), MixedUser (a bit of everything).

    Exit codes: Locust's (0 clean, 1 failures), 3 when a --max-* threshold is broken; 1 when nothing answers at --host.
    """
    classes = _user_classes(user_class or [])
    if shape is not None and shape not in SHAPES:
        raise typer.BadParameter(f"must be one of {', '.join(SHAPES)}, got {shape!r}", param_hint="--shape")
    if processes is not None and processes != -1 and processes < 1:
        raise typer.BadParameter("a number of processes (at least 1), or -1 for one per core", param_hint="--processes")
    host = host.rstrip("/")
    if not host.startswith(("http://", "https://")):
        raise typer.BadParameter(f"a URL like http://127.0.0.1:8080, got {host!r}", param_hint="--host")
    urls = {"auth": _url(auth_url, "--auth-url"), "router": _url(router_url, "--router-url")}
    _require_locust()
    if not no_check:
        urls = _check_target(host, classes, urls, state_dir, tagged=bool(tags or exclude_tags))

    files = ",".join(str(path) for path in (LOCUSTFILE, *([SHAPES[shape]] if shape else [])))
    argv = [sys.executable, "-m", "locust", "-f", files, "--host", host]
    if headless:
        argv.append("--headless")
    else:
        argv += ["--web-host", web_host, "--web-port", str(web_port), "--class-picker"]
    for flag, value in (
        ("--users", users),
        ("--spawn-rate", spawn_rate),
        ("--run-time", run_time),
        ("--processes", processes),
        ("--max-fail-ratio", max_fail_ratio),
    ):
        if value is not None:
            argv += [flag, str(value)]
    for flag, value in (("--max-p95-ms", max_p95_ms), ("--max-p99-ms", max_p99_ms)):
        if value:
            argv += [flag, str(value)]
    if tags:
        argv += ["--tags", *tags]
    if exclude_tags:
        argv += ["--exclude-tags", *exclude_tags]
    if csv is not None:
        argv += ["--csv", str(csv), "--csv-full-history"]
    argv += locust_args or []

    env = dict(os.environ)
    if classes:  # not on the command line, where `--tags a b CloningUser` would read the class as a tag
        env["LOCUST_USER_CLASSES"] = " ".join(classes)
    for name, value in (("SCALECUBE_CPU_ITERATIONS", cpu_iterations), ("SCALECUBE_SERVED_BY_FILE", served_by_file)):
        if value is not None:
            env[name] = str(value)
    if auth_passwords is not None:
        env["SCALECUBE_AUTH_PASSWORDS"] = "1" if auth_passwords else "0"
    for part, url in urls.items():
        if url:
            env[PART_URL_ENV[part]] = url
    if new_connections:
        env["SCALECUBE_NEW_CONNECTIONS"] = "1"
    if not headless:
        typer.echo(
            f"scalecube locust: web UI on http://{web_host}:{web_port} (Ctrl-C to stop), load on {host}", err=True
        )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)  # Locust takes over this process: its signals, its exit code


def _user_classes(given: list[str]) -> list[str]:
    """``--class A --class B`` or ``--class A,B``; names checked here, before Locust starts."""
    names = [name.strip() for value in given for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in USER_CLASSES]
    if unknown:
        raise typer.BadParameter(
            f"unknown user class {', '.join(unknown)}; choose from {', '.join(USER_CLASSES)}", param_hint="--class"
        )
    return list(dict.fromkeys(names))


def _require_locust() -> None:
    import importlib.util

    if importlib.util.find_spec("locust") is None:  # finds it without importing it
        typer.echo(
            "scalecube locust: Locust is not installed here; install the `load` extra: pip install -e '.[load]'",
            err=True,
        )
        raise typer.Exit(EXIT_NO_LOCUST)


def _url(value: str | None, option: str) -> str | None:
    if value and not value.startswith(("http://", "https://")):
        raise typer.BadParameter(f"a URL like http://127.0.0.1:8000, got {value!r}", param_hint=option)
    return value.rstrip("/") if value else None


def _check_target(
    host: str, classes: list[str], urls: dict[str, str | None], state_dir: Path | None, *, tagged: bool = False
) -> dict[str, str | None]:
    """The host must answer /healthz. Where auth and the router answer: as given, else at the host, else the
    local stack's own. A class named with --class that still lacks a part is refused; the defaults say so.
    With --tags the classes' tasks change what they need: Locust judges them (``loadtests.locust.offered``)."""
    import httpx

    from loadtests.locust.target import probe

    try:
        with httpx.Client(base_url=host, timeout=3.0, trust_env=False) as client:
            health = client.get("/healthz")
    except httpx.HTTPError as exc:
        _no_target(host, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    if health.status_code != 200:
        _no_target(host, f"/healthz answered {health.status_code}")
    here = probe(host, urls)
    local = _local_stack_urls(host, state_dir)
    found = {name: local[name] for name, part in here.parts.items() if part.missing and local.get(name)}
    if found:
        urls = {**urls, **found}
        here = probe(host, urls)
        typer.echo(
            "scalecube locust: "
            + ", ".join(f"{name} at {url}" for name, url in found.items())
            + f" (the local stack's: {host} does not route them)",
            err=True,
        )
    refused = {} if tagged else {name: why for name in classes or USER_CLASSES if (why := here.refusal(name))}
    if classes and refused:
        typer.echo("scalecube locust: " + "\n".join(refused.values()), err=True)
        raise typer.Exit(EXIT_NO_TARGET)
    if refused:
        typer.echo(f"scalecube locust: not offered: {', '.join(refused)} ({next(iter(refused.values()))})", err=True)
    return urls


def _local_stack_urls(host: str, state_dir: Path | None) -> dict[str, str]:
    """auth's and the router's URLs in the local stack whose api or balancer is ``host``; {} if none is."""
    from infra.local.state import StateFile, default_state_dir

    state = StateFile((state_dir or default_state_dir()).expanduser()).read()
    if state is None:
        return {}
    by_name = {record.get("name"): str(record.get("url") or "").rstrip("/") for record in state.components}
    if host not in (by_name.get("api"), by_name.get("lb")):
        return {}
    return {name: by_name[name] for name in PART_URL_ENV if by_name.get(name)}


def _no_target(host: str, why: str) -> None:
    typer.echo(
        f"scalecube locust: nothing healthy at {host} ({why}). Start the stack with `scalecube up`, "
        "point --host at it, or pass --no-check to start anyway.",
        err=True,
    )
    raise typer.Exit(EXIT_NO_TARGET)
