"""Run ``lb/haproxy/haproxy.cfg`` with the system's HAProxy: where the file is, its environment, its command line.

The configuration is the same file compose uses; everything that differs between
the two comes from environment variables the file documents at its top. This
module only fills them in — it never rewrites the file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from kit import secrets as secret_values

CONFIG = Path(__file__).with_name("haproxy.cfg")
INSTALL_HINT = "install Debian's haproxy (apt-get install haproxy)"
# Debian installs it in /usr/sbin, which a non-root PATH often lacks.
EXTRA_PATH = "/usr/sbin:/usr/local/sbin"
CHECK_TIMEOUT = 30.0
# haproxy.cfg's defaults for the two addresses, mirrored to build URLs (a test keeps them equal).
DEFAULT_BIND = "0.0.0.0:8080"
DEFAULT_STATS_BIND = "0.0.0.0:8404"


class HaproxyNotFound(RuntimeError):
    pass


class HaproxyConfigError(RuntimeError):
    """``haproxy -c`` refused the configuration; the message is HAProxy's own."""


def find_haproxy() -> str:
    """Path of the ``haproxy`` executable, or ``HaproxyNotFound`` saying how to get one."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path=EXTRA_PATH)
    if not found:
        raise HaproxyNotFound(f"haproxy is not installed (not on PATH nor in {EXTRA_PATH}): {INSTALL_HINT}")
    return found


@dataclass(frozen=True)
class HaproxySettings:
    """Values for haproxy.cfg's variables; None leaves the file's default (see the file's header)."""

    bind: str | None = None  # LB_BIND, host:port
    stats_bind: str | None = None  # LB_STATS_BIND
    dns: str | None = None  # LB_DNS, host:port of the nameserver
    slots: int | None = None  # LB_SLOTS: the api's server slots
    service_slots: int | None = None  # LB_SERVICE_SLOTS: auth's and the router's
    balance: str | None = None  # LB_BALANCE: leastconn (the file's default) | roundrobin
    max_connections_per_client: int | None = None  # LB_MAXCONN_PER_CLIENT
    sticky: bool | None = None  # LB_STICKY
    cookie_key: str | None = None  # LB_COOKIE_KEY
    api_service: str | None = None  # API_SERVICE
    api_port: int | None = None  # API_PORT
    api_health_port: int | None = None  # API_HEALTH_PORT: where the checks go (each replica's master)
    auth_service: str | None = None  # AUTH_SERVICE: None, no /auth/ route
    auth_port: int | None = None  # AUTH_PORT
    auth_health_port: int | None = None  # AUTH_HEALTH_PORT
    router_service: str | None = None  # ROUTER_SERVICE: None, no /users route
    router_port: int | None = None  # ROUTER_PORT
    router_health_port: int | None = None  # ROUTER_HEALTH_PORT
    admin_password: str | None = field(default=None, repr=False)  # LB_ADMIN_PASSWORD: the stats port's (user admin)

    def __post_init__(self) -> None:
        if self.cookie_key is not None:  # a known or short key is refused here: haproxy.cfg sees only whole strings
            secret_values.check("LB_COOKIE_KEY", self.cookie_key)

    def variables(self) -> dict[str, str]:
        """Only the variables given a value here, by their names in haproxy.cfg."""
        values: dict[str, str] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None:
                values[VARIABLES[item.name]] = ("1" if value else "0") if isinstance(value, bool) else str(value)
        return values

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) minus any of the file's variables, plus ours.

        A stray ``LB_STICKY=1`` in the caller's shell must not change what a test or the stack runs.
        """
        base = os.environ if base is None else base
        return {**{k: v for k, v in base.items() if k not in VARIABLES.values()}, **self.variables()}

    def binds(self) -> tuple[str, str]:
        """Where it will listen: (frontend, stats), as host:port."""
        return self.bind or DEFAULT_BIND, self.stats_bind or DEFAULT_STATS_BIND

    def url(self) -> str:
        return _http_url(self.binds()[0])

    def stats_url(self) -> str:
        return _http_url(self.binds()[1])


# Field -> the environment variable haproxy.cfg reads (tests check both lists match the file).
VARIABLES = {
    "bind": "LB_BIND",
    "stats_bind": "LB_STATS_BIND",
    "dns": "LB_DNS",
    "slots": "LB_SLOTS",
    "service_slots": "LB_SERVICE_SLOTS",
    "balance": "LB_BALANCE",
    "max_connections_per_client": "LB_MAXCONN_PER_CLIENT",
    "sticky": "LB_STICKY",
    "cookie_key": "LB_COOKIE_KEY",
    "api_service": "API_SERVICE",
    "api_port": "API_PORT",
    "auth_service": "AUTH_SERVICE",
    "auth_port": "AUTH_PORT",
    "router_service": "ROUTER_SERVICE",
    "router_port": "ROUTER_PORT",
    "api_health_port": "API_HEALTH_PORT",
    "auth_health_port": "AUTH_HEALTH_PORT",
    "router_health_port": "ROUTER_HEALTH_PORT",
    "admin_password": "LB_ADMIN_PASSWORD",
}
STATS_USER = "admin"  # haproxy.cfg's userlist stats_users


def argv(haproxy: str | None = None) -> list[str]:
    """Master-worker (-W) in the foreground (-db): SIGUSR2 reloads the file, SIGUSR1 stops gracefully."""
    return [haproxy or find_haproxy(), "-W", "-db", "-f", str(CONFIG)]


def check_config(env: Mapping[str, str], *, warnings_are_errors: bool = False) -> None:
    """``haproxy -c`` on the file with ``env``; raise ``HaproxyConfigError`` with HAProxy's message if refused."""
    result = subprocess.run(
        [find_haproxy(), "-c", "-f", str(CONFIG)], env=dict(env), capture_output=True, text=True, timeout=CHECK_TIMEOUT
    )
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise HaproxyConfigError(f"haproxy -c refused {CONFIG} (exit {result.returncode}):\n{output}")
    if warnings_are_errors and "[WARNING]" in output:
        raise HaproxyConfigError(f"haproxy -c warned about {CONFIG}:\n{output}")


def _http_url(bind: str) -> str:
    host, _, port = bind.rpartition(":")
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"  # listening on every address: reach it on loopback
    return f"http://{host}:{port}"
