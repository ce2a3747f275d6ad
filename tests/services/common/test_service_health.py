"""/healthz never depends on anything; /readyz runs the named checks, concurrently, with a timeout,
and reports them without failing: a shared dependency down must not eject every replica."""

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
    assert down.status_code == 200  # still serving what does not need redis
    assert down.json() == {
        "status": "degraded",
        "checks": {"redis": False},
        "message": "serving; unavailable: redis (the routes that need it answer 503 naming it)",
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

    assert response.status_code == 200 and response.json()["status"] == "degraded"
    assert response.json()["checks"] == {"redis": False, "auth": False, "disk": True}
    assert response.json()["message"].startswith("serving; unavailable: redis, auth ")


def test_hung_checks_time_out_concurrently(serve) -> None:
    """Side by side, not one after another: every check has begun before the first one is given up on
    (one after another, the second would begin only once the first had timed out)."""
    started: list[int] = []
    begun_when_cancelled: list[int] = []

    async def hangs() -> bool:
        started.append(1)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            begun_when_cancelled.append(len(started))
            raise
        return True

    app = FastAPI()
    app.include_router(health_router({"one": hangs, "two": hangs, "three": hangs}, timeout=0.3))
    url = serve(app)

    began = time.monotonic()
    response = httpx.get(url + "/readyz", timeout=10)
    elapsed = time.monotonic() - began

    assert response.json()["status"] == "degraded"
    assert response.json()["checks"] == {"one": False, "two": False, "three": False}
    assert begun_when_cancelled == [3, 3, 3]
    assert elapsed >= 0.3  # each waited its timeout; the answer came (not the 30 s the checks would take)


def test_no_checks_means_ready(serve) -> None:
    url = serve(build_app(ServiceSettings.load()))

    assert httpx.get(url + "/readyz").json() == {"status": "ready", "checks": {}}
    assert httpx.get(url + "/healthz").status_code == 200
