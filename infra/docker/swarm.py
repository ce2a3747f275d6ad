"""The compose file on Docker Swarm: ``docker stack deploy`` of the same docker-compose.yml.

Swarm's loader predates parts of the compose spec the file relies on, so the file goes through
``docker compose config`` (which resolves anchors, ``.env`` and profiles) and then loses what Swarm
refuses or ignores — nothing that changes what runs:

- ``depends_on`` with conditions: Swarm starts everything at once and restarts what fails
  (``deploy.restart_policy``); the services' health checks and retries cover the order;
- ``build``, ``restart``, ``init``, ``name``, ``x-*``: build the images first; Swarm restarts by policy;
- ``tmpfs``: becomes a tmpfs mount;
- a published port's ``host_ip``: Swarm publishes on every interface;
- the ``console`` service (``COMPOSE_ONLY``): it holds the engine's socket, which Swarm would publish on every
  interface, and it finds its containers by compose's labels, which Swarm's tasks do not carry.

Every service gets ``endpoint_mode: dnsrr`` and every published port ``mode: host``: a name resolves
to every task's address, as with compose (so HAProxy's ``server-template`` sees each api replica), and
the balancer's port is bound on the node that runs it. Swarm's virtual IPs and routing mesh are not
used: they need the kernel's IPVS, which not every host has (this project's machines do not).
"""

from __future__ import annotations

import json
import time
from typing import Any

from infra.docker.compose import Compose
from infra.docker.engine import DockerError

DROPPED_SERVICE_KEYS = ("build", "depends_on", "restart", "init", "pull_policy")
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


def deploy(compose: Compose, stack_name: str) -> None:
    """Render, adapt and deploy; images must exist on the nodes (``scalecube images``)."""
    rendered = json.loads(compose.run(["config", "--format", "json"]))
    compose.run_docker(
        ["stack", "deploy", "--resolve-image", "never", "-c", "-", stack_name], stdin=json.dumps(swarm_stack(rendered))
    )


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
