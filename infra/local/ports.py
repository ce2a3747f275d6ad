"""Free TCP (and UDP) ports for local servers, and the loopback addresses that stand in for machines.

Why not let the kernel pick (``bind(0)``)? It picks from the *ephemeral* range
(``/proc/sys/net/ipv4/ip_local_port_range``), the same range every outgoing connection's local port
comes from. Between choosing a port and a server binding it — seconds, for a cluster that starts a
master first — any client on the machine (a Redis connection, a health probe, a test's HTTP client)
can be handed that very port, and the server fails with EADDRINUSE. We pick at random *below* the
ephemeral range instead: no outgoing connection (nor Docker's dynamic host port) is ever given
one of those, so a port that is free when chosen stays free unless someone binds it on purpose.

Someone does, when two runs share the machine: each picks ports from the same range, and a port one
chose a few seconds before binding it can be bound by the other meanwhile (seen: two test processes
side by side, HAProxy's stats port taken between choice and bind). ``SCALECUBE_PORTS=LOW-HIGH`` keeps
a run, and everything it starts (the variable is inherited), to its own slice of the range; the test
suite gives each of its pytest-xdist workers one (tests/support/parallel.py).

One process can take its own port too: a stack picks its shards' ports, starts them without waiting, then
picks the router's, and a port is free until its server binds it. Two picks at random from one slice are the
same about once in a few thousand (seen: a router given the port its shard was about to bind, EADDRINUSE). So a
process never hands out a port it has handed out before while its range has others; when all have been, the one
handed out longest ago goes first.
"""

import itertools
import os
import random
import socket
import threading
from pathlib import Path

# Loopback addresses a local "container" may use: each is its own machine (Linux routes all of 127/8 to lo).
# 127.0.0.1 stays for what is shared (Redis, DNS, the balancer's front door).
REPLICA_HOSTS = tuple(f"127.0.0.{i}" for i in range(2, 10))

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LISTEN_PORTS_FROM = 20000  # above the ports well-known services register; our range ends where ephemeral begins
MIN_LISTEN_PORTS = 2000  # fewer than this below the ephemeral range: fall back to the kernel's choice
_ATTEMPTS = 100
_random = random.SystemRandom()  # independent of any seed a test sets: two processes never share a sequence
_handed_out: dict[int, int] = {}  # port -> when this process handed it out (a count): see the module's note
_hand_outs = itertools.count()
_lock = threading.Lock()


PORTS_ENV = "SCALECUBE_PORTS"


def listen_port_range(range_file: Path = EPHEMERAL_RANGE_FILE) -> range | None:
    """Ports a server may take that no outgoing connection will be given, or None if too few:
    ``SCALECUBE_PORTS`` if set (LOW-HIGH, both included), else those below the ephemeral range."""
    if own := os.environ.get(PORTS_ENV):
        return own_port_range(own)
    try:
        ephemeral_low = int(range_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    ports = range(LISTEN_PORTS_FROM, ephemeral_low)
    return ports if len(ports) >= MIN_LISTEN_PORTS else None


def own_port_range(text: str) -> range:
    """``LOW-HIGH`` (both included, 1024-65535) as a range; anything else is a ValueError that says so."""
    low, sep, high = text.partition("-")
    try:
        ports = range(int(low), int(high) + 1) if sep else range(0)
    except ValueError:
        ports = range(0)
    if not ports or ports.start < 1024 or ports.stop > 65536:
        raise ValueError(f"{PORTS_ENV}={text!r}: expected LOW-HIGH, two ports from 1024 to 65535, LOW <= HIGH")
    return ports


def free_port(host: str = "127.0.0.1", *, udp: bool = False) -> int:
    """A port nobody listens on now, outside the ephemeral range (see the module's note)."""
    ports = listen_port_range()
    with _lock:
        if ports is not None:
            tried = _random.sample(ports, min(len(ports), _ATTEMPTS))
            never = [port for port in tried if port not in _handed_out]
            for port in never + sorted(set(tried) - set(never), key=_handed_out.__getitem__):
                if _bindable(port, host, udp=udp):
                    return _hand_out(port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))  # the kernel's choice: racy with outgoing connections, but always answers
            return _hand_out(sock.getsockname()[1])


def _hand_out(port: int) -> int:
    _handed_out[port] = next(_hand_outs)
    return port


def _bindable(port: int, host: str, *, udp: bool) -> bool:
    """Strict: without SO_REUSEADDR, so a port with connections in TIME_WAIT is passed over too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_is_free(port: int, host: str = "127.0.0.1", *, udp: bool = False) -> bool:
    """Could a server listen on ``port`` now? Binds the way servers do (SO_REUSEADDR), so a
    port whose old connections linger in TIME_WAIT counts as free, and one with a listener does not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as sock:
        if not udp:  # for UDP, SO_REUSEADDR would let us share a port someone already holds
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def shared_free_port(hosts: tuple[str, ...] = REPLICA_HOSTS, attempts: int = 20) -> int:
    """A port free on every one of ``hosts``, so every replica can listen on the same one (like containers)."""
    for _ in range(attempts):
        port = free_port(hosts[0])
        if all(port_is_free(port, host) for host in hosts):
            return port
    raise RuntimeError(f"no port free on all of {hosts} after {attempts} tries")
