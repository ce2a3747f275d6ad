"""docker-compose.yml, without an engine: the sessions Redis is a primary, a replica and three Sentinels.

Parsed as YAML (anchors and merge keys resolved), checked against the numbers of ``infra/local/sentinel.py``.
The containers themselves run in the Docker group's compose tests.
"""

from __future__ import annotations

import yaml

from infra.local.sentinel import DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS, QUORUM
from infra.paths import REPO
from services.common.settings import ServiceSettings


def services() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]


def test_compose_runs_the_sessions_redis_as_a_primary_a_replica_and_three_sentinels() -> None:
    found = services()
    api = found["api"]
    sentinels = ServiceSettings.load(redis_sentinels=api["environment"]["REDIS_SENTINELS"]).sentinel_addresses
    assert sentinels == [(f"redis-sentinel-{n}", 26379) for n in (1, 2, 3)]
    for name, _ in sentinels:
        script = found[name]["command"][2]
        assert f"sentinel monitor scalecube redis 6379 {QUORUM}" in script
        assert f"down-after-milliseconds scalecube {DOWN_AFTER_MS}" in script
        assert f"failover-timeout scalecube {FAILOVER_TIMEOUT_MS}" in script
        assert "--sentinel" in script and "requirepass $$password" in script
        assert any(str(v).startswith(f"{name}-data:") for v in found[name]["volumes"])  # its rewritten conf stays
        assert api["depends_on"][name]["condition"] == "service_healthy"
    for node in ("redis", "redis-replica"):
        script = found[node]["command"][2]
        assert "--masterauth" in script and "--appendonly yes --appendfsync everysec" in script
        assert "--replicaof $$primary" in script and found[node]["environment"]["REDIS_NODE"] == node
        # Every ask of a Sentinel bounded: a paused one keeps its socket and would hold the restart forever.
        assert script.count("redis-cli -h $$s") == script.count("timeout 1 redis-cli -h $$s") == 1
        # No answer is a first start only for a node that never ran: a restarted one must not appoint itself.
        assert "[ -d /data/appendonlydir ] && ran=1" in script
    # The other Redis servers stay single.
    for single in ("auth-redis", "directory-redis", "shard-a-redis", "shard-b-redis"):
        assert "--replicaof" not in found[single]["command"][2] and "sentinel" not in found[single]["command"][2]
