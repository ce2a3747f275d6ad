"""Several Docker engines on this machine, one Swarm: ``scalecube nodes up|ls|kill|start|partition|down``.

Each node is a container running Debian's ``dockerd`` (Docker-in-Docker, the ``scalecube-node:airgap`` image:
``infra/docker/airgap/node.Dockerfile``) in its own network namespace, on a bridge network of its own. Not
``--privileged`` (refused where the host lacks CAP_SYS_RESOURCE): every capability but that one, no seccomp or
AppArmor profile, the host's cgroup tree, a volume for ``/var/lib/docker`` (overlay2 cannot sit on the container's
own overlay root) and a tmpfs on ``/run``. The checkout is mounted read-only at its own path, so the compose file's
bind mounts (HAProxy's and Prometheus's configuration) name the same files on every node.

Choices, and why:

- **Managers.** Three nodes or more: three managers, the rest workers. Raft keeps the control plane with a
  majority, so 2 of 3 managers survive the loss of any one machine — ``nodes kill`` may take any node, and
  ``swarm-deploy`` goes to any manager still up. One or two nodes: one manager (two managers would need both
  for a majority: worse than one), which ``nodes kill`` refuses to kill. Managers run tasks too: on one machine
  a node that only manages would be a third of the capacity idle.
- **Images: ``docker save | docker exec -i NODE docker load``, not a registry.** The compose file names its
  images as they are built here (``scalecube-service:latest``, ``scalecube-redis:airgap``…) and deploys with
  ``--resolve-image never``: loaded under the same names, nothing in the file changes. A registry would mean
  retagging every image with its address, an insecure-registry setting on every engine, and one more service
  to run and keep; each node would hold its own copy either way. A node that has an image (same id) is not
  sent it again, so ``up`` run twice loads nothing.
- **Labels.** The network, every node container and every volume carries ``scalecube.nodes=<cluster>``:
  ``down`` removes exactly those, and ``up`` finds what is already there (it is idempotent: running nodes are
  kept, stopped ones started, a Swarm already formed is joined only by the nodes not in it).
- **Node labels.** Each Swarm node is labelled ``scalecube.node=node-K``: the stack pins its stateful services
  (a Redis and its volume) with placement constraints on them (infra/docker/swarm.py).

Each inner engine listens on TCP 2375 without TLS, on the nodes' bridge only (never published): the host reaches
it at the node container's address (the SDK's ``base_url``, or ``DOCKER_HOST`` for the docker CLI).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from infra.docker.airgap import NODE_IMAGE, AirgapBuilder
from infra.docker.engine import DockerError
from infra.docker.ops.project import wait_for
from infra.paths import REPO

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

CLUSTER = "scalecube-nodes"  # the default cluster's name: its network's, and its containers' prefix
LABEL = "scalecube.nodes"  # on everything `up` makes; the value is the cluster's name
NODE_LABEL = "scalecube.node"  # on each Swarm node: node-1, node-2, ... (placement constraints name it)
ENGINE_PORT = 2375
SWARM_PORT = 2377
MANAGERS = 3  # with three nodes or more
DEFAULT_NODES = 3
ENGINE_TIMEOUT = 90.0  # an inner dockerd starts in a few seconds; a loaded 2-core host may take longer
SWARM_TIMEOUT = 90.0

Say = Callable[[str], None]


# -- the plan (pure) -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodePlan:
    cluster: str
    index: int  # 1-based
    role: str  # "manager" | "worker"

    @property
    def name(self) -> str:
        """The node's name in placement constraints and in ``nodes kill NODE``."""
        return f"node-{self.index}"

    @property
    def container(self) -> str:
        return f"{self.cluster}-{self.index}"

    @property
    def volume(self) -> str:
        return f"{self.container}-docker"


def manager_count(nodes: int) -> int:
    """Three managers from three nodes up (any one may be lost), else one (two would need both for a majority)."""
    return MANAGERS if nodes >= MANAGERS else 1


def plan(nodes: int, cluster: str = CLUSTER) -> list[NodePlan]:
    if nodes < 1:
        raise DockerError("nodes up needs at least 1 node")
    managers = manager_count(nodes)
    return [NodePlan(cluster, index, "manager" if index <= managers else "worker") for index in range(1, nodes + 1)]


def labels(cluster: str, **more: str) -> dict[str, str]:
    return {LABEL: cluster, **more}


def container_options(node: NodePlan, network: str, repo: str = str(REPO)) -> dict[str, Any]:
    """``client.containers.run`` keyword arguments for one node: DinD without ``--privileged``."""
    return {
        "image": NODE_IMAGE,
        "name": node.container,
        "hostname": node.name,  # the Swarm node's hostname: how `ls` and the node labels find it
        "detach": True,
        "network": network,
        "labels": labels(node.cluster, **{NODE_LABEL: node.name, f"{LABEL}.role": node.role}),
        "cap_add": ["ALL"],
        "cap_drop": ["SYS_RESOURCE"],
        "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
        "volumes": {
            "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
            node.volume: {"bind": "/var/lib/docker", "mode": "rw"},
            repo: {"bind": repo, "mode": "ro"},
        },
        "tmpfs": {"/run": ""},
    }


def images_to_load(wanted: Mapping[str, str], present: Mapping[str, str | None]) -> list[str]:
    """The tags (``wanted``: tag → the host's image id) a node lacks or holds with another id (``present``)."""
    return sorted(tag for tag, image_id in wanted.items() if present.get(tag) != image_id)


def stack_images(config: Mapping[str, Any]) -> list[str]:
    """Every image the rendered compose file (``docker compose config --format json``) runs."""
    return sorted({service["image"] for service in config.get("services", {}).values() if service.get("image")})


# -- the nodes (Docker) --------------------------------------------------------------------------------------------


@dataclass
class Node:
    plan: NodePlan
    container: Container

    @property
    def address(self) -> str:
        self.container.reload()
        networks = self.container.attrs["NetworkSettings"]["Networks"]
        address = (networks.get(self.plan.cluster) or {}).get("IPAddress")
        if not address:
            raise DockerError(f"{self.plan.container} has no address on network {self.plan.cluster} (is it running?)")
        return address

    @property
    def engine_url(self) -> str:
        return f"tcp://{self.address}:{ENGINE_PORT}"

    def engine(self, timeout: float = 30.0) -> docker.DockerClient:
        import docker

        return docker.DockerClient(base_url=self.engine_url, timeout=timeout)


@dataclass
class NodeRow:
    name: str
    container: str
    state: str
    address: str
    role: str
    swarm: str  # the Swarm's view: ready / down / unknown
    availability: str
    tasks: int | None  # running tasks on it, from a manager


class Nodes:
    """One cluster of nodes on the host's engine (``client``)."""

    def __init__(self, client: docker.DockerClient, cluster: str = CLUSTER, say: Say = lambda _: None) -> None:
        self.client = client
        self.cluster = cluster
        self.say = say

    # -- what is there

    def containers(self) -> list[Container]:
        found = self.client.containers.list(all=True, filters={"label": f"{LABEL}={self.cluster}"})
        return sorted(found, key=lambda c: int(c.labels.get(NODE_LABEL, "node-0").rpartition("-")[2]))

    def nodes(self) -> list[Node]:
        return [
            Node(NodePlan(self.cluster, int(c.labels[NODE_LABEL].rpartition("-")[2]), c.labels[f"{LABEL}.role"]), c)
            for c in self.containers()
        ]

    def node(self, name: str) -> Node:
        for node in self.nodes():
            if name in (node.plan.name, node.plan.container):
                return node
        known = ", ".join(n.plan.name for n in self.nodes()) or "none (scalecube nodes up)"
        raise DockerError(f"no node {name!r} in {self.cluster}; its nodes: {known}")

    def manager(self) -> Node:
        """A running manager whose engine answers: where ``swarm-deploy`` and ``ls`` ask."""
        for node in self.nodes():
            if node.plan.role != "manager" or node.container.status != "running":
                continue
            try:
                engine = node.engine(timeout=5)
                if engine.info()["Swarm"].get("ControlAvailable"):
                    return node
            except Exception:  # noqa: BLE001 - a manager that does not answer: try the next
                continue
        raise DockerError(f"no manager of {self.cluster} answers (scalecube nodes up)")

    # -- up

    def up(self, count: int = DEFAULT_NODES, images: Iterable[str] = ()) -> list[Node]:
        """Nodes running, their engines up, one Swarm, node labels, ``images`` on every node; idempotent."""
        import docker.errors

        plans = plan(count, self.cluster)
        existing = {n.plan.index: n for n in self.nodes()}
        if existing and sorted(existing) != [p.index for p in plans]:
            # roles follow the count (three managers from three nodes): a cluster is not grown or shrunk in place
            raise DockerError(f"{self.cluster} has {len(existing)} node(s); `nodes down` first to run {count}")
        try:
            self.client.images.get(NODE_IMAGE)
        except docker.errors.ImageNotFound:
            AirgapBuilder(self.say).node_image()  # `scalecube images --airgap` builds it too
        self._network()
        nodes = []
        for node_plan in plans:
            node = existing.get(node_plan.index)
            if node is None:
                self.client.volumes.create(node_plan.volume, labels=labels(self.cluster))
                self.say(f"{node_plan.name}: starting ({node_plan.role})")
                node = Node(node_plan, self.client.containers.run(**container_options(node_plan, self.cluster)))
            elif node.container.status != "running":
                self.say(f"{node_plan.name}: starting again")
                node.container.start()
            nodes.append(node)
        for node in nodes:
            wait_for(lambda node=node: _pings(node), ENGINE_TIMEOUT, f"{node.plan.name}'s engine")
        self._swarm(nodes)
        self.load_images(nodes, images)
        return nodes

    def _network(self) -> None:
        if not [n for n in self.client.networks.list(names=[self.cluster]) if n.name == self.cluster]:
            self.client.networks.create(self.cluster, driver="bridge", labels=labels(self.cluster))

    def _swarm(self, nodes: list[Node]) -> None:
        first, *others = nodes
        lead = first.engine()
        if lead.info()["Swarm"]["LocalNodeState"] != "active":
            self.say(f"{first.plan.name}: docker swarm init")
            lead.swarm.init(advertise_addr=first.address, listen_addr=f"0.0.0.0:{SWARM_PORT}")
        lead.swarm.reload()
        tokens = lead.swarm.attrs["JoinTokens"]
        for node in others:
            engine = node.engine()
            if engine.info()["Swarm"]["LocalNodeState"] == "active":
                continue
            self.say(f"{node.plan.name}: docker swarm join as a {node.plan.role}")
            engine.swarm.join(
                remote_addrs=[f"{first.address}:{SWARM_PORT}"],
                join_token=tokens["Manager" if node.plan.role == "manager" else "Worker"],
                advertise_addr=node.address,
                listen_addr=f"0.0.0.0:{SWARM_PORT}",
            )
        wait_for(lambda: self._all_ready(lead, len(nodes)), SWARM_TIMEOUT, f"{len(nodes)} ready Swarm nodes")
        for swarm_node in lead.nodes.list():
            hostname = swarm_node.attrs["Description"]["Hostname"]
            spec = swarm_node.attrs["Spec"]
            if spec.get("Labels", {}).get(NODE_LABEL) != hostname:
                swarm_node.update({**spec, "Labels": {**spec.get("Labels", {}), NODE_LABEL: hostname}})

    @staticmethod
    def _all_ready(lead: docker.DockerClient, count: int) -> bool:
        ready = [n for n in lead.nodes.list() if n.attrs["Status"]["State"] == "ready"]
        return len(ready) >= count

    def load_images(self, nodes: list[Node], images: Iterable[str]) -> None:
        """``docker save`` the images a node lacks, piped into its ``docker load``; one stream per node."""
        wanted = {tag: self.client.images.get(tag).id for tag in images}
        for node in nodes:
            engine = node.engine()
            present = {tag: _image_id(engine, tag) for tag in wanted}
            missing = images_to_load(wanted, present)
            if not missing:
                continue
            self.say(f"{node.plan.name}: docker save | docker load {', '.join(missing)}")
            save = subprocess.Popen(["docker", "save", *missing], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            loaded = subprocess.run(
                ["docker", "exec", "-i", node.plan.container, "docker", "load", "--quiet"],
                stdin=save.stdout,
                capture_output=True,
                text=True,
            )
            save.stdout.close()  # type: ignore[union-attr]
            saved = save.wait()
            if saved != 0 or loaded.returncode != 0:
                said = (save.stderr.read().decode() if save.stderr else "") + loaded.stderr  # type: ignore[union-attr]
                raise DockerError(f"loading images into {node.plan.name} failed: {said.strip()[-400:]}")

    # -- ls, kill, down

    def rows(self) -> list[NodeRow]:
        import docker.errors
        import requests.exceptions

        swarm: dict[str, dict[str, Any]] = {}
        tasks: dict[str, int] = {}
        try:
            lead = self.manager().engine(timeout=10)
            ids = {}
            for swarm_node in lead.nodes.list():
                hostname = swarm_node.attrs["Description"]["Hostname"]
                swarm[hostname] = swarm_node.attrs
                ids[swarm_node.id] = hostname
            for task in lead.api.tasks(filters={"desired-state": "running"}):
                if task.get("Status", {}).get("State") == "running" and task.get("NodeID") in ids:
                    tasks[ids[task["NodeID"]]] = tasks.get(ids[task["NodeID"]], 0) + 1
        except (DockerError, docker.errors.APIError, requests.exceptions.RequestException):
            # no manager answers, or none can while they elect a leader (after a partition heals): the containers'
            # view only
            swarm, tasks = {}, {}
        rows = []
        for node in self.nodes():
            node.container.reload()
            attrs = swarm.get(node.plan.name, {})
            networks = node.container.attrs["NetworkSettings"]["Networks"]
            rows.append(
                NodeRow(
                    node.plan.name,
                    node.plan.container,
                    node.container.status,
                    (networks.get(self.cluster) or {}).get("IPAddress") or "-",
                    node.plan.role,
                    attrs.get("Status", {}).get("State", "unknown"),
                    attrs.get("Spec", {}).get("Availability", "-"),
                    tasks.get(node.plan.name, 0) if swarm else None,
                )
            )
        return rows

    def kill(self, name: str) -> Node:
        """SIGKILL the node's container: its engine and every task on it stop at once, as a machine lost."""
        node = self.node(name)
        managers = [n for n in self.nodes() if n.plan.role == "manager"]
        if node.plan.role == "manager" and len(managers) < MANAGERS:
            raise DockerError(f"{node.plan.name} is the Swarm's only manager: killing it loses the control plane")
        node.container.kill()
        return node

    def start(self, name: str, timeout: float = SWARM_TIMEOUT) -> Node:
        """Start a killed (or stopped) node's container again and wait until its engine answers and the Swarm's
        managers see it ``ready``: its volume kept ``/var/lib/docker``, so the engine rejoins by itself (the
        bridge gives it back its address when no other container took it: the Swarm knows it by that one)."""
        node = self.node(name)
        node.container.reload()
        if node.container.status != "running":
            self.say(f"{node.plan.name}: starting again")
            node.container.start()
        wait_for(lambda: _pings(node), ENGINE_TIMEOUT, f"{node.plan.name}'s engine")
        wait_for(lambda: self.swarm_state(node.plan.name) == "ready", timeout, f"{node.plan.name} ready in the Swarm")
        return node

    def swarm_state(self, name: str) -> str:
        """The Swarm's view of node ``name`` (ready / down / unknown), from a manager; "unknown" while none answers."""
        import docker.errors
        import requests.exceptions

        try:
            listed = self.manager().engine(timeout=10).nodes.list()
        except (DockerError, docker.errors.APIError, requests.exceptions.RequestException):
            return "unknown"
        states = [n.attrs["Status"]["State"] for n in listed if n.attrs["Description"]["Hostname"] == name]
        return states[0] if states else "unknown"

    def partition(self, name: str, *, heal: bool = False) -> Node:
        """Cut the node off from the other nodes (its engine and tasks keep running, unreachable to them), or
        heal that: firewall rules inside the node (``partition_commands``), so the host still reaches it."""
        node = self.node(name)
        if node.container.status != "running":
            raise DockerError(f"{node.plan.name} is not running")
        others = [
            n.address for n in self.nodes() if n.plan.index != node.plan.index and n.container.status == "running"
        ]
        for command in heal_commands() if heal else partition_commands(others):
            code, output = node.container.exec_run(command)
            if code != 0 and not heal:
                raise DockerError(f"{' '.join(command)} on {node.plan.name}: {output.decode(errors='replace')[-300:]}")
        return node

    def down(self) -> dict[str, list[str]]:
        """Remove the node containers (with their engines and everything in them), their volumes, the network."""
        import docker.errors

        removed: dict[str, list[str]] = {"containers": [], "volumes": [], "networks": []}
        selector = {"label": f"{LABEL}={self.cluster}"}
        for container in self.client.containers.list(all=True, filters=selector):
            container.remove(force=True, v=True)
            removed["containers"].append(container.name)
        for volume in self.client.volumes.list(filters=selector):
            try:
                volume.remove(force=True)
            except docker.errors.NotFound:
                continue
            removed["volumes"].append(volume.name)
        for network in self.client.networks.list(filters=selector):
            network.remove()
            removed["networks"].append(network.name)
        return removed


PARTITION_CHAIN = "SCALECUBE-PARTITION"


def partition_commands(others: Iterable[str]) -> list[list[str]]:
    """iptables commands, run in a node, that drop everything to and from the ``others`` (the other nodes'
    addresses) — Swarm's control traffic (2377, 7946) and the overlay's VXLAN (4789) alike — in a chain of
    its own, so healing removes exactly that. The host (the bridge's gateway) is not cut."""
    commands = [
        ["iptables", "-N", PARTITION_CHAIN],
        ["iptables", "-I", "INPUT", "1", "-j", PARTITION_CHAIN],
        ["iptables", "-I", "OUTPUT", "1", "-j", PARTITION_CHAIN],
    ]
    for address in others:
        commands += [
            ["iptables", "-A", PARTITION_CHAIN, "-s", address, "-j", "DROP"],
            ["iptables", "-A", PARTITION_CHAIN, "-d", address, "-j", "DROP"],
        ]
    return commands


def heal_commands() -> list[list[str]]:
    """Undo ``partition_commands`` (each may fail harmlessly when there is nothing to undo)."""
    return [
        ["iptables", "-D", "INPUT", "-j", PARTITION_CHAIN],
        ["iptables", "-D", "OUTPUT", "-j", PARTITION_CHAIN],
        ["iptables", "-F", PARTITION_CHAIN],
        ["iptables", "-X", PARTITION_CHAIN],
    ]


def _pings(node: Node) -> bool:
    try:
        return bool(node.engine(timeout=5).ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _image_id(engine: docker.DockerClient, tag: str) -> str | None:
    import docker.errors

    try:
        return engine.images.get(tag).id
    except docker.errors.ImageNotFound:
        return None


def as_dict(rows: list[NodeRow]) -> dict[str, Any]:
    return {"nodes": [asdict(row) for row in rows]}


def as_json(rows: list[NodeRow]) -> str:
    return json.dumps(as_dict(rows), indent=2)
