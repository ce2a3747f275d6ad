"""/healthz never depends on anything; /readyz runs the named checks, concurrently, with a timeout."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from services.common.health import health_router
from services.common.settings import ServiceSettings
from tests.services.common.service_under_test import build_app


@pytest.fixture
def dependency() -> Iterator[socket.socket]:
    """A TCP endpoint standing in for Redis: bound but not listening (refusing) until ``listen()``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


def tcp_check(sock: socket.socket):
    host, port = sock.getsockname()

    async def reachable() -> bool:
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        await writer.wait_closed()
        return True

    return reachable


def test_readyz_names_the_failing_dependency_then_recovers(serve, dependency: socket.socket) -> None:
    url = serve(build_app(ServiceSettings.load(), readiness={"redis": tcp_check(dependency)}))

    down = httpx.get(url + "/readyz")
    assert down.status_code == 503
    assert down.json() == {
        "status": "unavailable",
        "checks": {"redis": False},
        "message": "not ready: redis unavailable",
    }
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}  # liveness ignores dependencies

    dependency.listen()
    up = httpx.get(url + "/readyz")
    assert up.status_code == 200
    assert up.json() == {"status": "ready", "checks": {"redis": True}}


def test_readyz_lists_every_failing_check(serve) -> None:
    async def fine() -> bool:
        return True

    async def says_no() -> bool:
        return False

    async def raises() -> bool:
        raise ConnectionError("nope")

    url = serve(build_app(ServiceSettings.load(), readiness={"redis": says_no, "auth": raises, "disk": fine}))
    response = httpx.get(url + "/readyz")

    assert response.status_code == 503
    assert response.json()["checks"] == {"redis": False, "auth": False, "disk": True}
    assert response.json()["message"] == "not ready: redis unavailable, auth unavailable"


def test_hung_checks_time_out_concurrently(serve) -> None:
    async def hangs() -> bool:
        await asyncio.sleep(30)
        return True

    app = FastAPI()
    app.include_router(health_router({"one": hangs, "two": hangs, "three": hangs}, timeout=0.3))
    url = serve(app)

    started = time.monotonic()
    response = httpx.get(url + "/readyz", timeout=10)
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.json()["checks"] == {"one": False, "two": False, "three": False}
    assert 0.3 <= elapsed < 0.8  # three 0.3 s timeouts side by side, not one after another


def test_no_checks_means_ready(serve) -> None:
    url = serve(build_app(ServiceSettings.load()))

    assert httpx.get(url + "/readyz").json() == {"status": "ready", "checks": {}}
    assert httpx.get(url + "/healthz").status_code == 200
