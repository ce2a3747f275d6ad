"""One compose project on the engine: its containers, found by compose's labels, and its compose."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from infra.docker.compose import Compose
from infra.docker.engine import DockerError, engine_client

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"


class UnknownService(DockerError):
    def __init__(self, service: str, known: list[str], project: str) -> None:
        listed = ", ".join(known) if known else "none (is the stack up? docker compose up -d)"
        super().__init__(f"no service {service!r} in project {project!r}; its services: {listed}")


def short_name(container: Container) -> str:
    """``api-2``: the service and compose's container number, as compose prefixes its log lines."""
    labels = container.labels
    return f"{labels.get(SERVICE_LABEL, '?')}-{labels.get(NUMBER_LABEL, '?')}"


def health(container: Container) -> str:
    """healthy / unhealthy / starting, or "-" for a container without a healthcheck."""
    return container.attrs.get("State", {}).get("Health", {}).get("Status", "-")


def hostname(container: Container) -> str:
    """What the services put in X-Served-By: the container's hostname (its short id)."""
    return container.attrs["Config"]["Hostname"]


def ip_address(container: Container) -> str | None:
    networks = container.attrs.get("NetworkSettings", {}).get("Networks", {}) or {}
    return next((n["IPAddress"] for n in networks.values() if n.get("IPAddress")), None)


SECRETS_DIR = "/run/secrets/scalecube"  # docker-compose.yml: the `secrets` volume, read-only in the services


def redis_password(container: Container) -> str:
    """The stack's REDIS_PASSWORD (every Redis and Sentinel requires it), read inside one of its containers that
    mount the secrets volume ("" if it cannot be read). For clients, never for a report."""
    code, output = container.exec_run(["cat", f"{SECRETS_DIR}/REDIS_PASSWORD"])
    return output.decode().strip() if code == 0 else ""


def redis_url(container: Container, address: str, port: int = 6379, db: int = 0) -> str:
    """The URL a client on the engine's host reaches a compose Redis at: with the stack's REDIS_PASSWORD (every
    Redis requires it), read inside the container. It holds the password: for clients, never for a report."""
    password = redis_password(container)
    return f"redis://{':' + quote(password, safe='') + '@' if password else ''}{address}:{port}/{db}"


@dataclass
class Project:
    client: docker.DockerClient
    compose: Compose

    @classmethod
    def connect(cls, project_dir: Path, project: str | None = None) -> Project:
        """Raises DockerError (one line, for the user) when no engine answers."""
        return cls(engine_client(), Compose(project_dir, project=project))

    @property
    def name(self) -> str:
        return self.compose.project

    def containers(self, service: str | None = None, *, all: bool = False) -> list[Container]:
        labels = [f"{PROJECT_LABEL}={self.name}"] + ([f"{SERVICE_LABEL}={service}"] if service else [])
        found = self.client.containers.list(all=all, filters={"label": labels})
        return sorted(found, key=lambda c: (c.labels.get(SERVICE_LABEL, ""), int(c.labels.get(NUMBER_LABEL, 0) or 0)))

    def running_services(self) -> list[str]:
        return sorted({c.labels.get(SERVICE_LABEL, "?") for c in self.containers(all=True)})

    def defined_services(self) -> list[str]:
        """The services in the compose file (active profiles only), whether running or not."""
        return sorted(
            line.strip() for line in self.compose.run(["config", "--services"], timeout=60).splitlines() if line.strip()
        )

    def require_service(self, service: str, *, defined: bool = False) -> None:
        """``defined``: the compose file's services count too (scale may start a service from 0)."""
        known = self.running_services()
        if service in known:
            return
        if defined:
            known = sorted(set(known) | set(self.defined_services()))
            if service in known:
                return
        raise UnknownService(service, known, self.name)

    def compose_scale(self, service: str, count: int, *, wait: bool = True, timeout: float = 300) -> None:
        """``compose up -d --no-recreate --scale SERVICE=N [--wait]``: compose creates or removes containers
        with the service's own configuration; the ones that stay are not touched."""
        waiting = ["--wait", "--wait-timeout", str(int(timeout))] if wait else []
        self.compose.run(
            ["up", "-d", "--no-recreate", *waiting, "--scale", f"{service}={count}", service], timeout=timeout + 60
        )


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``condition`` until it returns something truthy; DockerError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DockerError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
