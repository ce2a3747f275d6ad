"""A master's control socket: one JSON request per line, one JSON answer per line.

``scalecube status`` (and ``docker exec … scalecube status``) reads cluster
state through it; reload, scale and stop are here too, for environments where
sending signals is awkward, and for ``scalecube reload/scale/stop NAME``
(``cluster.manage``), which find a master by asking, never by hunting pids.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("scalecube.cluster")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_REQUEST_BYTES = 4096


class ControlServer:
    def __init__(self, path: Path, server: asyncio.AbstractServer) -> None:
        self.path = path
        self._server = server

    @classmethod
    async def start(cls, path: Path, handler: Handler) -> ControlServer:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not _answers(path):
            path.unlink()  # left behind by a master that died
        elif path.exists():
            raise RuntimeError(f"another master already answers on {path}")

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.closing(writer):
                try:
                    line = await asyncio.wait_for(reader.readline(), 5)
                    request = json.loads(line[:MAX_REQUEST_BYTES] or b"{}")
                    answer = await handler(request if isinstance(request, dict) else {})
                except (TimeoutError, ValueError) as exc:
                    answer = {"ok": False, "error": f"bad request: {exc}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                with contextlib.suppress(ConnectionError):
                    await writer.drain()

        server = await asyncio.start_unix_server(serve, path=str(path))
        os.chmod(path, 0o600)  # reload/scale are operator actions
        return cls(path, server)

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def request(path: Path | str, command: str, timeout: float = 5.0, **args: Any) -> dict[str, Any]:
    """Ask the master listening on ``path``; raises ``ConnectionError`` if nobody answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise ConnectionError(f"no cluster master answers on {path}: {exc.strerror or exc}") from exc
        sock.sendall(json.dumps({"cmd": command, **args}).encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return json.loads(b"".join(chunks))


def _answers(path: Path) -> bool:
    try:
        request(path, "status", timeout=1.0)
    except (ConnectionError, OSError, ValueError):
        return False
    return True
