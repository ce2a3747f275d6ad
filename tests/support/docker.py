"""Docker for tests: a real engine or a skip that says why — but under CI (which provisions one) a failure.

``ComposeStack`` is the project's own docker-compose.yml under a throwaway project name, published on
free loopback ports; ``down()`` removes its containers, networks and volumes.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import pytest

from infra.docker.compose import Compose
from infra.docker.engine import DockerError, engine_client
from infra.docker.ops.project import health
from infra.local.ports import free_port
from infra.local.processes import wait_until
from infra.paths import REPO

if TYPE_CHECKING:
    import docker


def require_docker() -> docker.DockerClient:
    """A client for a reachable engine whose compose plugin works and whose images are built."""
    try:
        client = engine_client(timeout=60)
        Compose(REPO).run(["version"], timeout=30)
        missing = [
            tag for tag in ("scalecube-service:latest", "scalecube-locust:latest") if not _has_image(client, tag)
        ]
        if missing:
            raise DockerError(f"images not built: {', '.join(missing)} (scalecube images [--airgap])")
    except DockerError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but Docker is not usable: {exc}", pytrace=False)
        pytest.skip(reason=f"Docker is not usable here: {exc}")
    return client


def _has_image(client: docker.DockerClient, tag: str) -> bool:
    import docker.errors

    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


@dataclass
class ComposeStack:
    compose: Compose
    client: docker.DockerClient
    lb_port: int
    stats_port: int
    locust_port: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def project(self) -> str:
        return self.compose.project

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.stats_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.env['PROMETHEUS_PORT']}"

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.env['CONSOLE_PORT']}"

    @property
    def admin_auth(self) -> httpx.BasicAuth:
        return httpx.BasicAuth("admin", self.env["LB_ADMIN_PASSWORD"])

    def containers(self, service: str, *, all: bool = False) -> list:
        labels = [f"com.docker.compose.project={self.project}", f"com.docker.compose.service={service}"]
        return self.client.containers.list(all=all, filters={"label": labels})

    def up(self, *args: str, timeout: float = 300) -> None:
        self.compose.run(["up", "-d", "--wait", "--wait-timeout", str(int(timeout)), *args], timeout=timeout + 60)

    def down(self) -> None:
        self.compose.run(["down", "-v", "--remove-orphans", "--timeout", "10"], timeout=180)

    def wait_healthy(self, service: str, count: int, *, timeout: float = 120) -> None:
        """Until ``count`` containers of ``service`` run and Docker calls every one healthy."""

        def healthy() -> bool:
            containers = self.containers(service)
            for container in containers:
                container.reload()
            return len(containers) == count and all(health(c) == "healthy" for c in containers)

        wait_until(healthy, timeout, interval=1, what=f"{count} healthy {service} containers")

    def wait_served_by(self, containers: int, *, timeout: float = 60) -> set[str]:
        """Hosts (container ids) answering ``GET /`` through the balancer, once ``containers`` of them do."""
        hosts: set[str] = set()
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=5) as http:
            while time.monotonic() < deadline:
                seen = set()
                for _ in range(containers * 8):
                    response = http.get("/", headers={"Connection": "close"})
                    if response.status_code == 200:
                        seen.add(response.json()["host"])
                hosts = seen
                if len(hosts) == containers:
                    return hosts
                time.sleep(0.5)
        raise AssertionError(f"expected {containers} api containers behind the balancer, saw {sorted(hosts)}")


@contextmanager
def compose_stack(
    project: str, *, env: dict[str, str] | None = None, up_args: tuple[str, ...] = ("--scale", "api=3")
) -> Iterator[ComposeStack]:
    """The whole stack up and healthy under ``project``; always torn down (``down -v``)."""
    client = require_docker()
    ports = {
        "LB_PORT": free_port(),
        "STATS_PORT": free_port(),
        "LOCUST_PORT": free_port(),
        "PYTHON_LB_PORT": free_port(),
        "PROMETHEUS_PORT": free_port(),
        "CONSOLE_PORT": free_port(),
    }
    # LB_ADMIN_PASSWORD: the balancers' stats/admin port (user admin); HAProxy refuses to start without one.
    full_env = {
        **{k: str(v) for k, v in ports.items()},
        "PUBLISH_HOST": "127.0.0.1",
        "LB_ADMIN_PASSWORD": os.environ.get("LB_ADMIN_PASSWORD") or secrets.token_urlsafe(24),
        **(env or {}),
    }
    stack = ComposeStack(
        Compose(REPO, project=project, env=full_env),
        client,
        ports["LB_PORT"],
        ports["STATS_PORT"],
        ports["LOCUST_PORT"],
        full_env,
    )
    try:
        try:
            stack.up(*up_args)
        except DockerError as exc:
            # On a loaded machine a service can miss its healthchecks while starting; compose --wait then
            # gives up on everything that depends on it, though the container recovers (its next check
            # passes, or its restart policy starts it again). Once none is unhealthy: one more go.
            if "is unhealthy" not in str(exc):
                raise
            _wait_none_unhealthy(stack, timeout=240)
            stack.up(*up_args)
        yield stack
    finally:
        stack.down()


def _wait_none_unhealthy(stack: ComposeStack, timeout: float) -> None:
    label = {"label": f"com.docker.compose.project={stack.project}"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [c.attrs["State"].get("Health", {}).get("Status") for c in stack.client.containers.list(filters=label)]
        if "unhealthy" not in states:
            return
        time.sleep(2)


def leftovers(client: docker.DockerClient, project: str) -> dict[str, list[str]]:
    """What a project left behind: containers, networks, volumes (all should be empty after down -v)."""
    label = {"label": f"com.docker.compose.project={project}"}
    return {
        "containers": [c.name for c in client.containers.list(all=True, filters=label)],
        "networks": [n.name for n in client.networks.list(filters=label)],
        "volumes": [v.name for v in client.volumes.list(filters=label)],
    }
