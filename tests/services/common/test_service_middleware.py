"""X-Served-By and the request body limit, over real uvicorn servers."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator

import httpx
import pytest

from services.common.settings import ServiceSettings
from tests.services.common.service_under_test import build_app

LIMIT = 1024
THIS_PROCESS = f"{socket.gethostname()}/{os.getpid()}"


@pytest.fixture
def url(serve) -> str:
    return serve(build_app(ServiceSettings.load(max_body_bytes=LIMIT)))


def chunks(total: int, size: int = 256) -> Iterator[bytes]:
    """A generator body: httpx sends it chunked, with no Content-Length."""
    while total > 0:
        yield b"x" * min(size, total)
        total -= size


# -- X-Served-By ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/items/1", 200),
        ("GET", "/nope", 404),
        ("GET", "/items/abc", 422),
        ("GET", "/boom/dependency", 503),
        ("GET", "/boom/crash", 500),
        ("DELETE", "/items/1", 405),
    ],
)
def test_every_response_says_who_served_it(url: str, method: str, path: str, status: int) -> None:
    response = httpx.request(method, url + path)

    assert response.status_code == status
    assert response.headers["x-served-by"] == THIS_PROCESS


def test_rejected_bodies_say_who_served_them_too(url: str) -> None:
    assert httpx.post(url + "/upload", content=b"x" * (LIMIT + 1)).headers["x-served-by"] == THIS_PROCESS
    assert httpx.post(url + "/upload", content=chunks(LIMIT * 2)).headers["x-served-by"] == THIS_PROCESS


def test_served_by_names_the_serving_process(spawn_service) -> None:
    service = spawn_service()

    response = httpx.get(service.url + "/items/3")

    assert response.headers["x-served-by"] == f"{socket.gethostname()}/{service.pid}"


# -- body limit -----------------------------------------------------------------------


def test_declared_length_over_limit_is_413_json(url: str) -> None:
    response = httpx.post(url + "/upload", content=b"x" * (LIMIT + 1))

    assert response.status_code == 413
    assert response.json() == {
        "error": "payload_too_large",
        "message": f"request body is larger than the {LIMIT}-byte limit",
        "max_bytes": LIMIT,
    }


def test_declared_length_over_limit_is_refused_before_routing(url: str) -> None:
    # Even a route that doesn't exist: the body is refused before anything looks at the path.
    assert httpx.post(url + "/no/such/route", content=b"x" * (LIMIT + 1)).status_code == 413


def test_body_at_the_limit_is_accepted(url: str) -> None:
    response = httpx.post(url + "/upload", content=b"x" * LIMIT)

    assert response.status_code == 200
    assert response.json() == {"received": LIMIT}


@pytest.mark.parametrize("path", ["/upload", "/stream"])
def test_chunked_body_over_limit_is_413_json(url: str, path: str) -> None:
    response = httpx.post(url + path, content=chunks(LIMIT * 4))

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert response.json()["max_bytes"] == LIMIT


def test_chunked_json_body_over_limit_is_413_not_a_parse_error(url: str) -> None:
    body = b'{"name": "' + b"n" * (LIMIT * 2) + b'", "quantity": 1}'

    response = httpx.post(
        url + "/items", content=iter([body[:500], body[500:]]), headers={"content-type": "application/json"}
    )

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


@pytest.mark.parametrize("path", ["/upload", "/stream"])
def test_chunked_body_within_limit_is_received_whole(url: str, path: str) -> None:
    response = httpx.post(url + path, content=chunks(LIMIT, size=100))

    assert response.status_code == 200
    assert response.json() == {"received": LIMIT}


def test_the_connection_stays_usable_after_a_413(url: str) -> None:
    with httpx.Client(base_url=url) as client:
        assert client.post("/upload", content=chunks(LIMIT * 2)).status_code == 413
        assert client.get("/items/9").json() == {"item_id": 9}


def test_malformed_content_length_over_a_real_socket_is_400(url: str) -> None:
    # uvicorn's HTTP parser refuses it before the app; the contract holds end to end either way.
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\nConnection: close\r\n\r\nhello")
        reply = conn.recv(4096)

    assert reply.startswith(b"HTTP/1.1 400")


@pytest.mark.parametrize(
    "headers",
    [
        [("content-length", "12abc")],
        [("content-length", "-1")],
        [("content-length", "1_0")],
        [("content-length", "5"), ("content-length", "6")],
    ],
)
def test_malformed_content_length_reaching_the_app_is_400_json(headers: list[tuple[str, str]]) -> None:
    # Other servers or proxies may pass such headers on; drive the app through ASGI directly to send them.
    app = build_app(ServiceSettings.load(max_body_bytes=LIMIT))

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service") as client:
            return await client.post("/upload", content=b"hello", headers=headers)

    response = asyncio.run(post())

    assert response.status_code == 400
    assert response.json() == {"error": "bad_request", "message": "malformed Content-Length header"}
