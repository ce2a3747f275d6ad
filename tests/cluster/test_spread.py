"""Connection hand-off policies: rr spreads evenly, os lets the kernel pick."""

from __future__ import annotations

import collections
import socket

import pytest


def new_connection_pids(url_port: int, count: int) -> collections.Counter[int]:
    """``count`` requests, each on a brand-new TCP connection (like ``ab`` without -k)."""
    import json

    served: collections.Counter[int] = collections.Counter()
    request = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", url_port), timeout=10) as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        served[json.loads(data.split(b"\r\n\r\n", 1)[1])["pid"]] += 1
    return served


def test_rr_spreads_200_connections_within_one(start_cluster):
    cluster = start_cluster(workers=2, policy="rr")
    served = new_connection_pids(cluster.port, 200)
    assert set(served) == cluster.listening_pids()
    assert max(served.values()) - min(served.values()) <= 1, served


def test_rr_spreads_over_four_workers(start_cluster):
    cluster = start_cluster(workers=4, policy="rr")
    served = new_connection_pids(cluster.port, 200)
    assert len(served) == 4 and max(served.values()) - min(served.values()) <= 1, served


@pytest.mark.parametrize("policy", ["os"])
def test_os_policy_serves_from_the_shared_socket(start_cluster, policy):
    cluster = start_cluster(workers=2, policy=policy)
    served = new_connection_pids(cluster.port, 100)
    assert sum(served.values()) == 100
    assert set(served) <= cluster.listening_pids()
