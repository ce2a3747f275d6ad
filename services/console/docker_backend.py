"""The console's backend for the compose stack: the Docker SDK on the engine's socket, never a shell.

Its containers are found by compose's labels (``com.docker.compose.project``: its own project unless
COMPOSE_PROJECT says another). The actions:

- scale: more containers are created from one of the service's own (its image, command, environment,
  labels, mounts, network aliases, healthcheck and hardening, as compose made it), numbered after the
  highest; fewer are stopped (the master drains) and removed, highest numbers first — what compose's
  ``--scale`` does, and compose keeps treating them as its own;
- kill a container: SIGKILL, then a replacement made from its configuration with its number (the engine's
  restart policy does not restart a container killed through its API);
- kill one worker: SIGKILL to one worker's pid inside the container (``os.kill`` run by the container's own
  Python; the pid from ``scalecube status --json``, the master's control socket), whose master replaces it;
- rolling restart: SIGHUP to each container's master in turn (its rolling reload of the workers), the next
  one once every worker of this one is new;
- stop a Redis for T seconds: ``stop``, then ``start`` after T seconds.

Each waits for its effect and says it with the time it took.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import docker
import docker.errors
from docker.models.containers import Container

from kit.errors import DependencyUnavailable
from services.console.actions import (
    ActionFailed,
    KillContainer,
    KillWorker,
    RollingRestart,
    Say,
    Scale,
    StopRedis,
)

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
ONEOFF_LABEL = "com.docker.compose.oneoff"
STOP_TIMEOUT = 40  # compose's stop_grace_period for the Python services: the master drains up to 30 s
T = TypeVar("T")


def _started(container: Container) -> float | None:
    started = container.attrs.get("State", {}).get("StartedAt", "")
    if not started or started.startswith("0001"):
        return None
    # Docker gives nanoseconds; fromisoformat takes at most microseconds.
    head, _, fraction = started.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}").replace(tzinfo=UTC).timestamp()


def health(container: Container) -> str:
    """healthy / unhealthy / starting, or "-" for a container without a healthcheck."""
    return container.attrs.get("State", {}).get("Health", {}).get("Status", "-")


def ip_address(container: Container) -> str | None:
    networks = container.attrs.get("NetworkSettings", {}).get("Networks", {}) or {}
    return next((n["IPAddress"] for n in networks.values() if n.get("IPAddress")), None)


def _number(container: Container) -> int:
    return int(container.labels.get(NUMBER_LABEL, 0) or 0)


class DockerBackend:
    def __init__(self, project: str = "", *, timeout: float = 90.0, client: docker.DockerClient | None = None) -> None:
        try:
            self.client = client or docker.from_env(timeout=30)
            self.project = project or self._own_project()
        except docker.errors.DockerException as exc:
            raise DependencyUnavailable("docker", str(exc)[:200]) from exc
        self.timeout = timeout

    def _own_project(self) -> str:
        """The compose project of the container this process runs in (its hostname is its id)."""
        try:
            return self.client.containers.get(socket.gethostname()).labels[PROJECT_LABEL]
        except (docker.errors.NotFound, KeyError):
            raise DependencyUnavailable(
                "docker", "not in a compose container: set COMPOSE_PROJECT to the project to show"
            ) from None

    # -- reading --------------------------------------------------------------------------------------

    def containers(self, service: str | None = None, *, all: bool = True) -> list[Container]:
        labels = [f"{PROJECT_LABEL}={self.project}"] + ([f"{SERVICE_LABEL}={service}"] if service else [])
        try:
            found = self.client.containers.list(all=all, filters={"label": labels})
        except docker.errors.DockerException as exc:
            raise DependencyUnavailable("docker", str(exc)[:200]) from exc
        found = [c for c in found if c.labels.get(ONEOFF_LABEL) != "True"]  # `compose run` leftovers
        return sorted(found, key=lambda c: (c.labels.get(SERVICE_LABEL, ""), _number(c)))

    def topology(self) -> dict[str, object]:
        """Every container of the project: service, name, state, health, uptime, restarts, address."""
        now = time.time()
        rows = []
        for c in self.containers():
            started = _started(c)
            rows.append(
                {
                    "service": c.labels.get(SERVICE_LABEL, "?"),
                    "number": _number(c),
                    "name": c.name,
                    "id": c.id[:12],
                    "state": c.status,  # running, restarting, exited, paused, created
                    "health": health(c),
                    "uptime_s": round(now - started, 1) if started and c.status == "running" else None,
                    "restarts": int(c.attrs.get("RestartCount", 0)),
                    "ip": ip_address(c),
                    "instance": ip_address(c),  # Prometheus's `instance` label for it: its address
                }
            )
        return {"kind": "compose", "project": self.project, "containers": rows}

    def _container(self, name: str) -> Container:
        for c in self.containers():
            if c.name == name:
                return c
        raise ActionFailed(f"no container {name!r} in project {self.project!r}")

    def _wait(self, condition: Callable[[], T | None], what: str, timeout: float | None = None) -> T:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise ActionFailed(f"{what}: not within {timeout or self.timeout:g} s")
            time.sleep(0.5)

    def _ready(self, service: str, count: int) -> list[Container] | None:
        running = self.containers(service, all=False)
        return running if len(running) == count and all(health(c) in ("healthy", "-") for c in running) else None

    # -- actions --------------------------------------------------------------------------------------

    def scale(self, action: Scale, say: Say) -> str:
        started = time.monotonic()
        running = self.containers(action.service, all=False)
        if not running:
            raise ActionFailed(f"no running {action.service} container to copy")
        if action.count > len(running):
            template = running[0]
            highest = max(_number(c) for c in self.containers(action.service))
            for number in range(highest + 1, highest + 1 + action.count - len(running)):
                created = self._clone(template, number)
                say(f"created {created.name}")
        else:
            for victim in sorted(running, key=_number)[action.count :]:
                say(f"stopping {victim.name} (it drains)")
                victim.stop(timeout=STOP_TIMEOUT)
                victim.remove()
        self._wait(lambda: self._ready(action.service, action.count), f"{action.count} healthy {action.service}")
        return f"{action.count} {action.service} containers up and healthy after {time.monotonic() - started:.1f} s"

    def _clone(self, template: Container, number: int) -> Container:
        """A new container of the template's service, made as compose makes one (compose's own labels)."""
        api = self.client.api
        config, host_config = template.attrs["Config"], dict(template.attrs["HostConfig"])
        service = template.labels[SERVICE_LABEL]
        name = f"{self.project}-{service}-{number}"
        labels = {**config.get("Labels", {}), NUMBER_LABEL: str(number)}
        networks = template.attrs["NetworkSettings"]["Networks"]
        endpoints = {network: api.create_endpoint_config(aliases=[name, service]) for network in list(networks)[:1]}
        created = api.create_container(
            image=config["Image"],
            command=config.get("Cmd"),
            entrypoint=config.get("Entrypoint"),
            environment=config.get("Env"),
            user=config.get("User") or None,
            working_dir=config.get("WorkingDir") or None,
            labels=labels,
            name=name,
            healthcheck=config.get("Healthcheck"),
            stop_signal=config.get("StopSignal"),
            stop_timeout=config.get("StopTimeout"),
            host_config=host_config,
            networking_config=api.create_networking_config(endpoints),
        )
        for network in list(networks)[1:]:
            api.connect_container_to_network(created["Id"], network, aliases=[name, service])
        api.start(created["Id"])
        return self.client.containers.get(created["Id"])

    def kill_container(self, action: KillContainer, say: Say) -> str:
        """SIGKILL, then its replacement: the engine does not restart a container killed through its API (it
        counts as stopped by hand, whatever the restart policy), so a new one takes its number and name, made
        from its own configuration — what ``docker compose up`` would do — unless the engine restarted it first."""
        victim = self._container(action.container)
        if victim.status != "running":
            raise ActionFailed(f"{victim.name} is {victim.status}, not running")
        restarts, service = int(victim.attrs.get("RestartCount", 0)), victim.labels.get(SERVICE_LABEL, "?")
        started = time.monotonic()
        victim.kill("SIGKILL")
        victim.reload()
        say(f"{victim.name} killed (SIGKILL): {victim.status}")
        try:
            self._wait(lambda: victim.reload() or victim.status != "running", f"{victim.name} down", timeout=10)
        except ActionFailed:
            pass  # already restarted by the engine: the next check sees it
        victim.reload()
        if victim.status == "running" and int(victim.attrs.get("RestartCount", 0)) > restarts:
            replacement = victim
        else:
            victim.remove(force=True)
            replacement = self._clone(victim, _number(victim))
            say(f"replacement {replacement.name} ({replacement.id[:12]}) created")

        def up() -> bool:
            replacement.reload()
            return replacement.status == "running" and health(replacement) in ("healthy", "-")

        self._wait(up, f"{replacement.name} running and healthy")
        return (
            f"{victim.name} ({service}) replaced by {replacement.id[:12]}: running and healthy "
            f"{time.monotonic() - started:.1f} s after the kill"
        )

    def _workers(self, container: Container) -> list[dict[str, Any]]:
        """The workers its master reports on its control socket (``scalecube status --json``)."""
        code, output = container.exec_run(["scalecube", "status", "--json"])
        if code != 0:
            raise ActionFailed(f"{container.name}: its master did not answer status ({output[:200]!r})")
        return [w for cluster in json.loads(output).get("clusters", []) for w in cluster.get("workers", [])]

    def kill_worker(self, action: KillWorker, say: Say) -> str:
        container = self._container(action.container)
        workers = self._workers(container)
        slots = {int(w["slot"]): int(w["pid"]) for w in workers}
        slot = action.worker if action.worker is not None else min(slots, default=None)
        if slot not in slots:
            raise ActionFailed(f"{container.name} has no worker {slot} (its workers: {sorted(slots)})")
        pid, started = slots[slot], time.monotonic()
        code, output = container.exec_run(
            ["python3", "-c", "import os, signal, sys; os.kill(int(sys.argv[1]), signal.SIGKILL)", str(pid)]
        )
        if code != 0:
            raise ActionFailed(f"could not kill pid {pid} in {container.name}: {output[:200]!r}")
        say(f"worker {slot} (pid {pid}) of {container.name} killed")

        def replaced() -> int | None:
            now = {int(w["slot"]): w for w in self._workers(container)}
            new = now.get(slot)
            return int(new["pid"]) if new and int(new["pid"]) != pid and new["state"] == "listening" else None

        new_pid = self._wait(replaced, f"worker {slot} of {container.name} replaced")
        return f"worker {slot} of {container.name} replaced by pid {new_pid} after {time.monotonic() - started:.1f} s"

    def rolling_restart(self, action: RollingRestart, say: Say) -> str:
        started, replaced = time.monotonic(), 0
        containers = self.containers(action.service, all=False)
        if not containers:
            raise ActionFailed(f"no running {action.service} container")
        for container in containers:
            before = {int(w["pid"]) for w in self._workers(container)}
            container.kill("SIGHUP")  # the master's rolling reload: one worker at a time, none dropped

            def renewed() -> set[int] | None:
                workers = self._workers(container)
                pids = {int(w["pid"]) for w in workers}
                fresh = not (pids & before) and all(w["state"] == "listening" for w in workers)
                return pids if fresh and len(pids) >= len(before) else None

            replaced += len(self._wait(renewed, f"every worker of {container.name} replaced"))
            say(f"{container.name}: {len(before)} workers replaced")
        seconds = time.monotonic() - started
        return f"{len(containers)} {action.service} containers reloaded, {replaced} workers replaced in {seconds:.1f} s"

    def stop_redis(self, action: StopRedis, say: Say) -> str:
        (container, *_) = self.containers(action.service, all=False) or [None]
        if container is None:
            raise ActionFailed(f"{action.service} is not running")
        container.stop(timeout=5)
        say(f"{container.name} stopped; starting it again in {action.seconds:g} s")
        time.sleep(action.seconds)
        started = time.monotonic()
        container.start()

        def healthy() -> bool:
            container.reload()
            return container.status == "running" and health(container) in ("healthy", "-")

        self._wait(healthy, f"{container.name} healthy again")
        return f"{container.name} was down {action.seconds:g} s; healthy {time.monotonic() - started:.1f} s after its start"

    def close(self) -> None:
        self.client.close()
