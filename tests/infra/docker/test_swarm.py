"""The same compose file on a single-node Docker Swarm (`docker stack deploy`) serves through its balancer."""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from infra.docker import swarm
from infra.docker.compose import Compose
from infra.local.ports import free_port
from infra.paths import REPO
from scalecube import cli as scalecube_cli
from tests.support.docker import require_docker

pytestmark = pytest.mark.slow


GATEWAY_BRIDGE = "docker_gwbridge"  # made by the engine when it joins a swarm; leaving keeps it
INGRESS_SANDBOX = "ingress-sbox"  # the engine's own endpoint on the ingress network and the gateway bridge


@pytest.fixture(scope="module")
def swarm_stack() -> Iterator[tuple[str, int]]:
    """The compose file deployed as a stack; afterwards the engine is as it was: the stack's services,
    networks and volumes removed, and, if this fixture made the node a swarm, the swarm left and its
    gateway bridge removed."""
    client = require_docker()
    joined_here = client.info()["Swarm"]["LocalNodeState"] != "active"
    had_gateway_bridge = bool(networks_named(client, GATEWAY_BRIDGE))
    if joined_here:
        client.swarm.init(advertise_addr="127.0.0.1")
    name, lb_port = f"sctest{uuid.uuid4().hex[:6]}", free_port()
    ports = {
        "LB_PORT": lb_port,
        "STATS_PORT": free_port(),
        "LOCUST_PORT": free_port(),
        "PROMETHEUS_PORT": free_port(),
        "API_REPLICAS": 2,
        "LB_ADMIN_PASSWORD": os.environ.get("LB_ADMIN_PASSWORD") or secrets.token_urlsafe(24),
    }  # HAProxy needs one
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}}
    compose = Compose(REPO, project=name, env={k: str(v) for k, v in ports.items()})
    try:
        deployed = CliRunner().invoke(scalecube_cli.app, ["docker", "swarm-deploy", name], env=env)
        assert deployed.exit_code == 0, deployed.output
        yield name, lb_port
    finally:
        try:
            swarm.remove(compose, name)
            wait_for(lambda: not stack_objects(client, name), timeout=240, what=f"stack {name} removed")
            # `docker stack rm` keeps named volumes (Redis's data): once no container holds them, they go too.
            for volume in client.volumes.list(filters={"label": f"com.docker.stack.namespace={name}"}):
                volume.remove()
        finally:
            if joined_here:
                try:
                    wait_for(
                        lambda: only_the_ingress_sandbox(client),
                        timeout=60,
                        what="the engine to delete the stack's endpoints",
                    )
                finally:
                    client.swarm.leave(force=True)
                    if not had_gateway_bridge:
                        wait_for(
                            lambda: remove_network(client, GATEWAY_BRIDGE),
                            timeout=60,
                            what=f"{GATEWAY_BRIDGE} removed (an endpoint the engine no longer lists keeps it "
                            "until the engine restarts: moby/moby#37018)",
                        )


def networks_named(client, name: str) -> list:
    return [
        network for network in client.networks.list(names=[name]) if network.name == name
    ]  # the filter matches parts


def only_the_ingress_sandbox(client) -> bool:
    """True once the ingress network and the gateway bridge hold no endpoint but the engine's own sandbox's.

    The stack's containers leave the listing before the engine has deleted their endpoints. A swarm left
    while it still was (its log: "Unable to complete atomic operation, key modified) deleting object
    [endpoint ...], retrying") kept an endpoint on the gateway bridge that no inspect shows, and the bridge
    could not be removed again until the engine restarted."""
    for name in ("ingress", GATEWAY_BRIDGE):
        for network in networks_named(client, name):
            network.reload()
            if set(network.attrs.get("Containers") or {}) - {INGRESS_SANDBOX}:
                return False
    return True


def remove_network(client, name: str) -> bool:
    """True once no network is named ``name``; retried while a leaving swarm's endpoints still hold it."""
    import docker.errors

    for network in networks_named(client, name):
        try:
            network.remove()
        except docker.errors.APIError:
            return False
    return True


def stack_objects(client, name: str) -> list[str]:
    label = {"label": f"com.docker.stack.namespace={name}"}
    # sparse: no per-container inspect, which races with Swarm removing them (404).
    return [c.id for c in client.containers.list(all=True, filters=label, sparse=True)] + [
        n.id for n in client.networks.list(filters=label)
    ]


def wait_for(check, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_swarm_deploy_serves_every_path_through_the_balancer(swarm_stack):
    _, lb_port = swarm_stack
    hosts: set[str] = set()

    def both_replicas_answer() -> bool:
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{lb_port}", timeout=3) as http:
                for _ in range(10):
                    response = http.get("/", headers={"Connection": "close"})
                    if response.status_code == 200:
                        hosts.add(response.json()["host"])
        except httpx.HTTPError:
            return False
        return len(hosts) >= 2

    wait_for(both_replicas_answer, timeout=300, what="2 api replicas behind the swarm's balancer")
    # Swarm starts every service at once (no depends_on): auth and the router may come up later.
    # Public paths each service answers itself (auth: 401 without a token; the router: 422 without a country).
    wait_for(lambda: answers(lb_port, "/auth/verify", 401), timeout=180, what="auth behind the balancer")
    wait_for(lambda: answers(lb_port, "/users", 422), timeout=180, what="the router behind the balancer")
    # The router answering says nothing of its shards (also started at once): until shard-b resolves and
    # answers, a write gets the designed 503 naming it — and must turn into a 201 by itself.
    with httpx.Client(base_url=f"http://127.0.0.1:{lb_port}", timeout=10) as http:
        answers_seen: list[httpx.Response] = []

        def created_on_a_shard() -> bool:
            answers_seen.append(response := http.post("/users", json={"name": "Grace", "country": "US"}))
            assert response.status_code in (201, 503), response.text  # 503 only while a shard is not up yet
            return response.status_code == 201

        try:
            wait_for(created_on_a_shard, timeout=180, what="a user stored on shard-b")
        except AssertionError as error:
            raise AssertionError(f"{error}; last answer: {answers_seen[-1].text}") from None
        created = answers_seen[-1]
        assert created.json()["shard"] == "shard-b"
        assert http.get(f"/users/{created.json()['id']}").status_code == 200


def answers(lb_port: int, path: str, status: int = 200) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{lb_port}{path}", timeout=3).status_code == status
    except httpx.HTTPError:
        return False
