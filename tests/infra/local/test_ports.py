import socket

from infra.local.ports import REPLICA_HOSTS, free_port, port_is_free, shared_free_port


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
