import socket

from infra.local.ports import free_port


def test_free_port_can_be_listened_on():
    port = free_port()

    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
