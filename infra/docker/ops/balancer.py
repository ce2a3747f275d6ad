"""What the stack's HAProxy (service ``lb``) does with each replica: its stats CSV, read over the
published stats port (``stats show-legends`` puts each server's address in it), which asks for the
user ``admin`` and the password the ``lb`` container was given (``LB_ADMIN_PASSWORD``, or the file
``LB_ADMIN_PASSWORD_FILE`` names inside it)."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from infra.docker.ops.project import Project

LB_SERVICE = "lb"
LB_HTTP_PORT = "8080/tcp"
LB_STATS_PORT = "8404/tcp"


@dataclass(frozen=True)
class BackendServer:
    backend: str
    name: str
    status: str  # UP, DOWN, MAINT, "UP 1/2" (going down), "DOWN 1/2" (coming up), no check …
    address: str  # "ip:port", empty for a template slot without a replica

    @property
    def ip(self) -> str:
        return self.address.rpartition(":")[0]


def parse_stats_csv(text: str) -> list[BackendServer]:
    """Server rows of HAProxy's ``/;csv`` (the header line starts with ``# ``); frontends/backends skipped."""
    rows = csv.DictReader(io.StringIO(text.removeprefix("# ")))
    return [
        BackendServer(row["pxname"], row["svname"], row.get("status", ""), row.get("addr") or "")
        for row in rows
        if row.get("svname") not in (None, "FRONTEND", "BACKEND")
    ]


def published_url(project: Project, container_port: str, fallback_env: str, fallback_port: int) -> str:
    """``http://host:port`` where the lb container publishes ``container_port``; else the env's port."""
    for lb in project.containers(LB_SERVICE):
        for binding in lb.ports.get(container_port) or []:
            host = binding.get("HostIp") or "127.0.0.1"
            host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
            return f"http://{host}:{binding['HostPort']}"
    return f"http://127.0.0.1:{os.environ.get(fallback_env, fallback_port)}"


def balancer_url(project: Project) -> str:
    return published_url(project, LB_HTTP_PORT, "LB_PORT", 8080)


STATS_USER = "admin"
PASSWORD_ENV = "LB_ADMIN_PASSWORD"


def stats_password(container: Any) -> str | None:
    """The stats port's password a running ``lb`` container was given: its environment's, else the file's."""
    env = dict(item.partition("=")[::2] for item in container.attrs.get("Config", {}).get("Env") or [])
    if env.get(PASSWORD_ENV):
        return env[PASSWORD_ENV]
    path = env.get(PASSWORD_ENV + "_FILE")
    if not path:
        return None
    code, output = container.exec_run(["cat", path])
    return output.decode().strip() if code == 0 and output.strip() else None


class Balancer:
    """HAProxy's view of its backends, polled from the stats page."""

    def __init__(self, stats_url: str, password: str | None = None) -> None:
        self.stats_url = stats_url.rstrip("/")
        self.auth = httpx.BasicAuth(STATS_USER, password) if password else None

    @classmethod
    def of(cls, project: Project) -> Balancer | None:
        """The project's balancer, or None when it has no running ``lb`` container."""
        containers = project.containers(LB_SERVICE)
        if not containers:
            return None
        return cls(published_url(project, LB_STATS_PORT, "STATS_PORT", 8404), stats_password(containers[0]))

    def servers(self, backend: str | None = None) -> list[BackendServer]:
        response = httpx.get(self.stats_url + "/;csv", timeout=5, auth=self.auth)
        response.raise_for_status()
        return [s for s in parse_stats_csv(response.text) if backend is None or s.backend == backend]

    def status_of(self, backend: str, ip: str) -> str | None:
        """The status of the server that holds ``ip`` in ``backend``; None if no server holds it."""
        try:
            found = [s.status for s in self.servers(backend) if s.ip == ip]
        except httpx.HTTPError:
            return None
        return found[0] if found else None

    def has_backend(self, backend: str) -> bool:
        try:
            return any(s.backend == backend for s in self.servers())
        except httpx.HTTPError:
            return False
