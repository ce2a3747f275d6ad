"""A real DNS server on loopback, standing in for Docker's embedded DNS (127.0.0.11).

Compose resolves a service name (``api``) to the IPs of all its replicas; the
balancers discover replicas that way. Locally, the stack runs its "containers"
on distinct loopback addresses (127.0.0.2, 127.0.0.3, ...) and this server
answers for their names from a JSON zone file ``{"api": ["127.0.0.2", ...]}``,
re-read whenever it changes — so scaling the local stack is a file write, and
HAProxy and the Python balancer discover it exactly as they would in compose.

    python -m infra.local.dns --zone-file zone.json --port 5353

dnspython encodes and decodes the wire format; this module only answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

log = logging.getLogger("scalecube.dns")
TTL = 1  # seconds: resolvers ask again often, so a scale-up shows quickly


class Zone:
    """Name -> IPv4 addresses, from a JSON file re-read when its mtime changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._records: dict[str, list[str]] = {}

    def lookup(self, name: str) -> list[str] | None:
        self._reload_if_changed()
        return self._records.get(name.rstrip(".").lower())

    def _reload_if_changed(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._records, self._mtime = {}, None
            return
        if mtime == self._mtime:
            return
        try:
            raw = json.loads(self.path.read_text())
            self._records = {str(k).lower(): [str(ip) for ip in v] for k, v in raw.items()}
            self._mtime = mtime
        except (ValueError, AttributeError, TypeError) as exc:  # half-written or malformed: keep the last good one
            log.warning("zone file %s unreadable, keeping the previous records: %s", self.path, exc)


def write_zone(path: Path, records: dict[str, list[str]]) -> None:
    """Atomically replace the zone file (the server never sees it half-written), with a newer mtime.

    The server reloads on a changed mtime; two writes within the filesystem's clock
    granularity would share one, so the second is nudged forward.
    """
    before = path.stat().st_mtime_ns if path.exists() else None
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records))
    os.replace(tmp, path)
    if before is not None and path.stat().st_mtime_ns <= before:
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def server_argv(zone_file: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """The command line that runs this server (``python -m infra.local.dns``)."""
    return [sys.executable, "-m", "infra.local.dns", "--zone-file", str(zone_file), "--host", host, "--port", str(port)]


def answers(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Does a DNS server answer on ``host``:``port`` (UDP)? Any answer counts, even NXDOMAIN."""
    try:
        dns.query.udp(dns.message.make_query("probe.", "A"), host, port=port, timeout=timeout)
    except (dns.exception.DNSException, OSError):
        return False
    return True


def answer(query: dns.message.Message, zone: Zone) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    for question in query.question:
        addresses = zone.lookup(question.name.to_text())
        if addresses is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A and addresses:
            response.answer.append(
                dns.rrset.from_text_list(question.name, TTL, dns.rdataclass.IN, dns.rdatatype.A, addresses)
            )
        # Known name, other type (AAAA...): NOERROR with no answer, so resolvers fall back to A.
    return response


class DnsProtocol(asyncio.DatagramProtocol):
    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return  # not DNS: ignore, like any server would
        assert self.transport is not None
        self.transport.sendto(answer(query, self.zone).to_wire(), addr)


async def serve(zone_file: Path, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: DnsProtocol(Zone(zone_file)), local_addr=(host, port))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("answering for %s on %s:%d/udp", zone_file, host, port)
    try:
        await stop.wait()
    finally:
        transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="infra.local.dns", description=__doc__.split("\n\n")[0])
    parser.add_argument("--zone-file", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5353)
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [dns %(process)d] %(message)s")
    asyncio.run(serve(options.zone_file, options.host, options.port))


if __name__ == "__main__":
    main()
