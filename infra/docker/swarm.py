"""The compose file on Docker Swarm: ``docker stack deploy`` of the same docker-compose.yml.

Swarm's loader predates parts of the compose spec the file relies on, so the file goes through
``docker compose config`` (which resolves anchors, ``.env`` and profiles) and then loses what Swarm
refuses or ignores — nothing that changes what runs:

- ``depends_on`` with conditions: Swarm starts everything at once and restarts what fails
  (``deploy.restart_policy``); the services' health checks and retries cover the order;
- ``build``, ``restart``, ``init``, ``name``, ``x-*``: build the images first; Swarm restarts by policy;
- ``profiles``: the profiles asked for were applied when rendering (``deploy`` asks for ``nodes`` over nodes);
- ``tmpfs``: becomes a tmpfs mount;
- a published port's ``host_ip``: Swarm publishes on every interface;
- the ``console`` service (``COMPOSE_ONLY``): it holds the engine's socket, which Swarm would publish on every
  interface, and it finds its containers by compose's labels, which Swarm's tasks do not carry.

Every service gets ``endpoint_mode: dnsrr`` and every published port ``mode: host``: a name resolves
to every task's address, as with compose (so HAProxy's ``server-template`` sees each api replica), and
the balancer's port is bound on the node that runs it. Swarm's virtual IPs and routing mesh are not
used: they need the kernel's IPVS, which not every host has (this project's machines do not).

Over several nodes (``swarm-deploy --nodes``, the engines of ``scalecube nodes``), ``spread_over`` adds placement:

- the services that publish a port (the balancer, Locust, Prometheus) and the stateful ones (a Redis and its
  named volume: a volume is local to its node, so its service must come back where its data is) are pinned
  to the first node, by the node label ``scalecube.node`` — the balancer's address is that node's;
- the sessions Redis group (``redis``, ``redis-replica``, ``redis-replica-2``, ``redis-sentinel-*``) is pinned one
  service per node instead, in turn by name, starting at the second node: the primary (``redis``) never shares the
  balancer's node, so losing the primary's machine leaves a way in, and a node holds at most one data node and one
  Sentinel — losing it keeps two data nodes (``WAIT 1`` still answered) and two Sentinels (quorum 2 of 3, and the
  majority an election needs). ``redis-replica-2`` exists only in the ``nodes`` profile, which ``deploy`` renders
  with when it places over nodes (one machine needs no second replica: a lost container is back in seconds);
- everything else (the api, auth, the router, the shards) spreads its replicas over the nodes
  (``placement.preferences: spread``), and Swarm moves them when a node is lost; one the file gives no replica
  count runs ``SPREAD_REPLICAS`` (2) of them: a single replica on a lost machine is its whole service down until
  Swarm has noticed and started another (20–30 s here: auth's outage was the session routes' in the node-loss demo);
- the one-shot ``secrets`` service runs on every node (``mode: global``): its volume is local to each node,
  so each node's must be written — with the same values, given in its environment (``secret_values``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from infra.docker.compose import Compose
from infra.docker.engine import DockerError
from kit import secrets

DROPPED_SERVICE_KEYS = ("build", "depends_on", "restart", "init", "pull_policy", "profiles")
COMPOSE_ONLY = frozenset({"console"})


def swarm_stack(config: dict[str, Any]) -> dict[str, Any]:
    """``docker compose config``'s JSON, made acceptable to ``docker stack deploy``."""
    services = {}
    for name, service in config["services"].items():
        if name in COMPOSE_ONLY:
            continue
        service = {
            key: value for key, value in service.items() if key not in DROPPED_SERVICE_KEYS and value is not None
        }
        if "ports" in service:
            service["ports"] = [
                {
                    **{key: value for key, value in port.items() if key != "host_ip"},
                    "published": int(port["published"]),
                    "mode": "host",
                }
                for port in service["ports"]
            ]
        if "tmpfs" in service:  # Swarm only knows tmpfs as a mount
            service["volumes"] = [
                *service.get("volumes", []),
                *({"type": "tmpfs", "target": target} for target in service.pop("tmpfs")),
            ]
        service["deploy"] = {**service.get("deploy", {}), "endpoint_mode": "dnsrr"}
        services[name] = service
    stack = {key: value for key, value in config.items() if key in ("networks", "volumes", "secrets", "configs")}
    # Swarm networks are overlays: the compose default's bridge driver does not span nodes.
    stack["networks"] = {name: _overlay(network or {}) for name, network in config.get("networks", {}).items()}
    return {"version": "3.8", **stack, "services": services}


def _overlay(network: dict[str, Any]) -> dict[str, Any]:
    """An overlay that keeps the network's fixed subnets, if any: the services' FORWARDED_ALLOW_IPS names
    addresses in them. The 3.8 format knows only ``subnet`` in an IPAM config (no ip_range, no gateway)."""
    overlay: dict[str, Any] = {"driver": "overlay", "attachable": True}
    subnets = [
        {"subnet": entry["subnet"]} for entry in (network.get("ipam") or {}).get("config") or [] if entry.get("subnet")
    ]
    if subnets:
        overlay["ipam"] = {"config": subnets}
    return overlay


NODE_LABEL = "scalecube.node"  # infra/docker/nodes.py labels each Swarm node node-1, node-2, ...
SECRETS_SERVICE = "secrets"
SECRETS_VOLUME = "secrets"
SPREAD_GROUP_PREFIX = "redis"  # the sessions Redis group: redis, redis-replica(-2), redis-sentinel-1..3
SPREAD_REPLICAS = 2  # over several nodes, for a spread service the compose file gives no replica count
NODES_PROFILE = "nodes"  # docker-compose.yml's services for a stack over several nodes (redis-replica-2)


def pinned_to(node: str) -> str:
    return f"node.labels.{NODE_LABEL} == {node}"


def _stateful(service: dict[str, Any]) -> bool:
    return any(
        isinstance(volume, dict) and volume.get("type") == "volume" and volume.get("source") != SECRETS_VOLUME
        for volume in service.get("volumes", [])
    )


def _in_group(name: str, service: dict[str, Any]) -> bool:
    return name.startswith(SPREAD_GROUP_PREFIX) and _stateful(service)


def spread_over(stack: dict[str, Any], nodes: list[str]) -> dict[str, Any]:
    """``stack`` (from ``swarm_stack``) placed over ``nodes`` (their ``scalecube.node`` labels), as said above."""
    if not nodes:
        raise DockerError("no nodes to spread the stack over")
    first = nodes[0]
    group = sorted(name for name, service in stack["services"].items() if _in_group(name, service))
    services = {}
    for name, service in stack["services"].items():
        deploy = dict(service.get("deploy", {}))
        if name == SECRETS_SERVICE:
            deploy["mode"] = "global"
        elif name in group:  # in turn from the second node: the primary away from the balancer's
            deploy["placement"] = {"constraints": [pinned_to(nodes[(group.index(name) + 1) % len(nodes)])]}
        elif service.get("ports") or _stateful(service):
            deploy["placement"] = {"constraints": [pinned_to(first)]}
        else:
            deploy["placement"] = {"preferences": [{"spread": f"node.labels.{NODE_LABEL}"}]}
            if "replicas" not in deploy and deploy.get("mode", "replicated") == "replicated":
                deploy["replicas"] = min(SPREAD_REPLICAS, len(nodes))
        services[name] = {**service, "deploy": deploy}
    return {**stack, "services": services}


def secret_values(compose: Compose) -> dict[str, str]:
    """Every secret for a stack over several nodes: each node's ``secrets`` task writes the same ones. The
    environment's where set, else the values the running stack's ``secrets`` service was given (a new
    deploy keeps them: Redis holds its password), else new ones."""
    stack_service = f"{compose.project}_{SECRETS_SERVICE}"
    running: dict[str, str] = {}
    try:
        spec = json.loads(compose.run_docker(["service", "inspect", stack_service]))[0]["Spec"]
        running = dict(line.split("=", 1) for line in spec["TaskTemplate"]["ContainerSpec"].get("Env", []))
    except (DockerError, IndexError, KeyError, ValueError):
        running = {}  # no such stack yet
    return {name: compose.env.get(name) or running.get(name) or secrets.generate() for name in secrets.SECRETS}


def deploy(compose: Compose, stack_name: str, nodes: list[str] | None = None) -> None:
    """Render, adapt and deploy; images must exist on the nodes (``scalecube images``, ``scalecube nodes up``).
    With ``nodes``: the ``nodes`` profile too, placed over them (``spread_over``), every node's secrets the same
    (``secret_values``)."""
    if nodes:
        compose.env.update(secret_values(compose))
    profile = ["--profile", NODES_PROFILE] if nodes else []
    rendered = json.loads(compose.run([*profile, "config", "--format", "json"]))
    stack = swarm_stack(rendered)
    if nodes:
        stack = spread_over(stack, nodes)
    compose.run_docker(["stack", "deploy", "--resolve-image", "never", "-c", "-", stack_name], stdin=json.dumps(stack))


REMOVE_TIMEOUT = 120.0
REMOVE_RETRY_INTERVAL = 2.0


def remove(
    compose: Compose,
    stack_name: str,
    *,
    timeout: float = REMOVE_TIMEOUT,
    interval: float = REMOVE_RETRY_INTERVAL,
    sleep=time.sleep,
    clock=time.monotonic,
) -> None:
    """``docker stack rm``, again until it succeeds or ``timeout`` passes.

    The CLI removes the services, then the networks, without waiting between the two: a network whose
    tasks are still stopping is refused ("has active endpoints", exit 1) while everything else is gone
    or going. Asked again once the tasks are gone, it removes what is left; asked about a stack that is
    no more, it says "Nothing found in stack" and succeeds — so retrying is safe. (The CLI's own wait,
    ``--detach=false``, is not used: CLIs before 26.0 do not know it.)"""
    deadline = clock() + timeout
    while True:
        try:
            compose.run_docker(["stack", "rm", stack_name])
            return
        except DockerError:
            if clock() + interval > deadline:
                raise
            sleep(interval)
