"""The balancers side by side (``scalecube bench balancers``): direct to one backend, through
HAProxy, through the Python balancer — same 3 api replicas, same load, one run, interleaved.

Two phases, because they answer different questions:
- throughput: many connections; requests/s and p50/p99 through each balancer;
- added latency: one connection, no queueing; each balancer's p50 minus the direct p50.

The replicas are ``scalecube serve`` clusters on 127.0.0.2-4 (one port, named by the
loopback DNS server), found by both balancers through DNS as in compose.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from infra.local.components import HaproxyComponent, PythonLbComponent
from infra.local.ports import free_port
from infra.local.processes import wait_until
from infra.local.redis_server import RedisServer
from infra.local.topology import HOSTS, LoopbackTopology
from kit import secrets as secret_values
from lb.haproxy.runner import HaproxySettings
from loadtests.drivers import LoadSummary, run_load, summarise

API = "services.api.app:app"
TARGETS = ("direct (1 backend)", "haproxy", "python")


@dataclass
class BalancerReport:
    replicas: int
    workers_per_replica: int
    connections: int
    seconds: float
    rounds: int
    driver: str = ""
    throughput: dict[str, dict[str, Any]] = field(default_factory=dict)
    latency: dict[str, dict[str, Any]] = field(default_factory=dict)
    ratio_python_to_haproxy: float | None = None
    added_p50_ms: dict[str, float | None] = field(default_factory=dict)


class Rig:
    """Redis, DNS, the replicas and both balancers (the local stack's own components); ``close()`` stops all."""

    def __init__(self, workdir: Path, replicas: int, workers: int) -> None:
        self.redis = RedisServer()
        self.topology = LoopbackTopology(workdir)
        self.balancers: list[HaproxyComponent | PythonLbComponent] = []
        try:
            self.redis.start()
            self.topology.start_dns()
            env = {"REDIS_URL": self.redis.url, "SESSION_SECRET": secret_values.generate(), "LOG_LEVEL": "warning"}
            for host in HOSTS[:replicas]:
                self.topology.start("api", host, API, workers=workers, env=env)
            self.topology.wait_ready()
            self.direct = f"http://{HOSTS[0]}:{self.topology.port}/"
            self.balancers = [
                HaproxyComponent(
                    HaproxySettings(
                        bind=f"127.0.0.1:{free_port()}",
                        stats_bind=f"127.0.0.1:{free_port()}",
                        dns=self.topology.dns_address,
                        api_service="api",
                        api_port=self.topology.port,
                    ),
                    workdir,
                    name="haproxy",
                    backends=replicas,
                ),
                PythonLbComponent(
                    workdir,
                    listen=f"127.0.0.1:{free_port()}",
                    admin=f"127.0.0.1:{free_port()}",
                    upstream=f"dns:api:{self.topology.port}@{self.topology.dns_address}",
                    env={"LOG_LEVEL": "warning"},
                    name="python-lb",
                    backends=replicas,
                ),
            ]
            for balancer in self.balancers:
                balancer.start()
            for balancer in self.balancers:
                wait_until(balancer.ready, 30, what=f"{balancer.name} to see all {replicas} replicas up")
        except BaseException:
            self.close()
            raise

    def urls(self) -> dict[str, str]:
        return dict(zip(TARGETS, (self.direct, *(b.url + "/" for b in self.balancers)), strict=True))

    def close(self) -> None:
        for balancer in self.balancers:
            balancer.stop()
        self.topology.stop()
        self.redis.stop()


def run(
    *, seconds: float = 10.0, connections: int = 32, rounds: int = 3, replicas: int = 3, workers: int = 1
) -> BalancerReport:
    report = BalancerReport(replicas, workers, connections, seconds, rounds)
    with tempfile.TemporaryDirectory(prefix="scalecube-bench-") as tmp:
        rig = Rig(Path(tmp), replicas, workers)
        try:
            urls = rig.urls()
            for url in urls.values():
                run_load(url, seconds=1, connections=connections)  # warm-up
            heavy: dict[str, list[LoadSummary]] = {t: [] for t in TARGETS}
            light: dict[str, list[LoadSummary]] = {t: [] for t in TARGETS}
            for _ in range(rounds):  # interleaved, so drift hits every target alike
                for target, url in urls.items():
                    heavy[target].append(run_load(url, seconds=seconds, connections=connections))
                for target, url in urls.items():
                    light[target].append(run_load(url, seconds=max(2.0, seconds / 3), connections=1))
        finally:
            rig.close()
    report.driver = heavy[TARGETS[0]][0].driver
    report.throughput = {t: summarise(runs) for t, runs in heavy.items()}
    report.latency = {t: summarise(runs) for t, runs in light.items()}
    haproxy, python = report.throughput["haproxy"]["rps"], report.throughput["python"]["rps"]
    report.ratio_python_to_haproxy = round(python / haproxy, 3) if haproxy and python else None
    direct_p50 = report.latency[TARGETS[0]]["p50_ms"]
    report.added_p50_ms = {
        t: (
            round(report.latency[t]["p50_ms"] - direct_p50, 3)
            if report.latency[t]["p50_ms"] is not None and direct_p50 is not None
            else None
        )
        for t in ("haproxy", "python")
    }
    return report


def as_dict(report: BalancerReport) -> dict[str, Any]:
    return asdict(report)
