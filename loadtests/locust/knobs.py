"""The environment variables that tune the user classes (no Locust import here).

``SCALECUBE_CPU_ITERATIONS``   iterations of ``GET /cpu`` (default 90000: about 3 ms of work)
``SCALECUBE_AUTH_PASSWORDS``   1: the api checks credentials at the auth service (AUTH_URL), so session users
                               register at ``/auth/register`` and log in with a password; 0: a name is enough;
                               unset (the default): 1 wherever the target has auth (``loadtests.locust.target``)
``SCALECUBE_AUTH_URL`` / ``SCALECUBE_ROUTER_URL``  where auth / the shard router answer when the host does not
                               route them (a lone api: ``scalecube up`` without a balancer); default: the host
``SCALECUBE_NEW_CONNECTIONS``  1: every request on a new connection (``Connection: close``), the way
                               requests spread over workers behind a per-request balancer; default
                               keep-alive, like a browser
``SCALECUBE_WAIT_MIN`` / ``SCALECUBE_WAIT_MAX``  seconds each user waits between tasks
                               (default 0.05 / 0.25; 0 / 0 = flat out)
``SCALECUBE_SERVED_BY_FILE``   where to write the served-by tally (JSON) at test stop
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_CPU_ITERATIONS = 90_000


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _tristate(name: str) -> bool | None:
    raw = os.environ.get(name, "").strip()
    return _flag(name) if raw else None


def _url(name: str) -> str | None:
    raw = os.environ.get(name, "").strip().rstrip("/")
    if raw and not raw.startswith(("http://", "https://")):
        raise SystemExit(f"{name} must be a URL like http://127.0.0.1:8000, got {raw!r}")
    return raw or None


def _number(name: str, default: float, kind: type = float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise SystemExit(f"{name} must not be negative, got {raw!r}")
    return value


@dataclass(frozen=True)
class Knobs:
    cpu_iterations: int
    auth_passwords: bool | None  # None: as the target says (auth there or not)
    new_connections: bool
    wait_min: float
    wait_max: float
    served_by_file: str | None
    auth_url: str | None = None
    router_url: str | None = None

    @property
    def urls(self) -> dict[str, str | None]:
        """Where the parts answer, by ``loadtests.locust.target``'s part names (None: at the host)."""
        return {"auth": self.auth_url, "router": self.router_url}

    @classmethod
    def from_env(cls) -> Knobs:
        wait_min = _number("SCALECUBE_WAIT_MIN", 0.05)
        wait_max = max(wait_min, _number("SCALECUBE_WAIT_MAX", 0.25))
        return cls(
            cpu_iterations=max(1, int(_number("SCALECUBE_CPU_ITERATIONS", DEFAULT_CPU_ITERATIONS, int))),
            auth_passwords=_tristate("SCALECUBE_AUTH_PASSWORDS"),
            new_connections=_flag("SCALECUBE_NEW_CONNECTIONS"),
            wait_min=wait_min,
            wait_max=wait_max,
            served_by_file=os.environ.get("SCALECUBE_SERVED_BY_FILE") or None,
            auth_url=_url("SCALECUBE_AUTH_URL"),
            router_url=_url("SCALECUBE_ROUTER_URL"),
        )
