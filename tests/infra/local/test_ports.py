import socket

import pytest

from infra.local.ports import (
    EPHEMERAL_RANGE_FILE,
    PORTS_ENV,
    REPLICA_HOSTS,
    free_port,
    listen_port_range,
    port_is_free,
    shared_free_port,
)


def test_free_port_can_be_listened_on():
    port = free_port()

    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()


def test_a_shared_free_port_is_free_on_every_replica_address():
    hosts = REPLICA_HOSTS[:3]
    port = shared_free_port(hosts)

    listeners = [socket.create_server((host, port)) for host in hosts]  # like three containers on one port
    try:
        assert not port_is_free(port, hosts[0]) and port_is_free(port, REPLICA_HOSTS[3])
    finally:
        for listener in listeners:
            listener.close()


def test_udp_ports_are_checked_as_udp():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", free_port(udp=True)))
        port = taken.getsockname()[1]
        assert not port_is_free(port, udp=True)


def test_free_ports_lie_outside_the_ephemeral_range_so_no_outgoing_connection_takes_one():
    low, high = map(int, EPHEMERAL_RANGE_FILE.read_text().split())
    ports = {free_port() for _ in range(50)} | {free_port(REPLICA_HOSTS[0], udp=True) for _ in range(10)}

    assert all(not low <= port <= high for port in ports), sorted(ports)
    assert len(ports) > 30  # at random, not one port again and again


def test_a_run_given_its_own_ports_keeps_to_them(monkeypatch):
    monkeypatch.setenv(PORTS_ENV, "24000-24019")
    assert listen_port_range() == range(24000, 24020)
    ports = {free_port() for _ in range(40)} | {shared_free_port(REPLICA_HOSTS[:2]) for _ in range(5)}
    assert ports <= set(range(24000, 24020)) and len(ports) > 5, sorted(ports)


@pytest.mark.parametrize("bad", ["24000", "24000-", "x-24010", "24010-24000", "80-90", "60000-70000"])
def test_own_ports_that_make_no_range_are_refused_saying_what_is_expected(monkeypatch, bad):
    monkeypatch.setenv(PORTS_ENV, bad)
    with pytest.raises(ValueError, match=rf"{PORTS_ENV}=.*expected LOW-HIGH"):
        free_port()


def test_too_narrow_a_range_below_the_ephemeral_one_falls_back_to_the_kernel(tmp_path, monkeypatch):
    monkeypatch.delenv(PORTS_ENV, raising=False)  # set for each xdist worker
    range_file = tmp_path / "ip_local_port_range"
    range_file.write_text("21000\t60999\n")
    assert listen_port_range(range_file) is None
    range_file.write_text("32768\t60999\n")
    assert listen_port_range(range_file) == range(20000, 32768)
    assert listen_port_range(tmp_path / "missing") is None


def test_a_process_never_hands_out_a_port_twice_while_its_range_has_others(monkeypatch):
    """A stack picks its shards' ports, starts them without waiting, then picks the router's: none of those is bound
    yet, so a pick that only checks "free now" can give the router a shard's port (seen in CI: EADDRINUSE). Here no
    port handed out is ever bound, and 20 picks in a 20-port range are still 20 ports; the next is the oldest."""
    from infra.local import ports as module

    monkeypatch.setattr(module, "_handed_out", {})
    monkeypatch.setenv(PORTS_ENV, "24200-24219")
    picked = [free_port() for _ in range(20)]
    assert sorted(picked) == list(range(24200, 24220))
    assert free_port() == picked[0]
