"""A small service built with ``create_service_app``, for the tests of the common kit.

Served in a thread by the tests, or as a real process:
``python -m tests.services.common.service_under_test <listening socket fd>``.
"""

from __future__ import annotations

import socket
import sys

import uvicorn
from fastapi import HTTPException, Request
from pydantic import BaseModel

from kit.errors import DependencyUnavailable
from services.common.app import create_service_app
from services.common.health import ReadinessCheck
from services.common.settings import ServiceSettings

SECRET_IN_ERROR = "hunter2-internal-detail"


class NewItem(BaseModel):
    name: str
    quantity: int


def build_app(settings: ServiceSettings | None = None, readiness: dict[str, ReadinessCheck] | None = None):
    app = create_service_app("test-service", settings or ServiceSettings.load(), readiness=readiness)

    @app.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    @app.post("/items")
    async def create_item(item: NewItem) -> dict[str, object]:
        return {"name": item.name, "quantity": item.quantity}

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.post("/stream")
    async def stream(request: Request) -> dict[str, int]:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
        return {"received": received}

    @app.get("/boom/dependency")
    async def dependency_down() -> None:
        raise DependencyUnavailable("redis", f"connection refused ({SECRET_IN_ERROR})")

    @app.get("/boom/crash")
    async def crash() -> None:
        raise RuntimeError(f"something internal broke: {SECRET_IN_ERROR}")

    @app.get("/boom/forbidden")
    async def forbidden() -> None:
        raise HTTPException(403, "you may not")

    return app


def main(listen_fd: int) -> None:
    # log_config=None: the service configured logging itself, uvicorn must not redo it.
    config = uvicorn.Config(build_app(), log_config=None, lifespan="on")
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=listen_fd)])


if __name__ == "__main__":
    main(int(sys.argv[1]))
