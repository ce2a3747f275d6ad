"""The Docker engine: one client (the Docker SDK), and one clear error when there is none."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import docker


class DockerError(Exception):
    """Anything Docker-side that stops a command; the message is meant for the user."""


def engine_client(timeout: float = 30.0) -> docker.DockerClient:
    """A client for the engine in DOCKER_HOST (default: the local socket), checked with a ping."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        raise DockerError(f"no Docker engine is reachable ({exc}); start dockerd, or set DOCKER_HOST") from None
    return client


def engine_reachable() -> bool:
    try:
        engine_client(timeout=5).close()
    except DockerError:
        return False
    return True
