"""The running compose stack a ``--docker`` demo judges its claims against, through ``infra.docker.ops``.

A demo asks for the services it needs (``require``: missing ones stop it with exit 2 and the reason),
reads what the stack was started with (``env``: ``SESSION_BACKEND``, ``USERS_COUNT_MODE``...), reaches a
Redis directly at its container's address (``redis_url``: counted at the source, not through a
service), and changes the stack only inside ``restoring``: whatever it scaled goes back to the count
it found, on failure and Ctrl-C too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import redis

from infra.docker.engine import DockerError
from infra.docker.ops.project import Project, hostname, ip_address, short_name
from infra.docker.ops.project import redis_url as compose_redis_url
from infra.docker.ops.scale import ScaleOutcome, scale
from infra.docker.ops.workers import workers_of
from infra.paths import REPO

if TYPE_CHECKING:
    from docker.models.containers import Container

    from loadtests.experiments.context import DemoContext

SCALE_TIMEOUT = 300.0  # new containers healthy (start_period 90 s) on a busy 2-core machine
REDIS_PORT = 6379


class StackUnsupported(RuntimeError):
    """The running stack cannot run this demo (a service missing, a Redis unreachable): exit 2, saying why."""


@dataclass
class DockerStack:
    project: Project
    url: str  # the balancer (``lb``) as published on this host
    say: Callable[[str], None] = print
    scaled: dict[str, int] = field(default_factory=dict)  # service -> the count found before the demo scaled it

    @classmethod
    def of(cls, ctx: DemoContext) -> DockerStack:
        assert ctx.docker_project is not None and ctx.target is not None, "only with --docker"
        try:
            return cls(Project.connect(REPO, ctx.docker_project), ctx.target, ctx.say)
        except DockerError as exc:
            raise StackUnsupported(f"--docker: {exc}") from exc

    @property
    def name(self) -> str:
        return self.project.name

    def containers(self, service: str) -> list[Container]:
        return self.project.containers(service)

    def require(self, *services: str, why: str) -> None:
        """Each of ``services`` has a running container, else ``StackUnsupported`` naming them and ``why``."""
        missing = [service for service in services if not self.containers(service)]
        if missing:
            raise StackUnsupported(f"--docker: the compose stack '{self.name}' runs no {', '.join(missing)}: {why}")

    def env(self, service: str) -> dict[str, str]:
        """The environment ``service``'s first container was started with (its compose settings)."""
        containers = self.containers(service)
        if not containers:
            return {}
        pairs = (item.partition("=") for item in containers[0].attrs["Config"].get("Env") or [])
        return {key: value for key, _, value in pairs}

    def hostnames(self, service: str) -> dict[str, str]:
        """X-Served-By's host part (the container's hostname) -> compose's name for it (``api-2``)."""
        return {hostname(c): short_name(c) for c in self.containers(service)}

    def workers(self, service: str) -> dict[str, int]:
        """Hostname -> how many workers its cluster runs (``scalecube status --json`` inside it)."""
        return {hostname(c): len(workers_of(c) or []) for c in self.containers(service)}

    def redis_url(self, service: str, db: int = 0) -> str:
        """``redis://:<password>@<container address>:6379/db`` for a Redis service, checked with a PING (the
        compose network's addresses are routed from the engine's own host; not from a remote engine's clients).
        The password is the stack's REDIS_PASSWORD, read inside the container: every Redis requires it. The URL
        holds it, so it is for clients only, never for a report."""
        containers = self.containers(service)
        address = ip_address(containers[0]) if containers else None
        if address is None:
            raise StackUnsupported(f"--docker: the compose stack '{self.name}' runs no {service} with an address")
        url = compose_redis_url(containers[0], address, REDIS_PORT, db)
        try:
            with redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3) as client:
                client.ping()
        except redis.RedisError as exc:
            raise StackUnsupported(
                f"--docker: {service} at {address}:{REDIS_PORT} does not answer from this host "
                f"({exc}); the demo reads it directly, so it runs where the engine runs"
            ) from exc
        return url

    def service_url(self, service: str, port: int = 8000) -> str:
        """``http://<address of service's first container>:port``: straight to a replica, past the balancer."""
        containers = self.containers(service)
        address = ip_address(containers[0]) if containers else None
        if address is None:
            raise StackUnsupported(f"--docker: the compose stack '{self.name}' runs no {service} with an address")
        return f"http://{address}:{port}"

    def wait_in_balancer(self, backend: str, count: int, timeout: float = 90.0) -> None:
        """Until the stack's HAProxy has exactly ``count`` servers UP in ``backend`` (it finds new containers by
        DNS, a few seconds after they are healthy); without HAProxy stats, nothing to wait for."""
        from infra.docker.ops.balancer import Balancer
        from infra.docker.ops.project import wait_for

        balancer = Balancer.of(self.project)
        if balancer is None:
            return

        def up() -> bool:
            try:
                servers = balancer.servers(backend)
            except Exception:  # the stats page between reloads: ask again
                return False
            return sum(1 for s in servers if s.address and s.status.startswith("UP")) == count

        try:
            wait_for(up, timeout, f"the balancer to have {count} {backend} server(s) UP", interval=0.5)
        except DockerError as exc:
            raise StackUnsupported(f"--docker: {exc}") from exc

    # -- changing the stack, always undone ------------------------------------------------------

    def scale(self, service: str, count: int) -> ScaleOutcome:
        """``docker compose up --scale SERVICE=N``, until N containers are healthy (inside ``restoring``)."""
        assert service in self.scaled, "scale only inside restoring(service)"
        self.say(f"{service}: scaling to {count} container(s) (docker compose up --scale {service}={count})")
        try:
            outcome = scale(self.project, service, count, timeout=SCALE_TIMEOUT)
        except DockerError as exc:
            raise StackUnsupported(f"--docker: could not scale {service} to {count}: {exc}") from exc
        self.say(str(outcome))
        return outcome

    @contextmanager
    def restoring(self, service: str) -> Iterator[int]:
        """Yields how many ``service`` containers run now; on the way out (failure, Ctrl-C too), scales back."""
        found = len(self.containers(service))
        self.scaled[service] = found
        try:
            yield found
        finally:
            del self.scaled[service]
            if len(self.containers(service)) != found:
                self.say(f"{service}: back to the {found} container(s) the demo found")
                scale(self.project, service, found, timeout=SCALE_TIMEOUT)


# The views of the same metrics while the stack runs: the console's charts, and Prometheus's per-container rates.
LIVE_VIEWS = {
    "console": ("console", "8000/tcp", "/#charts-panel"),
    "Prometheus": (
        "prometheus",
        "9090/tcp",
        "/graph?g0.expr=instance%3Ahttp_requests%3Arate1m&g0.tab=0&g0.range_input=15m",
    ),
}


def live_views(project_name: str) -> dict[str, str]:
    """Each live view the compose project publishes on this host (name -> URL): what a demo's report links to;
    none when the engine does not answer."""
    views = {}
    try:
        project = Project.connect(REPO, project_name)
        for name, (service, port, path) in LIVE_VIEWS.items():
            for container in project.containers(service):
                for binding in container.ports.get(port) or []:
                    host = binding.get("HostIp") or "127.0.0.1"
                    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
                    views[name] = f"http://{host}:{binding['HostPort']}{path}"
    except DockerError:
        return {}
    return views
