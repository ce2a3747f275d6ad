"""Real HTTP servers for the common-kit tests: uvicorn in a thread, or in a child process.

Both listen on a socket bound to port 0 here, so there is no free-port race.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from infra.paths import REPO

START_TIMEOUT = 20.0


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()
    return f"http://{host}:{port}"


class ThreadedServer:
    """uvicorn serving an app object from a thread of the test process."""

    def __init__(self, app) -> None:
        self.sock = listening_socket()
        self.url = url_of(self.sock)
        self.server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """``serve(app)`` -> base URL; every server is stopped at teardown."""
    servers: list[ThreadedServer] = []

    def start(app) -> str:
        server = ThreadedServer(app)
        servers.append(server)
        server.start()
        return server.url

    yield start
    for server in servers:
        server.stop()


@dataclass
class ServiceProcess:
    """``service_under_test`` running as a real process of its own."""

    proc: subprocess.Popen
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def spawn_service(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """``spawn_service(**env)`` -> a started ServiceProcess; all are stopped (by pid) at teardown."""
    started: list[ServiceProcess] = []

    def spawn(**env: str) -> ServiceProcess:
        sock = listening_socket()
        log_path = tmp_path / f"service-{len(started)}.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.services.common.service_under_test", str(sock.fileno())],
                cwd=REPO,
                env={**os.environ, **env},
                pass_fds=[sock.fileno()],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        service = ServiceProcess(proc, url_of(sock), log_path)
        started.append(service)
        sock.close()  # the child holds its own copy; if it dies, connections are refused, not queued
        _wait_until_healthy(service)
        return service

    yield spawn
    for service in started:
        service.stop()


def _wait_until_healthy(service: ServiceProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            raise RuntimeError(f"service exited with {service.proc.returncode}:\n{service.log()}")
        try:
            if httpx.get(service.url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"service did not become healthy:\n{service.log()}")
