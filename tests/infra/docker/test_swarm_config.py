"""What `docker stack deploy` gets: the compose config, minus what Swarm refuses (no engine needed)."""

import pytest

from infra.docker import swarm
from infra.docker.engine import DockerError
from infra.docker.swarm import swarm_stack
from infra.paths import REPO

CONFIG = {
    "name": "scalecube",
    "networks": {"default": {"name": "scalecube_default"}},
    "volumes": {"redis-data": {"name": "scalecube_redis-data"}},
    "x-redis": {"image": "redis:7.2"},
    "services": {
        "api": {
            "image": "scalecube-service:latest",
            "build": {"context": "."},
            "restart": "unless-stopped",
            "depends_on": {"redis": {"condition": "service_healthy", "required": True}},
            "init": False,
            "entrypoint": None,
            "tmpfs": ["/tmp"],
            "profiles": ["nodes"],
            "deploy": {"replicas": 3},
        },
        "lb": {
            "image": "haproxy:2.8",
            "ports": [
                {"mode": "ingress", "host_ip": "127.0.0.1", "target": 8080, "published": "8080", "protocol": "tcp"}
            ],
        },
        "redis": {"image": "redis:7.2", "volumes": [{"type": "volume", "source": "redis-data", "target": "/data"}]},
    },
}


def test_swarm_gets_no_build_order_or_null_keys():
    api = swarm_stack(CONFIG)["services"]["api"]
    assert not {"build", "depends_on", "restart", "init", "entrypoint", "tmpfs", "profiles"} & set(api)


def test_tmpfs_becomes_a_mount_and_every_name_resolves_to_its_tasks_not_a_virtual_ip():
    services = swarm_stack(CONFIG)["services"]
    assert services["api"]["volumes"] == [{"type": "tmpfs", "target": "/tmp"}]
    assert services["api"]["deploy"] == {"replicas": 3, "endpoint_mode": "dnsrr"}
    assert all(service["deploy"]["endpoint_mode"] == "dnsrr" for service in services.values())


def test_published_ports_are_numbers_bound_on_the_node_without_a_host_ip():
    assert swarm_stack(CONFIG)["services"]["lb"]["ports"] == [
        {"mode": "host", "target": 8080, "published": 8080, "protocol": "tcp"}
    ]


def test_networks_are_overlays_and_extensions_are_dropped():
    stack = swarm_stack(CONFIG)
    assert stack["networks"] == {"default": {"driver": "overlay", "attachable": True}}
    assert "x-redis" not in stack and "name" not in stack and stack["volumes"] == CONFIG["volumes"]


def test_a_fixed_subnet_stays_with_the_overlay_so_the_trusted_forwarders_keep_their_addresses():
    config = {
        **CONFIG,
        "networks": {
            "default": {
                "name": "scalecube_default",
                "ipam": {"config": [{"subnet": "10.89.0.0/24", "gateway": "10.89.0.1"}]},
            }
        },
    }
    assert swarm_stack(config)["networks"] == {
        "default": {"driver": "overlay", "attachable": True, "ipam": {"config": [{"subnet": "10.89.0.0/24"}]}}
    }


def test_the_compose_files_network_and_trusted_forwarders_agree():
    """The subnet in docker-compose.yml, and FORWARDED_ALLOW_IPS of the api and auth: every address of it
    but the network's own and its gateway (.1), where published ports' connections from the host appear."""
    import ipaddress

    import yaml

    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    subnet = ipaddress.ip_network(compose["networks"]["default"]["ipam"]["config"][0]["subnet"])
    for service in ("api", "auth"):
        trusted = compose["services"][service]["environment"]["FORWARDED_ALLOW_IPS"]
        assert trusted != "*"
        addresses = {address for network in trusted.split(",") for address in ipaddress.ip_network(network)}
        assert addresses == set(subnet) - {subnet.network_address, subnet.network_address + 1}, service


class FlakyDocker:
    """A Compose stand-in whose ``docker stack rm`` is refused ``failures`` times (a network still held)."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls, self.now = failures, [], 0.0

    def run_docker(self, args, **_):
        self.calls.append(list(args))
        if len(self.calls) <= self.failures:
            raise DockerError("docker stack rm failed (1):\nFailed to remove network x: has active endpoints")
        return ""

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_stack_removal_is_asked_again_while_a_network_is_still_held():
    docker = FlakyDocker(failures=2)
    swarm.remove(docker, "demo", timeout=10, interval=2, sleep=docker.sleep, clock=lambda: docker.now)
    assert docker.calls == [["stack", "rm", "demo"]] * 3
    assert docker.now == 4


def test_stack_removal_gives_up_with_docker_s_reason_after_the_timeout():
    docker = FlakyDocker(failures=100)
    with pytest.raises(DockerError, match="active endpoints"):
        swarm.remove(docker, "demo", timeout=10, interval=2, sleep=docker.sleep, clock=lambda: docker.now)
    assert len(docker.calls) == 6 and docker.now == 10  # asked at 0, 2, …, 10; one more wait would pass it


def test_the_console_stays_out_of_swarm():
    """It holds the engine's socket (Swarm would publish it on every interface) and finds compose's labels only."""
    config = {**CONFIG, "services": {**CONFIG["services"], "console": {"image": "scalecube-service:latest"}}}
    assert set(swarm_stack(config)["services"]) == {"api", "lb", "redis"}
