"""`scalecube nodes`: the plan (managers, container options, images to load) and the stack's placement over
the nodes — no engine needed (the end-to-end test is tests/infra/docker/test_nodes.py)."""

from __future__ import annotations

import pytest

from infra.docker import nodes, swarm
from infra.docker.compose import Compose
from infra.docker.engine import DockerError
from infra.paths import REPO


@pytest.mark.parametrize(("count", "managers"), [(1, 1), (2, 1), (3, 3), (5, 3)])
def test_three_managers_from_three_nodes_so_any_one_node_may_be_lost(count, managers):
    roles = [node.role for node in nodes.plan(count, "c")]
    assert roles == ["manager"] * managers + ["worker"] * (count - managers)


def test_no_nodes_is_refused():
    with pytest.raises(DockerError):
        nodes.plan(0)


def test_a_node_is_an_engine_in_a_container_without_privileged_and_everything_is_labelled():
    node = nodes.plan(3, "sc")[1]
    options = nodes.container_options(node, "sc", repo="/src/scalecube")
    assert (node.name, node.container, node.volume) == ("node-2", "sc-2", "sc-2-docker")
    assert "privileged" not in options and options["cap_drop"] == ["SYS_RESOURCE"] and options["cap_add"] == ["ALL"]
    assert set(options["security_opt"]) == {"seccomp=unconfined", "apparmor=unconfined"}
    assert options["volumes"]["sc-2-docker"]["bind"] == "/var/lib/docker"
    assert options["volumes"]["/src/scalecube"] == {"bind": "/src/scalecube", "mode": "ro"}  # bind mounts resolve
    assert options["tmpfs"] == {"/run": ""} and options["hostname"] == "node-2"
    assert options["labels"][nodes.LABEL] == "sc" and options["labels"][nodes.NODE_LABEL] == "node-2"


def test_only_the_images_a_node_lacks_or_holds_in_another_version_are_sent():
    wanted = {"a:1": "sha256:aa", "b:1": "sha256:bb", "c:1": "sha256:cc"}
    assert nodes.images_to_load(wanted, {"a:1": "sha256:aa", "b:1": "sha256:old", "c:1": None}) == ["b:1", "c:1"]
    assert nodes.images_to_load(wanted, wanted) == []


def test_the_stack_s_images_are_every_service_s():
    config = {"services": {"a": {"image": "x:1"}, "b": {"image": "x:1"}, "c": {"image": "y:2"}, "d": {}}}
    assert nodes.stack_images(config) == ["x:1", "y:2"]


VOLUME = {"type": "volume", "source": "data", "target": "/data"}
SECRETS = {"type": "volume", "source": "secrets", "target": "/run/secrets/scalecube", "read_only": True}
STACK = {
    "services": {
        "secrets": {"volumes": [SECRETS], "deploy": {"endpoint_mode": "dnsrr"}},
        "api": {"volumes": [SECRETS], "deploy": {"replicas": 3}},
        "auth": {"volumes": [SECRETS]},  # no replica count: two over nodes
        "locust-worker": {"deploy": {"replicas": 1}},  # a count of its own: kept
        "lb": {"ports": [{"target": 8080, "published": 8080, "mode": "host"}], "volumes": [SECRETS]},
        "auth-redis": {"volumes": [VOLUME, SECRETS]},
        "redis": {"volumes": [VOLUME, SECRETS]},
        "redis-replica": {"volumes": [VOLUME, SECRETS]},
        "redis-sentinel-1": {"volumes": [VOLUME, SECRETS]},
        "redis-sentinel-2": {"volumes": [VOLUME, SECRETS]},
        "redis-sentinel-3": {"volumes": [VOLUME, SECRETS]},
    }
}


def test_over_nodes_the_stateless_spread_the_stateful_and_published_are_pinned_and_the_sessions_group_apart():
    services = swarm.spread_over(STACK, ["node-1", "node-2", "node-3"])["services"]
    pinned = {
        name: service["deploy"]["placement"]["constraints"][0].rpartition(" ")[2]
        for name, service in services.items()
        if "constraints" in service["deploy"].get("placement", {})
    }
    assert pinned == {
        "lb": "node-1",
        "auth-redis": "node-1",
        "redis": "node-2",  # the primary away from the balancer's node
        "redis-replica": "node-3",
        "redis-sentinel-1": "node-1",
        "redis-sentinel-2": "node-2",
        "redis-sentinel-3": "node-3",
    }
    assert services["api"]["deploy"] == {
        "replicas": 3,
        "placement": {"preferences": [{"spread": "node.labels.scalecube.node"}]},
    }
    assert services["auth"]["deploy"]["replicas"] == 2 and services["locust-worker"]["deploy"]["replicas"] == 1
    assert swarm.spread_over(STACK, ["node-1"])["services"]["auth"]["deploy"]["replicas"] == 1
    assert services["secrets"]["deploy"] == {"endpoint_mode": "dnsrr", "mode": "global"}  # each node's volume
    # any one node lost takes at most one member of the sessions group: the Sentinels keep their quorum
    group = [node for name, node in pinned.items() if name.startswith("redis")]
    assert max(group.count(node) for node in set(group)) <= 2 and group.count("node-1") == 1


def test_spreading_over_no_node_is_refused():
    with pytest.raises(DockerError):
        swarm.spread_over(STACK, [])


def test_every_node_s_secrets_are_the_environment_s_else_new_and_the_same_for_all(monkeypatch):
    compose = Compose(REPO, project="nowhere", env={"SESSION_SECRET": "x" * 40})

    def no_stack(args, **_):
        raise DockerError("no such service")

    monkeypatch.setattr(compose, "run_docker", no_stack)
    values = swarm.secret_values(compose)
    assert values["SESSION_SECRET"] == "x" * 40
    assert set(values) == {"SESSION_SECRET", "LB_COOKIE_KEY", "LB_STICKY_SECRET", "REDIS_PASSWORD", "LB_ADMIN_PASSWORD"}
    assert all(len(value) >= 16 for value in values.values())


def test_a_new_deploy_keeps_the_running_stack_s_secrets(monkeypatch):
    import json

    compose = Compose(REPO, project="running", env={"REDIS_PASSWORD": ""})
    spec = {"Spec": {"TaskTemplate": {"ContainerSpec": {"Env": ["REDIS_PASSWORD=kept-one-0123456789"]}}}}
    monkeypatch.setattr(compose, "run_docker", lambda args, **_: json.dumps([spec]))
    assert swarm.secret_values(compose)["REDIS_PASSWORD"] == "kept-one-0123456789"


class FakeContainer:
    def __init__(self, service: str, task: str) -> None:
        self.labels = {"com.docker.swarm.service.name": f"sc_{service}", "com.docker.swarm.task.name": f"sc_{task}"}
        self.short_id, self.status, self.attrs, self.ports = task[-6:], "running", {}, {}


class FakeEngine:
    def __init__(self, *containers: FakeContainer) -> None:
        self.containers = self
        self._found = list(containers)

    def list(self, all: bool, filters: dict[str, str]) -> list[FakeContainer]:
        assert filters == {"label": "com.docker.stack.namespace=sc"}
        return self._found


def test_docker_ps_over_nodes_says_which_node_runs_each_task():
    from infra.docker.ops import ps

    engines = {
        "node-1": FakeEngine(FakeContainer("api", "api.2.aaaaaa"), FakeContainer("secrets", "secrets.n1.bbbbbb")),
        "node-2": FakeEngine(FakeContainer("api", "api.1.cccccc")),
    }
    rows = ps.collect_stack(engines, "sc", workers=False)
    assert [(r.name, r.node) for r in rows] == [("api.1", "node-2"), ("api.2", "node-1"), ("secrets.node-1", "node-1")]
    assert [r.node for r in ps.collect_stack(engines, "sc", "api", workers=False)] == ["node-2", "node-1"]


def test_a_partition_drops_the_other_nodes_both_ways_in_its_own_chain_and_healing_removes_just_that():
    commands = nodes.partition_commands(["172.30.0.3", "172.30.0.4"])
    drops = [c for c in commands if c[-1] == "DROP"]
    assert {(c[3], c[4]) for c in drops} == {
        ("-s", "172.30.0.3"),
        ("-d", "172.30.0.3"),
        ("-s", "172.30.0.4"),
        ("-d", "172.30.0.4"),
    }
    assert all(c[2] == nodes.PARTITION_CHAIN for c in drops)  # nothing of the engine's own rules is touched
    jumps = [c for c in commands if c[1] == "-I"]
    assert {c[2] for c in jumps} == {"INPUT", "OUTPUT"}
    healed = nodes.heal_commands()
    assert [c[1] for c in healed] == ["-D", "-D", "-F", "-X"] and all(nodes.PARTITION_CHAIN in c for c in healed)


class FakeHostEngine:
    """The host engine as ``Nodes`` lists it: node containers with their labels, nothing else."""

    def __init__(self, count: int) -> None:
        self.containers = self
        self._found = [
            type("C", (), {"labels": {nodes.NODE_LABEL: p.name, f"{nodes.LABEL}.role": p.role}, "status": "running"})()
            for p in nodes.plan(count, "sc")
        ]

    def list(self, all: bool, filters: dict[str, str]) -> list:
        assert filters == {"label": f"{nodes.LABEL}=sc"}
        return self._found


@pytest.mark.parametrize(("there", "asked"), [(2, 3), (3, 1)])
def test_a_cluster_is_not_grown_or_shrunk_in_place_since_roles_follow_the_count(there, asked):
    with pytest.raises(DockerError, match="nodes down` first"):
        nodes.Nodes(FakeHostEngine(there), "sc").up(asked)


def test_a_node_is_found_by_name_or_container_and_an_unknown_one_is_named_with_the_known():
    cluster = nodes.Nodes(FakeHostEngine(3), "sc")
    assert cluster.node("node-2").plan.role == "manager"
    with pytest.raises(DockerError, match="node-1, node-2, node-3"):
        cluster.node("node-9")


def test_the_only_manager_is_never_killed():
    with pytest.raises(DockerError, match="only manager"):
        nodes.Nodes(FakeHostEngine(2), "sc").kill("node-1")
