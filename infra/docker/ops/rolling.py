"""``scalecube docker rolling-restart SERVICE``: replace every container, one at a time, with no failed request.

For each old container: compose starts one more (``--scale SERVICE=N+1``, the service's own config, so
a rebuilt image rolls out this way), we wait until it is healthy and the balancer has it UP, then stop
the old one and remove it (the count is back to N).

Stopping is the drain: SIGTERM makes the cluster master close its listening socket at once (the
balancer's new connections to it are refused, and HAProxy retries them on another replica:
``retry-on conn-failure``, ``option redispatch``), lets in-flight requests finish, and closes idle
keep-alive connections only after a grace in which a request arriving on them is still served (with
``Connection: close``). A request HAProxy sends on a connection as it closes comes back empty and is
replayed elsewhere (``retry-on empty-response``, for idempotent methods). Measured here under GET load,
keep-alive and new-connection clients together (8 threads each): 0 failed, with a plain ``docker stop``
as with this SIGTERM-then-watch-the-balancer (tests/infra/docker/compose/test_ops.py). The wait for the
balancer to mark the old one DOWN is reported, not needed: nothing else happens until it has exited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from infra.docker.engine import DockerError
from infra.docker.ops.balancer import Balancer
from infra.docker.ops.project import health, ip_address, short_name, wait_for

if TYPE_CHECKING:
    from docker.models.containers import Container

    from infra.docker.ops.project import Project

STOP_TIMEOUT = 40  # compose's stop_grace_period: the master drains for up to 30 s, then SIGKILL


@dataclass(frozen=True)
class Replacement:
    old: str
    old_id: str
    new: str
    new_id: str
    started_s: float  # compose up --scale N+1 until the new container runs
    healthy_s: float  # … until its healthcheck passes
    in_balancer_s: float  # … until HAProxy has it UP (0 if the service is not behind the balancer)
    out_of_balancer_s: float  # old container: SIGTERM until HAProxy no longer has it UP
    stopped_s: float  # … then until it exited (the rest of its drain)
    removed_s: float

    @property
    def total_s(self) -> float:
        return (
            self.started_s
            + self.healthy_s
            + self.in_balancer_s
            + self.out_of_balancer_s
            + self.stopped_s
            + self.removed_s
        )

    def __str__(self) -> str:
        return (
            f"{self.old} ({self.old_id}) → {self.new} ({self.new_id}): started {self.started_s:.1f}s, "
            f"healthy {self.healthy_s:.1f}s, in balancer {self.in_balancer_s:.1f}s; old out of balancer "
            f"{self.out_of_balancer_s:.1f}s, drained and exited {self.stopped_s:.1f}s, removed {self.removed_s:.1f}s "
            f"(total {self.total_s:.1f}s)"
        )


def as_dict(replacements: list[Replacement]) -> dict[str, Any]:
    return {"replacements": [{**asdict(r), "total_s": round(r.total_s, 2)} for r in replacements]}


class RollingRestart:
    def __init__(
        self,
        project: Project,
        service: str,
        *,
        say: Callable[[str], None] = lambda _: None,
        stop_timeout: int = STOP_TIMEOUT,
        step_timeout: float = 300,
    ) -> None:
        self.project = project
        self.service = service
        self.say = say
        self.stop_timeout = stop_timeout
        self.step_timeout = step_timeout
        self.balancer = Balancer.of(project)
        # HAProxy's backends are named after the services (lb/haproxy/haproxy.cfg: api, auth, router).
        self.behind_balancer = self.balancer is not None and self.balancer.has_backend(service)

    def run(self) -> list[Replacement]:
        self.project.require_service(self.service)
        old = self.project.containers(self.service)
        # compose counts stopped containers towards --scale (and would start them instead of a new one).
        stopped = [short_name(c) for c in self.project.containers(self.service, all=True) if c.status != "running"]
        if stopped:
            raise DockerError(
                f"{self.service} has stopped containers ({', '.join(stopped)}): start or remove them "
                f"first (scalecube docker scale {self.service} N brings the count back)"
            )
        if not old:
            raise DockerError(f"{self.service} has no running container to restart")
        if not self.behind_balancer:
            self.say(f"{self.service} is not behind the balancer: not waiting for it there")
        replacements = []
        for number, container in enumerate(old, 1):
            self.say(f"[{number}/{len(old)}] replacing {short_name(container)} ({container.short_id})")
            replacement = self.replace(container, len(old))
            self.say(f"[{number}/{len(old)}] {replacement}")
            replacements.append(replacement)
        return replacements

    def replace(self, old: Container, count: int) -> Replacement:
        before = {c.id for c in self.project.containers(self.service, all=True)}
        clock = time.monotonic()
        self.project.compose_scale(self.service, count + 1, wait=False, timeout=self.step_timeout)
        new = wait_for(lambda: self._newcomer(before), 60, f"the new {self.service} container")
        started = time.monotonic() - clock

        try:
            healthy, in_balancer = self._admit(new)
        except DockerError as exc:
            # The old containers are untouched: take the new one away again and leave the service as it was.
            new.remove(force=True, v=True)
            raise DockerError(
                f"{exc}; removed {short_name(new)}, {self.service} is back to its {count} old container(s)"
            ) from None

        out, stopped = self._drain_and_stop(old)

        clock = time.monotonic()
        old.remove(v=True)
        removed = time.monotonic() - clock
        return Replacement(
            short_name(old),
            old.short_id,
            short_name(new),
            new.short_id,
            started,
            healthy,
            in_balancer,
            out,
            stopped,
            removed,
        )

    def _admit(self, new: Container) -> tuple[float, float]:
        """Seconds until ``new`` is healthy, then until the balancer has it UP (sends it traffic)."""
        clock = time.monotonic()
        wait_for(lambda: self._healthy(new), self.step_timeout, f"{short_name(new)} to become healthy")
        healthy, clock = time.monotonic() - clock, time.monotonic()
        if self.behind_balancer:
            ip = ip_address(new)
            wait_for(
                lambda: self.balancer.status_of(self.service, ip) == "UP",
                60,  # type: ignore[union-attr]
                f"the balancer to send {short_name(new)} ({ip}) traffic",
            )
        return healthy, time.monotonic() - clock

    def _drain_and_stop(self, old: Container) -> tuple[float, float]:
        """SIGTERM (the master stops accepting and drains, see above); seconds until the balancer has it
        out of rotation, then until it exited. Still running after ``stop_timeout``: SIGKILL, as compose would."""
        from requests.exceptions import ConnectionError as RequestsConnectionError
        from requests.exceptions import ReadTimeout

        ip, clock = ip_address(old), time.monotonic()
        old.kill(signal="SIGTERM")
        if self.behind_balancer and ip:
            try:
                wait_for(
                    lambda: self._out_of_rotation(ip),
                    self.stop_timeout,
                    f"the balancer to take {short_name(old)} out",
                    interval=0.2,
                )
            except DockerError as exc:  # it is stopping regardless: say so, and finish the stop
                self.say(str(exc))
        out, clock = time.monotonic() - clock, time.monotonic()
        try:
            old.wait(timeout=self.stop_timeout)
        except (ReadTimeout, RequestsConnectionError):
            self.say(f"{short_name(old)} still running {self.stop_timeout}s after SIGTERM: SIGKILL")
            old.kill()
            old.wait(timeout=30)
        return out, time.monotonic() - clock

    def _out_of_rotation(self, ip: str) -> bool:
        """DOWN (failed its checks), MAINT (gone from DNS) or no server at all; "UP 1/2" still gets traffic."""
        status = self.balancer.status_of(self.service, ip)  # type: ignore[union-attr]
        return status is None or not status.startswith("UP")

    def _newcomer(self, before: set[str]) -> Container | None:
        fresh = [c for c in self.project.containers(self.service) if c.id not in before]
        return fresh[0] if fresh else None

    @staticmethod
    def _healthy(container: Container) -> bool:
        container.reload()
        if container.status != "running":
            raise DockerError(f"{short_name(container)} stopped while starting: {container.status}")
        return health(container) in ("healthy", "-")
