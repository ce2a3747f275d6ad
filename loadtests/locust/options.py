"""The options that tune the user classes: Locust's own parser reads them, from the command line or
from the environment variables they have always been (``env_var=``). Importing this module registers them.

``--cpu-iterations`` ``SCALECUBE_CPU_ITERATIONS``  iterations of ``GET /cpu`` (default 90000: about 3 ms of work)
``--auth-passwords`` ``SCALECUBE_AUTH_PASSWORDS``  1: the api checks credentials at the auth service (AUTH_URL),
    so session users register at ``/auth/register`` and log in with a password; 0: a name is enough;
    unset (the default): 1 wherever the target has auth (``loadtests.locust.target``)
``--auth-url`` / ``--router-url`` ``SCALECUBE_AUTH_URL`` / ``SCALECUBE_ROUTER_URL``  where auth / the shard router
    answer when the host does not route them (a lone api: ``scalecube up`` without a balancer); default: the host
``--new-connections`` ``SCALECUBE_NEW_CONNECTIONS``  1: every request on a new connection (``Connection: close``),
    the way requests spread over workers behind a per-request balancer; default keep-alive, like a browser
``--wait-min`` / ``--wait-max`` ``SCALECUBE_WAIT_MIN`` / ``SCALECUBE_WAIT_MAX``  seconds each user waits between
    tasks (default 0.05 / 0.25; 0 / 0 = flat out; a max below the min is the min)
``--served-by-file`` ``SCALECUBE_SERVED_BY_FILE``  where to write the served-by tally (JSON) at test stop

An empty value is the default; a wrong one ends Locust with exit code 1 and a line saying why (a
``SystemExit`` from the converter: argparse would exit 2). The web UI does not show them
(``include_in_web_ui=False``): they tune the users, not the swarm; a distributed run's workers take them from
the master, as Locust does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from locust import events

DEFAULT_CPU_ITERATIONS = 90_000
FLAGS = ("1", "true", "yes", "on")


def _flag(raw: str) -> bool:
    return raw.strip().lower() in FLAGS


def _tristate(raw: str) -> bool | None:
    return _flag(raw) if raw.strip() else None


def _url(env: str) -> Callable[[str], str | None]:
    def convert(raw: str) -> str | None:
        raw = raw.strip().rstrip("/")
        if raw and not raw.startswith(("http://", "https://")):
            raise SystemExit(f"{env} must be a URL like http://127.0.0.1:8000, got {raw!r}")
        return raw or None

    return convert


def _number(env: str, default: float, kind: type = float) -> Callable[[str], Any]:
    def convert(raw: str) -> Any:
        if not raw.strip():
            return default
        try:
            value = kind(raw.strip())
        except ValueError:
            raise SystemExit(f"{env} must be a number, got {raw!r}") from None
        if value < 0:
            raise SystemExit(f"{env} must not be negative, got {raw!r}")
        return value

    return convert


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    def add(flag: str, env: str, convert: Callable[[str], Any], default: Any, help: str) -> None:
        parser.add_argument(
            flag,
            env_var=env,
            type=convert,
            default=default,
            help=f"scalecube: {help} (${env})",
            include_in_web_ui=False,
        )

    iterations = _number("SCALECUBE_CPU_ITERATIONS", DEFAULT_CPU_ITERATIONS, int)
    add("--cpu-iterations", "SCALECUBE_CPU_ITERATIONS", iterations, DEFAULT_CPU_ITERATIONS, "iterations of GET /cpu")
    add(
        "--auth-passwords",
        "SCALECUBE_AUTH_PASSWORDS",
        _tristate,
        None,
        "1: session users register at auth and log in with a password; 0: a name is enough; default: as the target",
    )
    add("--auth-url", "SCALECUBE_AUTH_URL", _url("SCALECUBE_AUTH_URL"), None, "where auth answers, if not at the host")
    add(
        "--router-url",
        "SCALECUBE_ROUTER_URL",
        _url("SCALECUBE_ROUTER_URL"),
        None,
        "where the shard router answers, if not at the host",
    )
    add("--new-connections", "SCALECUBE_NEW_CONNECTIONS", _flag, False, "1: every request on a new connection")
    add("--wait-min", "SCALECUBE_WAIT_MIN", _number("SCALECUBE_WAIT_MIN", 0.05), 0.05, "seconds between tasks, least")
    add("--wait-max", "SCALECUBE_WAIT_MAX", _number("SCALECUBE_WAIT_MAX", 0.25), 0.25, "seconds between tasks, most")
    add(
        "--served-by-file",
        "SCALECUBE_SERVED_BY_FILE",
        lambda raw: raw or None,
        None,
        "where to write the served-by tally (JSON) at test stop",
    )


def cpu_iterations(options: Any) -> int:
    return max(1, int(options.cpu_iterations))


def wait_range(options: Any) -> tuple[float, float]:
    return options.wait_min, max(options.wait_min, options.wait_max)


def part_urls(options: Any) -> dict[str, str | None]:
    """Where the parts answer, by ``loadtests.locust.target``'s part names (None: at the host)."""
    return {"auth": options.auth_url, "router": options.router_url}
