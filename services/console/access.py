"""HTTP basic auth (user ``admin``, CONSOLE_PASSWORD) in front of every page and call but the probes and /metrics.

The console acts on the stack (it holds the Docker socket): published, it asks for the password; the
comparison is constant-time. Without a password configured it lets everything through (loopback only).
"""

from __future__ import annotations

import base64
import binascii
import secrets

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

USER = "admin"
# The probes, and /metrics for Prometheus (request counts of the console itself; no secret in them).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class BasicAuthMiddleware:
    def __init__(self, app: ASGIApp, password: str | None) -> None:
        self.app = app
        self._expected = f"{USER}:{password}".encode() if password else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._expected is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if self._allowed(dict(scope["headers"]).get(b"authorization", b"")):
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {"error": "unauthorized", "message": "the console needs its password (user admin, CONSOLE_PASSWORD)"},
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="scalecube console", charset="UTF-8"'},
        )
        await response(scope, receive, send)

    def _allowed(self, header: bytes) -> bool:
        scheme, _, encoded = header.partition(b" ")
        if scheme.lower() != b"basic" or self._expected is None:
            return False
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return False
        return secrets.compare_digest(given, self._expected)
