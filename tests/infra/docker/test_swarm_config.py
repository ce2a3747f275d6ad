"""What `docker stack deploy` gets: the compose config, minus what Swarm refuses (no engine needed)."""

from infra.docker.swarm import swarm_stack

CONFIG = {
    "name": "scalecube",
    "networks": {"default": {"name": "scalecube_default"}},
    "volumes": {"redis-data": {"name": "scalecube_redis-data"}},
    "x-redis": {"image": "redis:7.2"},
    "services": {
        "api": {"image": "scalecube-service:latest", "build": {"context": "."}, "restart": "unless-stopped",
                "depends_on": {"redis": {"condition": "service_healthy", "required": True}}, "init": False,
                "entrypoint": None, "tmpfs": ["/tmp"], "deploy": {"replicas": 3}},
        "lb": {"image": "haproxy:2.8", "ports": [{"mode": "ingress", "host_ip": "127.0.0.1", "target": 8080,
                                                  "published": "8080", "protocol": "tcp"}]},
        "redis": {"image": "redis:7.2", "volumes": [{"type": "volume", "source": "redis-data", "target": "/data"}]},
    },
}  # fmt: skip


def test_swarm_gets_no_build_order_or_null_keys():
    api = swarm_stack(CONFIG)["services"]["api"]
    assert not {"build", "depends_on", "restart", "init", "entrypoint", "tmpfs"} & set(api)


def test_tmpfs_becomes_a_mount_and_balanced_services_resolve_to_every_task():
    api = swarm_stack(CONFIG)["services"]["api"]
    assert api["volumes"] == [{"type": "tmpfs", "target": "/tmp"}]
    assert api["deploy"] == {"replicas": 3, "endpoint_mode": "dnsrr"}
    assert "endpoint_mode" not in swarm_stack(CONFIG)["services"]["redis"].get("deploy", {})


def test_published_ports_are_numbers_without_a_host_ip():
    assert swarm_stack(CONFIG)["services"]["lb"]["ports"] == [
        {"mode": "ingress", "target": 8080, "published": 8080, "protocol": "tcp"}]


def test_networks_are_overlays_and_extensions_are_dropped():
    stack = swarm_stack(CONFIG)
    assert stack["networks"] == {"default": {"driver": "overlay", "attachable": True}}
    assert "x-redis" not in stack and "name" not in stack and stack["volumes"] == CONFIG["volumes"]
