"""Several "machines" on this one: clusters on 127.0.0.2, .3, ... sharing one port, named by a real DNS server.

This is compose's ``--scale api=N`` without Docker: every replica listens on the
same port at its own address, and a balancer finds them by asking a DNS server
(``infra.local.dns``, standing in for Docker's 127.0.0.11) for the service's
name. Publishing or withdrawing a replica is a zone-file write, which is how the
tests scale up and down under a running balancer.
"""

from __future__ import annotations

from pathlib import Path

from infra.local.components import DnsComponent
from infra.local.ports import REPLICA_HOSTS, shared_free_port
from infra.local.processes import ClusterProcess, wait_until

# The loopback addresses replicas may use: each is its own "machine" (``scalecube up --api N`` uses the same).
HOSTS = REPLICA_HOSTS
DNS_START_TIMEOUT = 15.0

__all__ = ["DNS_START_TIMEOUT", "HOSTS", "LoopbackTopology", "shared_free_port"]


class LoopbackTopology:
    """A DNS server process and the clusters it names; ``stop()`` stops them all, by pid."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = shared_free_port()
        self.records: dict[str, list[str]] = {}
        self.clusters: dict[tuple[str, str], ClusterProcess] = {}  # (service, host) -> cluster
        # The same DNS component `scalecube up` runs; it writes the zone file from ``self.records``.
        self._dns = DnsComponent(workdir, self.records)
        self.zone_path = self._dns.zone_path
        self.dns_port = self._dns.port

    @property
    def dns_address(self) -> str:
        return self._dns.address

    def start_dns(self) -> None:
        self._dns.start()
        try:
            wait_until(
                lambda: self._dns.poll() is not None or self._dns.ready(),
                DNS_START_TIMEOUT,
                what="the loopback DNS server",
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}:\n{log_text(self._dns.log_path)}") from None
        if self._dns.poll() is not None:
            raise RuntimeError(f"the DNS server exited with {self._dns.poll()}:\n{log_text(self._dns.log_path)}")

    def start(
        self,
        service: str,
        host: str,
        app: str,
        *,
        workers: int = 2,
        env: dict[str, str] | None = None,
        publish: bool = True,
    ) -> ClusterProcess:
        """Start a cluster of ``app`` on ``host``:port (not waiting for it); publish it under ``service``."""
        workdir = self.workdir / f"{service}-{host.rsplit('.', 1)[-1]}"  # short: it holds a unix socket
        workdir.mkdir(exist_ok=True)
        # Its own run dir too, so nothing a cluster keeps by port collides with its neighbours'.
        cluster = ClusterProcess(
            app,
            host=host,
            port=self.port,
            workdir=workdir,
            workers=workers,
            env={"SCALECUBE_RUN_DIR": str(workdir), **(env or {})},
        )
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
        owners = {
            pid: host
            for (_, host), cluster in self.clusters.items()
            if cluster.proc.poll() is None
            for pid in _worker_pids(cluster)
        }
        return [owners.get(int(value.rsplit("/", 1)[-1])) for value in served_by]

    def stop(self) -> None:
        for cluster in self.clusters.values():
            cluster.stop()
        self._dns.stop()  # a no-op if it never started

    def _write_zone(self) -> None:
        self._dns.write_zone()  # atomic, and always with a newer mtime: the server reloads on it


def _worker_pids(cluster: ClusterProcess) -> set[int]:
    try:
        return {worker["pid"] for worker in cluster.status()["workers"]}
    except (OSError, ValueError, KeyError):
        return set()


def log_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
