"""Free TCP (and UDP) ports for local servers, and the loopback addresses that stand in for machines."""

import socket

# Loopback addresses a local "container" may use: each is its own machine (Linux routes all of 127/8 to lo).
# 127.0.0.1 stays for what is shared (Redis, DNS, the balancer's front door).
REPLICA_HOSTS = tuple(f"127.0.0.{i}" for i in range(2, 10))


def free_port(host: str = "127.0.0.1", *, udp: bool = False) -> int:
    """A port nobody listens on right now (the kernel picks it; racy by nature)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


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
