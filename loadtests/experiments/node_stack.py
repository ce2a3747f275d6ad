"""The stack the node-loss demo loses a node of: ``scalecube nodes up`` + ``scalecube docker swarm-deploy --nodes``.

What runs where is read, never assumed: the Swarm's tasks from a manager (service, node, container), and the
sessions Redis's roles from its data nodes themselves (``redis-cli role`` in each container, on its node's engine,
with the stack's password) — a failover may have moved the primary off ``redis``. The container → node map comes
from the manager's task list, not from each node's engine as ``scalecube docker ps --nodes`` asks: the lost node's
engine no longer answers, and the manager still lists the tasks that ran there.

Choosing the node to kill is pure (``choose_node``), so it is tested without Docker.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infra.docker.nodes import CLUSTER, Nodes
from infra.docker.swarm import pinned_to
from infra.local.sentinel import MASTER_NAME

if TYPE_CHECKING:
    import docker

DEFAULT_STACK = "scalecube"  # `scalecube docker swarm-deploy`'s default stack name
BALANCER, API = "lb", "api"
# the sessions Redis's data nodes (infra/docker/swarm.py: one per node; redis-replica-2 in the `nodes` profile)
REDIS_DATA = ("redis", "redis-replica", "redis-replica-2")
BALANCER_PORT = 8080
SENTINEL_PORT = 26379  # docker-compose.yml's x-sentinel
_AUTH = 'REDISCLI_AUTH="$(cat /run/secrets/scalecube/REDIS_PASSWORD)"'
ROLE_COMMAND = ["sh", "-c", f"{_AUTH} redis-cli role"]
SENTINEL_PREFIX = "redis-sentinel"  # redis-sentinel-1, -2, -3
# What one Sentinel sees: the primary (`sentinel master`), then each replica (`sentinel replicas`), as key/value lines.
SENTINEL_COMMAND = [
    "sh",
    "-c",
    f"{_AUTH} redis-cli -p {SENTINEL_PORT} --raw sentinel master {MASTER_NAME} && echo --- && "
    f"{_AUTH} redis-cli -p {SENTINEL_PORT} --raw sentinel replicas {MASTER_NAME}",
]


def sentinel_views(output: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """``SENTINEL_COMMAND``'s output: the primary as one Sentinel sees it, and each replica. ``--raw`` prints each
    instance as lines of key, value, key, value ... (``name`` first); "---" separates the two answers."""
    head, _, tail = output.partition("---")

    def pairs(lines: list[str]) -> dict[str, str]:
        return dict(zip(lines[::2], lines[1::2], strict=False))

    master = pairs(head.strip("\n").splitlines())
    lines = tail.strip("\n").splitlines()
    starts = [i for i in range(0, len(lines), 2) if lines[i] == "name"]
    replicas = [pairs(lines[a:b]) for a, b in zip(starts, [*starts[1:], len(lines)], strict=False)]
    return master, replicas


class NotDeployed(RuntimeError):  # noqa: N818 - a demo error (exit 2) that says which commands to run
    """No ``scalecube nodes`` cluster, or no stack deployed over it."""


class NodeChoiceError(RuntimeError):
    """The node asked for cannot be the one lost (exit 2)."""


def how_to_deploy(cluster: str, stack: str) -> str:
    deploy = f"scalecube docker swarm-deploy{'' if stack == DEFAULT_STACK else ' ' + stack} --nodes {cluster}"
    cluster_option = "" if cluster == CLUSTER else f" --cluster {cluster}"
    return f"run first: scalecube nodes up --nodes 3{cluster_option} && {deploy}"


@dataclass(frozen=True)
class Task:
    service: str  # the stack's service without the stack's prefix: api, lb, redis, ...
    node: str  # node-K
    container: str  # the container's id, 12 characters: its hostname, what X-Served-By names
    running: bool


@dataclass(frozen=True)
class Placement:
    """Where the stack runs: its running tasks, and which data node is the sessions Redis's primary."""

    tasks: tuple[Task, ...]
    nodes: tuple[str, ...]  # every node of the cluster, running or not
    redis_roles: tuple[tuple[str, str], ...] = ()  # (service, "master" | "slave")

    def nodes_of(self, service: str) -> list[str]:
        return sorted({t.node for t in self.tasks if t.service == service and t.running})

    def on(self, node: str) -> list[str]:
        """The services with a running task on ``node``, each with its count: ``["api", "auth", "redis-sentinel-1"]``."""
        counts = Counter(t.service for t in self.tasks if t.node == node and t.running)
        return [f"{name}×{n}" if n > 1 else name for name, n in sorted(counts.items())]

    def api_per_node(self) -> dict[str, int]:
        return dict(Counter(t.node for t in self.tasks if t.service == API and t.running))

    def redis_nodes(self, role: str) -> list[str]:
        """The nodes of the data nodes in ``role`` ("master" or "slave")."""
        return sorted({node for service, found in self.redis_roles if found == role for node in self.nodes_of(service)})

    def redis_node(self, role: str) -> str | None:
        found = self.redis_nodes(role)
        return found[0] if found else None

    @property
    def balancer(self) -> str | None:
        nodes = self.nodes_of(BALANCER)
        return nodes[0] if nodes else None


def choose_node(placement: Placement, asked: str | None) -> tuple[str, str]:
    """The node to lose, and a warning ("" if none): ``asked`` if it may be lost, else by default the sessions Redis
    primary's node — Redis HA is there to survive it — when it runs api replicas and a replica lives elsewhere, else
    another node with api replicas. Never the balancer's: it is the only way in."""
    api = placement.api_per_node()
    balancer, primary = placement.balancer, placement.redis_node("master")
    if asked is not None:
        if asked not in placement.nodes:
            raise NodeChoiceError(f"no node {asked!r}; the cluster's nodes: {', '.join(placement.nodes)}")
        if asked == balancer:
            raise NodeChoiceError(
                f"{asked} runs the balancer, the demo's target (its host-mode port is on that node): losing it "
                "stops every request, which no other node can answer; choose a node with api replicas only"
            )
        if not api.get(asked):
            raise NodeChoiceError(f"{asked} runs no api replica (api on: {', '.join(sorted(api)) or 'none'})")
        return asked, _redis_warning(placement, asked)
    candidates = [node for node in placement.nodes if api.get(node) and node != balancer]
    if not candidates:
        raise NodeChoiceError(
            f"no node runs api replicas without the balancer (api on: {', '.join(sorted(api)) or 'none'}; "
            f"balancer on {balancer})"
        )
    quiet = [node for node in candidates if not _redis_warning(placement, node)]
    preferred = [node for node in quiet if node == primary] or quiet or candidates
    node = preferred[-1]
    return node, _redis_warning(placement, node)


def _redis_warning(placement: Placement, node: str) -> str:
    """What losing ``node`` costs the sessions Redis beyond a failover, or "": a login WAITs for one replica."""
    primary, replicas = placement.redis_node("master"), placement.redis_nodes("slave")
    others = [n for n in replicas if n != node]
    if primary is None:
        return "the sessions Redis has no primary: every login answers 503 whatever is lost"
    if node == primary and not others:
        return (
            f"{node} runs the sessions Redis primary and no replica is left elsewhere: nothing to promote, logins "
            "answer 503 until the node returns"
        )
    if node != primary and node in replicas and not others:
        return (
            f"{node} runs the sessions Redis's only replica: a login WAITs for one replica, so logins answer 503 "
            "until the node returns"
        )
    return ""


class NodeStack:
    """The deployment: ``cluster`` (``scalecube nodes``) and ``stack`` on it; the verbs the demo needs."""

    def __init__(self, client: docker.DockerClient, cluster: str = CLUSTER, stack: str = DEFAULT_STACK) -> None:
        self.nodes = Nodes(client, cluster)
        self.cluster = cluster
        self.stack = stack

    def check(self) -> None:
        """Refuse (``NotDeployed``, with the commands to run) when the cluster or the stack is not there."""
        from infra.docker.engine import DockerError

        found = self.nodes.nodes()
        if len(found) < 2:
            raise NotDeployed(
                f"{'no' if not found else 'one'} node in the cluster {self.cluster}: the demo loses one of several; "
                + how_to_deploy(self.cluster, self.stack)
            )
        down = [n.plan.name for n in found if n.container.status != "running"]
        if down:
            raise NotDeployed(
                f"{', '.join(down)} of {self.cluster} not running: bring it back first "
                f"(scalecube nodes start {down[0]}{'' if self.cluster == CLUSTER else ' --cluster ' + self.cluster})"
            )
        try:
            services = {s.name for s in self.manager().services.list()}
        except DockerError as exc:
            raise NotDeployed(f"{exc}; {how_to_deploy(self.cluster, self.stack)}") from None
        missing = [s for s in (API, BALANCER) if f"{self.stack}_{s}" not in services]
        if missing:
            raise NotDeployed(
                f"no stack {self.stack} on {self.cluster} (its {', '.join(missing)} missing); "
                + how_to_deploy(self.cluster, self.stack)
            )

    def manager(self) -> docker.DockerClient:
        return self.nodes.manager().engine(timeout=15)

    def tasks(self, service: str | None = None) -> list[Task]:
        """Every task the manager lists (running or not, the lost node's included): node and container each."""
        engine = self.manager()
        names = {n.id: n.attrs["Description"]["Hostname"] for n in engine.nodes.list()}
        services = {s.id: s.name.removeprefix(f"{self.stack}_") for s in engine.services.list()}
        filters: dict[str, Any] = {"label": f"com.docker.stack.namespace={self.stack}"}
        if service:
            filters = {"service": f"{self.stack}_{service}"}
        found = []
        for task in engine.api.tasks(filters=filters):
            status = task.get("Status", {})
            container = status.get("ContainerStatus", {}).get("ContainerID", "")[:12]
            running = status.get("State") == "running" and task.get("DesiredState") == "running"
            name = services.get(task.get("ServiceID", ""), "?")
            found.append(Task(name, names.get(task.get("NodeID", ""), "?"), container, running))
        return found

    def placement(self, without: str | None = None) -> Placement:
        """Where the stack runs; ``without``: leaving out a node (a lost one: the manager may still list its tasks
        as running, and its engine would not answer the role asked of its data node)."""
        every = [t for t in self.tasks() if t.node != without]
        tasks = tuple(t for t in every if t.running)
        deployed = {t.service for t in every}
        roles = tuple((service, self._redis_role(tasks, service)) for service in REDIS_DATA if service in deployed)
        return Placement(tasks, tuple(n.plan.name for n in self.nodes.nodes()), roles)

    def settled(self, timeout: float, sleep: Callable[[float], None] = time.sleep) -> Placement:
        """The placement once the api runs its replica count, the balancer runs and the sessions Redis has one
        primary, its other data nodes replicas (a stack just deployed gets there in a minute or so);
        ``TimeoutError`` if not."""
        deadline = time.monotonic() + timeout
        replicas = self.api_replicas()
        while True:
            placement = self.placement()
            roles = sorted(role for _, role in placement.redis_roles)
            waiting = []
            if len(placement.nodes_of(API)) == 0 or sum(placement.api_per_node().values()) != replicas:
                waiting.append(f"{replicas} api tasks running (now {sum(placement.api_per_node().values())})")
            if placement.balancer is None:
                waiting.append("the balancer running")
            if len(roles) < 2 or roles.count("master") != 1 or roles.count("slave") != len(roles) - 1:
                waiting.append(f"the sessions Redis's primary and its replicas (roles now {roles})")
            elif unready := self._sentinels_unready(placement, len(roles) - 1):
                waiting.append(f"every Sentinel ready for a failover ({unready})")
            if not waiting:
                return placement
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the stack {self.stack} did not settle in {timeout:g} s: waiting for {'; '.join(waiting)}"
                )
            sleep(2.0)

    def _sentinels_unready(self, placement: Placement, replicas: int) -> str:
        """ "" when every Sentinel sees the primary up, the other Sentinels, and each of the ``replicas`` replicas
        up and linked to it — what electing a leader and promoting one needs; else what the first one lacks. A
        group just deployed answers long before: Sentinels learn the replicas from the primary's INFO and each
        other from hello messages. The README asks it of any failover experiment, and node-loss once killed a
        primary 5 s after a Sentinel had first seen the replicas (its failover took 11 s, two of them aborted
        `-failover-abort-no-good-slave`)."""
        sentinels = sorted({t.service for t in placement.tasks if t.service.startswith(SENTINEL_PREFIX)})
        if not sentinels:
            return "no Sentinel running"
        for service in sentinels:
            views = self._exec(placement.tasks, service, SENTINEL_COMMAND)
            if views is None:
                return f"{service} not answering"
            master, replica_views = sentinel_views(views)
            if master.get("flags") != "master":
                return f"{service}: primary flags {master.get('flags', '?')}"
            if int(master.get("num-other-sentinels", 0)) < len(sentinels) - 1:
                return f"{service} knows {master.get('num-other-sentinels', 0)} other Sentinels"
            linked = [r for r in replica_views if r.get("flags") == "slave" and r.get("master-link-status") == "ok"]
            if len(linked) < replicas:
                return f"{service} sees {len(linked)} of {replicas} replicas up and linked"
        return ""

    def _exec(self, tasks: Iterable[Task], service: str, command: list[str]) -> str | None:
        """``command``'s output in a running task of ``service`` (through its node's engine); None if none answers."""
        for task in tasks:
            if task.service != service:
                continue
            try:
                container = self.nodes.node(task.node).engine(timeout=10).containers.get(task.container)
                code, output = container.exec_run(command)
            except Exception:  # noqa: BLE001 - not answering: the caller says so
                continue
            if code == 0 and output:
                return output.decode(errors="replace")
        return None

    def _redis_role(self, tasks: Iterable[Task], service: str) -> str:
        """``master`` or ``slave``, from the data node itself (``redis-cli role`` in its container); "?" if none."""
        output = self._exec(tasks, service, ROLE_COMMAND)
        return output.split()[0] if output and output.split() else "?"

    def api_replicas(self) -> int:
        spec = self.manager().services.get(f"{self.stack}_{API}").attrs["Spec"]
        return int(spec.get("Mode", {}).get("Replicated", {}).get("Replicas", 0))

    def balancer_url(self, placement: Placement) -> str:
        """The balancer's host-mode port, at its node's address on the nodes' network."""
        if placement.balancer is None:
            raise NotDeployed(
                f"the stack {self.stack}'s balancer runs nowhere; " + how_to_deploy(self.cluster, self.stack)
            )
        spec = self.manager().services.get(f"{self.stack}_{BALANCER}").attrs["Spec"]
        ports = spec.get("EndpointSpec", {}).get("Ports", [])
        port = next((p["PublishedPort"] for p in ports if p.get("TargetPort") == BALANCER_PORT), BALANCER_PORT)
        return f"http://{self.nodes.node(placement.balancer).address}:{port}"

    def containers(self) -> dict[str, str]:
        """Every api container the manager knows (the lost node's too): its id (its hostname) → its node."""
        return {t.container: t.node for t in self.tasks(API) if t.container}

    def kill(self, node: str) -> None:
        self.nodes.kill(node)

    def start(self, node: str) -> None:
        self.nodes.start(node)

    def pinned_to(self, node: str) -> list[str]:
        """The services placed on ``node`` only (``infra/docker/swarm.py``'s ``spread_over``): what must run there
        again once it is back (the spread ones stay where Swarm moved them: it does not rebalance)."""
        constraint = pinned_to(node)
        return sorted(
            s.name.removeprefix(f"{self.stack}_")
            for s in self.manager().services.list(filters={"label": f"com.docker.stack.namespace={self.stack}"})
            if constraint in s.attrs["Spec"].get("TaskTemplate", {}).get("Placement", {}).get("Constraints", [])
        )

    def sentinel_events(self, since: float, without: str) -> str:
        """The Sentinels' own logs since ``since`` (epoch seconds), read from each surviving node's engine (the
        Swarm's ``service logs`` would wait on the lost node): how the failover went, in their words — a slow one
        shows why (``+tilt``, ``-failover-abort-no-good-slave``, a split vote). Best effort: "" if none answers."""
        return "\n".join(
            f"== {service} on {node}\n{text}"
            for service, node, text in self._logs(lambda s: s.startswith(SENTINEL_PREFIX), since, without)
        )

    def balancer_log(self, since: float, without: str) -> str:
        """The balancer's log since ``since``, each line after the engine's timestamp (RFC 3339): HAProxy's own
        lines carry none, and its server state changes ("Server api/api2 is DOWN, ...") are when it stopped
        sending to a replica. Best effort: "" if its node does not answer."""
        return "\n".join(text for _, _, text in self._logs(lambda s: s == BALANCER, since, without, timestamps=True))

    def _logs(
        self, wanted: Callable[[str], bool], since: float, without: str, timestamps: bool = False
    ) -> list[tuple[str, str, str]]:
        """(service, node, log) of the stack's containers whose service is ``wanted``, read from each node's engine
        but ``without``'s; a node that does not answer is skipped (the others still tell)."""
        found = []
        for node in self.nodes.nodes():
            if node.plan.name == without:
                continue
            try:
                for container in node.engine(timeout=10).containers.list():
                    service = container.labels.get("com.docker.swarm.service.name", "").removeprefix(f"{self.stack}_")
                    if wanted(service):
                        text = container.logs(since=int(since), timestamps=timestamps)
                        found.append((service, node.plan.name, text.decode(errors="replace").rstrip()))
            except Exception:  # noqa: BLE001 - a node that does not answer: the others still tell
                continue
        return found

    def running_on(self, node: str, services: Iterable[str]) -> bool:
        wanted = set(services)
        return wanted <= {t.service for t in self.tasks() if t.node == node and t.running}
