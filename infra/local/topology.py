"""Several "machines" on this one: clusters on 127.0.0.2, .3, ... sharing one port, named by a real DNS server.

This is compose's ``--scale api=N`` without Docker: every replica listens on the
same port at its own address, and a balancer finds them by asking a DNS server
(``infra.local.dns``, standing in for Docker's 127.0.0.11) for the service's
name. Publishing or withdrawing a replica is a zone-file write, which is how the
tests scale up and down under a running balancer.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dns.exception
import dns.message
import dns.query

from infra.local.dns import write_zone
from infra.local.ports import free_port, port_is_free
from infra.local.processes import ClusterProcess, ManagedProcess, wait_until

# The loopback addresses replicas may use: each is its own "machine" (Linux routes all of 127/8 to lo).
HOSTS = tuple(f"127.0.0.{i}" for i in range(2, 10))
DNS_START_TIMEOUT = 15.0


def shared_free_port(hosts: tuple[str, ...] = HOSTS, attempts: int = 20) -> int:
    """A port free on every one of ``hosts``, so every replica can listen on the same one."""
    for _ in range(attempts):
        port = free_port(hosts[0])
        if all(port_is_free(port, host) for host in hosts):
            return port
    raise RuntimeError(f"no port free on all of {hosts} after {attempts} tries")


class LoopbackTopology:
    """A DNS server process and the clusters it names; ``stop()`` stops them all, by pid."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = shared_free_port()
        self.zone_path = workdir / "zone.json"
        self.records: dict[str, list[str]] = {}
        self.clusters: dict[tuple[str, str], ClusterProcess] = {}  # (service, host) -> cluster
        self.dns_port = free_port()
        self._dns: ManagedProcess | None = None

    @property
    def dns_address(self) -> str:
        return f"127.0.0.1:{self.dns_port}"

    def start_dns(self) -> None:
        self._write_zone()
        self._dns = ManagedProcess([sys.executable, "-m", "infra.local.dns", "--zone-file", str(self.zone_path),
                                    "--port", str(self.dns_port)], log_path=self.workdir / "dns.log")  # fmt: skip
        try:
            wait_until(self._dns_answers, DNS_START_TIMEOUT, what="the loopback DNS server")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}:\n{self._dns.log()}") from None

    def start(self, service: str, host: str, app: str, *, workers: int = 2, env: dict[str, str] | None = None,
              publish: bool = True) -> ClusterProcess:  # fmt: skip
        """Start a cluster of ``app`` on ``host``:port (not waiting for it); publish it under ``service``."""
        workdir = self.workdir / f"{service}-{host.rsplit('.', 1)[-1]}"  # short: it holds a unix socket
        workdir.mkdir(exist_ok=True)
        # Its own run dir too, so nothing a cluster keeps by port collides with its neighbours'.
        cluster = ClusterProcess(app, host=host, port=self.port, workdir=workdir, workers=workers,
                                 env={"SCALECUBE_RUN_DIR": str(workdir), **(env or {})})  # fmt: skip
        self.clusters[(service, host)] = cluster
        if publish:
            self.publish(service, host)
        return cluster

    def publish(self, service: str, host: str) -> None:
        addresses = self.records.setdefault(service, [])
        if host not in addresses:
            addresses.append(host)
            self._write_zone()

    def withdraw(self, service: str, host: str) -> None:
        """Stop naming ``host`` under ``service`` (its process keeps running: the balancer must stop using it anyway)."""
        if host in self.records.get(service, []):
            self.records[service].remove(host)
            self._write_zone()

    def cluster(self, service: str, host: str) -> ClusterProcess:
        return self.clusters[(service, host)]

    def services(self, service: str) -> list[ClusterProcess]:
        return [cluster for (name, _), cluster in self.clusters.items() if name == service]

    def wait_ready(self, timeout: float = 60.0) -> None:
        for cluster in self.clusters.values():
            cluster.wait_ready(timeout=timeout)

    def hosts_of(self, served_by: list[str]) -> list[str | None]:
        """``host/pid`` values (X-Served-By) -> the replica address of each, in one status round per cluster."""
        owners = {pid: host for (_, host), cluster in self.clusters.items() if cluster.proc.poll() is None
                  for pid in _worker_pids(cluster)}  # fmt: skip
        return [owners.get(int(value.rsplit("/", 1)[-1])) for value in served_by]

    def stop(self) -> None:
        for cluster in self.clusters.values():
            cluster.stop()
        if self._dns is not None:
            self._dns.stop()

    def _write_zone(self) -> None:
        before = self.zone_path.stat().st_mtime_ns if self.zone_path.exists() else None
        write_zone(self.zone_path, self.records)
        after = self.zone_path.stat().st_mtime_ns
        if before is not None and after <= before:  # the server reloads on a new mtime: make sure it is new
            os.utime(self.zone_path, ns=(before + 1_000_000, before + 1_000_000))

    def _dns_answers(self) -> bool:
        try:
            dns.query.udp(dns.message.make_query("probe.", "A"), "127.0.0.1", port=self.dns_port, timeout=0.5)
        except (dns.exception.Timeout, OSError):
            return False
        return True


def _worker_pids(cluster: ClusterProcess) -> set[int]:
    try:
        return {worker["pid"] for worker in cluster.status()["workers"]}
    except (OSError, ValueError, KeyError):
        return set()

