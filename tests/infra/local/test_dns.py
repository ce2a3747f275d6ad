"""The loopback DNS server answers like Docker's: a name, all its replicas' IPs."""

from __future__ import annotations

import sys
import time

import dns.resolver
import pytest

from infra.local.dns import write_zone
from infra.local.ports import free_port
from infra.local.processes import ManagedProcess, wait_until


@pytest.fixture
def dns_server(tmp_path):
    zone = tmp_path / "zone.json"
    write_zone(zone, {"api": ["127.0.0.2", "127.0.0.3"]})
    port = free_port()
    server = ManagedProcess(
        [sys.executable, "-m", "infra.local.dns", "--zone-file", str(zone), "--port", str(port)],
        log_path=tmp_path / "dns.log",
    )
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port, resolver.lifetime, resolver.cache = ["127.0.0.1"], port, 1.0, None
    wait_until(lambda: resolver.resolve("api", "A"), 10, what="the DNS server")
    yield zone, resolver
    server.stop()


def addresses(resolver, name: str) -> set[str]:
    return {r.address for r in resolver.resolve(name, "A")}


def test_answers_every_replica_and_follows_the_zone_file(dns_server):
    zone, resolver = dns_server
    assert addresses(resolver, "api") == {"127.0.0.2", "127.0.0.3"}
    assert addresses(resolver, "API.") == {"127.0.0.2", "127.0.0.3"}
    time.sleep(0.01)  # a distinct mtime
    write_zone(zone, {"api": ["127.0.0.2", "127.0.0.3", "127.0.0.4"], "auth": ["127.0.0.9"]})
    wait_until(lambda: addresses(resolver, "api") == {"127.0.0.2", "127.0.0.3", "127.0.0.4"}, 5, what="the new zone")
    assert addresses(resolver, "auth") == {"127.0.0.9"}


def test_unknown_names_are_nxdomain_and_other_types_empty(dns_server):
    _, resolver = dns_server
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("nobody", "A")
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve("api", "AAAA")
