"""Pure ASGI middlewares (BaseHTTPMiddleware costs a task and a stream per request)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.errors import error_response
from services.common.identity import current_identity

SERVED_BY_HEADER = b"x-served-by"
_MALFORMED = -1  # _content_length's answer for a header that is not one plain number


class ServedByMiddleware:
    """Adds ``X-Served-By: host/pid`` to every response, errors included.

    It shows which replica and which worker answered: the balancing and
    stickiness experiments count these.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = (SERVED_BY_HEADER, current_identity().served_by.encode("latin-1"))

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_header)


class RequestBodyTooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit.

    An HTTPException, so FastAPI's body parsing lets it through and the
    app's HTTPException handler renders the 413.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, too_large_body(max_bytes))


def too_large_body(max_bytes: int) -> dict[str, object]:
    return {
        "error": "payload_too_large",
        "message": f"request body is larger than the {max_bytes}-byte limit",
        "max_bytes": max_bytes,
    }


class BodyLimitMiddleware:
    """Rejects request bodies over ``max_bytes`` with 413, without buffering them.

    A declared Content-Length over the limit is refused before routing. A
    chunked body is counted as it is received and refused on the chunk that
    crosses the limit. A malformed Content-Length is a 400.

    (Starlette's RequestBodyLimitMiddleware answers in plain text and lets a
    malformed length through; services promise JSON errors.)
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == _MALFORMED:
            response = error_response(400, "bad_request", "malformed Content-Length header")
            await response(scope, receive, send)
            return
        if declared is not None:
            if declared > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            # The HTTP server frames the body by Content-Length: it cannot grow past it.
            await self.app(scope, receive, send)
            return

        received = 0
        response_started = False

        async def receive_counting() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise RequestBodyTooLarge(self.max_bytes)
            return message

        async def send_tracking_start(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive_counting, send_tracking_start)
        except RequestBodyTooLarge:
            if response_started:
                raise
            # Nothing inside rendered it (no HTTPException handler): answer here.
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await JSONResponse(too_large_body(self.max_bytes), status_code=413)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    """The declared body length, None if absent, ``_MALFORMED`` if not a single plain number."""
    values = [value for name, value in scope["headers"] if name == b"content-length"]
    if not values:
        return None
    digits = values[0].strip()
    if not digits.isdigit() or any(value.strip() != digits for value in values[1:]):
        return _MALFORMED
    return int(digits)
