"""``scalecube docker scale SERVICE N``: compose creates or removes the containers, then we wait
until the service has exactly N running containers, all healthy."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from infra.docker.ops.project import health, short_name, wait_for

if TYPE_CHECKING:
    from infra.docker.ops.project import Project


@dataclass(frozen=True)
class ScaleOutcome:
    service: str
    before: list[str]
    after: list[str]
    seconds: float

    def __str__(self) -> str:
        added = [name for name in self.after if name not in self.before]
        removed = [name for name in self.before if name not in self.after]
        change = ", ".join(
            filter(None, [f"+{' +'.join(added)}" if added else "", f"-{' -'.join(removed)}" if removed else ""])
        )
        return (
            f"{self.service}: {len(self.before)} → {len(self.after)} container(s)"
            f"{f' ({change})' if change else ''} in {self.seconds:.1f}s"
        )


def scale(project: Project, service: str, count: int, *, timeout: float = 300) -> ScaleOutcome:
    if count < 0:
        raise ValueError("a service cannot have fewer than 0 containers")
    project.require_service(service, defined=True)
    started = time.monotonic()
    before = [short_name(c) for c in project.containers(service)]
    project.compose_scale(service, count, timeout=timeout)

    def settled() -> list[str] | None:
        running = project.containers(service)
        ready = len(running) == count and all(health(c) in ("healthy", "-") for c in running)
        return [short_name(c) for c in running] if ready else None

    after = wait_for(settled, timeout, f"{count} healthy {service} container(s)") if count else []
    return ScaleOutcome(service, before, after, time.monotonic() - started)
