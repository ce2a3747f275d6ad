"""Where the failover demo fails the sessions Redis: a Sentinel group of its own (a local stack), or the compose
project's (``redis`` + ``redis-replica`` + ``redis-sentinel-1..3``).

Both are named the same way (the local stack's components, compose's services) and offer the same verbs, so the
demo's rounds and its judge are one code for both:

- ``watch``: what the Sentinels say and what each data node is (``Watch``: the primary they name, whether they
  all agree, ``INFO replication`` of a node) — asked directly, with redis-py, at the nodes' addresses (compose:
  the containers' addresses on the project's network, routed from the engine's host; with the stack's
  REDIS_PASSWORD, which every node and Sentinel requires);
- ``freeze`` / ``thaw``: a Sentinel stops answering but keeps its sockets — SIGSTOP/SIGCONT locally,
  ``container.pause()`` / ``unpause()`` in compose;
- ``kill``: SIGKILL to the node's process, for its supervisor to start again: locally ``scalecube up``'s
  supervisor, in compose Docker's restart policy (``unless-stopped``: the main process SIGKILLed on this host is
  a crash to the engine; ``faults.ComposeStack.kill`` says why not ``container.kill()``, which the engine counts
  as stopped by the user — where it must use it, it starts the container again itself and says so);
- ``restarts``: the supervisor's count (Docker's ``RestartCount``), to say who brought the node back.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from infra.local.sentinel import Address, agreed_primary, ask_sentinels, failover_epoch, role_of, sentinels_ready
from infra.local.stack import REDIS_TOPOLOGIES
from loadtests.experiments.faults import ComposeStack, LocalStack

if TYPE_CHECKING:
    from loadtests.experiments.context import DemoContext
    from loadtests.experiments.docker_stack import DockerStack

HEALTHY_TIMEOUT = 60.0  # Docker's next passing healthcheck (every 5 s), and a restarted node's first, at most
SETTLE_TIMEOUT = 90.0  # a group that can fail over (replica linked, every Sentinel knowing the others), at most
NODE_ENV = "REDIS_NODE"  # docker-compose.yml: set on the sessions Redis's data nodes only (x-sessions-redis)
SENTINELS_ENV = "REDIS_SENTINELS"  # the api's list of Sentinels, host:port,...


@dataclass
class Watch:
    """What the Sentinels say and what each data node is, by node name. ``nodes`` and ``sentinels`` are asked
    each time (a restarted container may have a new address)."""

    nodes: Callable[[], dict[str, Address | None]]  # data node name -> where it answers (None: not running)
    sentinels: Callable[[], list[Address]]
    password: str | None = None

    def name_of(self, address: Address) -> str | None:
        """The node a Sentinel or a replica names: by address (local), or by the hostname compose announces."""
        for name, where in self.nodes().items():
            if where == address or (name == address[0] and (where is None or where[1] == address[1])):
                return name
        return None

    def primary(self) -> str | None:
        named = ask_sentinels(self.sentinels(), password=self.password)
        return self.name_of(named) if named else None

    def agreed(self) -> str | None:
        """The primary every Sentinel names (None while they do not all answer and agree)."""
        named = agreed_primary(self.sentinels(), password=self.password)
        return self.name_of(named) if named else None

    def epoch(self) -> int | None:
        """The Sentinels' epoch: one more per leader election they try (a failover, or a split vote retried)."""
        return failover_epoch(self.sentinels(), password=self.password)

    def replication(self, node: str) -> dict[str, object] | None:
        address = self.nodes().get(node)
        return role_of(address, password=self.password) if address else None

    def follows(self, node: str, primary: str) -> bool:
        """``node`` is a replica of ``primary`` with its link up."""
        info = self.replication(node) or {}
        if info.get("role") != "slave" or info.get("master_link_status") != "up":
            return False
        return self.name_of((str(info.get("master_host")), int(str(info.get("master_port", 0))))) == primary

    def settled(self, timeout: float = SETTLE_TIMEOUT) -> str:
        """The primary the Sentinels name, once every other node follows it and every Sentinel knows those
        replicas and the other Sentinels (a group that can fail over: right after a start it cannot yet)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            primary = self.primary()
            if primary is not None:
                replicas = [name for name in self.nodes() if name != primary]
                if all(self.follows(r, primary) for r in replicas) and sentinels_ready(
                    self.sentinels(), replicas=len(replicas), password=self.password
                ):
                    return primary
            time.sleep(0.2)
        raise RuntimeError(f"the sentinel group has no settled primary after {timeout:g}s")


class FailoverStack(Protocol):
    """What the failover demo needs from a stack, by node name."""

    where: str  # in words, for the report
    freezes: str  # how ``freeze`` stops a Sentinel, in words
    url: str  # where the visitors send their requests
    watch: Watch

    def sentinel_names(self) -> list[str]: ...
    def freeze(self, part: str) -> None: ...
    def thaw(self, part: str) -> None: ...
    def kill(self, part: str) -> str:
        """SIGKILL, for the supervisor to restart (or see to it); what was done, in words."""
        ...

    def restarts(self, part: str) -> int | None: ...


# -- a local stack of the demo's own -------------------------------------------------------------


def _address(url: str) -> Address:
    host, _, port = url.split("://", 1)[-1].split("/", 1)[0].rpartition(":")
    return host, int(port)


class LocalSentinels(LocalStack):
    """``scalecube up -d --services api --redis sentinel``: one api cluster on the sessions Redis group."""

    freezes = "frozen (SIGSTOP)"

    def __init__(self, workdir: Path, *, workers: int, keep_logs: Path | None = None) -> None:
        super().__init__(workdir, keep_logs=keep_logs)
        self.workers = workers
        self.watch = Watch(self._nodes, self._sentinels)

    def up(self) -> str:
        assert "sentinel" in REDIS_TOPOLOGIES
        result = self._cli(
            "up",
            "-d",
            "--services",
            "api",
            "--redis",
            "sentinel",
            "--workers",
            str(self.workers),
            "--port",
            str(self.port),
            timeout=240.0,
        )
        with contextlib.suppress(Exception):  # remember what started if it can; the failure below says why
            self.components()
        if result.returncode != 0:
            raise RuntimeError(
                f"scalecube up failed (exit {result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        self.components()
        self.where = "local stack (one api cluster, redis primary + replica + 3 sentinels)"
        return self.url

    def sentinel_names(self) -> list[str]:
        return [name for name, c in self.records.items() if c.get("kind") == "sentinel"]

    def _sentinels(self) -> list[Address]:
        return [_address(c["url"]) for c in self.records.values() if c.get("kind") == "sentinel"]

    def _nodes(self) -> dict[str, Address | None]:
        """A restarted component keeps its port: the records read at the start still say where it answers."""
        return {name: _address(c["url"]) for name, c in self.records.items() if c.get("kind") == "redis"}


# -- the compose project's -------------------------------------------------------------------------


class ComposeSentinels:
    """The running compose project's sessions Redis group: its data nodes (the services whose containers carry
    REDIS_NODE), its Sentinels (the api's REDIS_SENTINELS), each reached at its container's address."""

    freezes = "paused (container.pause())"

    def __init__(self, stack: DockerStack) -> None:
        from infra.docker.ops.project import redis_password

        self.stack = stack
        self.faults = ComposeStack(stack.project)
        self.url = stack.url
        self.where = f"compose project {stack.name} (redis primary + replica + 3 sentinels)"
        self.node_services = sorted(
            {
                c.labels.get("com.docker.compose.service", "")
                for c in stack.project.containers()
                if any(item.startswith(f"{NODE_ENV}=") for item in c.attrs["Config"].get("Env") or [])
            }
        )
        listed = stack.env("api").get(SENTINELS_ENV, "")
        self.sentinel_ports = {host: int(port) for host, _, port in (s.rpartition(":") for s in listed.split(",") if s)}
        why = "the failover demo kills the primary of the api's Sentinel-managed sessions Redis"
        if len(self.node_services) < 2 or not self.sentinel_ports:
            from loadtests.experiments.docker_stack import StackUnsupported

            raise StackUnsupported(
                f"--docker: the compose stack '{stack.name}' runs no Sentinel group for the sessions Redis "
                f"(data nodes {self.node_services or 'none'}, {SENTINELS_ENV}={listed!r}): {why}"
            )
        stack.require("api", "lb", *self.node_services, *self.sentinel_ports, why=why)
        # Looked up once (a restart, by its policy or by the demo, keeps the container), reloaded at each use.
        self.containers = {
            service: self.faults.container(service) for service in (*self.node_services, *self.sentinel_ports)
        }
        self.watch = Watch(self._nodes, self._sentinels, redis_password(self.containers[self.node_services[0]]))

    @classmethod
    def of(cls, ctx: DemoContext) -> ComposeSentinels:
        from loadtests.experiments.docker_stack import DockerStack

        return cls(DockerStack.of(ctx))

    @property
    def auth(self) -> bool:
        """Whether the api checks passwords at auth (AUTH_URL): the demo's visitors register first."""
        return bool(self.stack.env("api").get("AUTH_URL"))

    def sentinel_names(self) -> list[str]:
        return list(self.sentinel_ports)

    def _where(self, service: str, port: int) -> Address | None:
        from infra.docker.ops.project import ip_address

        container = self.containers[service]
        container.reload()
        # A paused Sentinel keeps its address (and is asked, and does not answer, as a frozen process would).
        address = ip_address(container) if container.status in ("running", "paused") else None
        return (address, port) if address else None

    def _nodes(self) -> dict[str, Address | None]:
        from loadtests.experiments.faults import REDIS_PORT

        return {service: self._where(service, REDIS_PORT) for service in self.node_services}

    def _sentinels(self) -> list[Address]:
        found = (self._where(service, port) for service, port in self.sentinel_ports.items())
        return [address for address in found if address is not None]

    def freeze(self, part: str) -> None:
        self.faults.freeze(part)

    def thaw(self, part: str) -> None:
        self.faults.thaw(part)

    def kill(self, part: str) -> str:
        return self.faults.kill(part)

    def restarts(self, part: str) -> int | None:
        return self.faults.restarts(part)

    def keep_logs(self, folder: Path, since: float) -> None:
        """The group's containers' logs since ``since`` (epoch seconds), one file each: the Sentinels' votes and
        switches, each node's start and sync — what says why a round went as it did."""
        folder.mkdir(parents=True, exist_ok=True)
        for service, container in self.containers.items():
            with contextlib.suppress(Exception):  # a log is a help, not a claim: never fail the demo for one
                (folder / f"{service}.log").write_bytes(container.logs(timestamps=True, since=int(since)))

    def restore(self) -> None:
        """As the demo found it: every Sentinel unpaused, every data node running (a killed one started if its
        policy did not), then (bounded) the group settled again, so what runs next finds it able to fail over,
        and Docker calling each of its containers healthy again (a paused Sentinel missed its healthchecks, a
        restarted node starts over)."""
        from infra.docker.engine import DockerError
        from infra.docker.ops.project import health, wait_for

        self.faults.restore([*self.node_services, *self.sentinel_ports])
        try:
            self.watch.settled()
        except RuntimeError as exc:
            self.stack.say(f"the sentinel group did not settle after the demo: {exc}")

        def healthy() -> bool:
            for container in self.containers.values():
                container.reload()
            return all(health(c) in ("healthy", "-") for c in self.containers.values())

        try:
            wait_for(healthy, HEALTHY_TIMEOUT, "the sentinel group's containers to be healthy again", interval=1.0)
        except DockerError as exc:
            self.stack.say(str(exc))
