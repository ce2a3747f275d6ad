"""Every error a service returns is JSON: ``{"error": "<code>", "message": "<sentence>", ...}``.

Clients (and the load tests) branch on ``error``; people read ``message``.
Stack traces and client-library exceptions only ever reach the log.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.utils import is_body_allowed_for_status_code
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scalecube.errors import DependencyUnavailable

log = logging.getLogger("scalecube.errors")

# Stable codes for the statuses services use; others derive from the status phrase.
ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}
MAX_LISTED_VALIDATION_ERRORS = 5


def error_code(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return f"http_{status}"
    return ERROR_CODES.get(status) or re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")


def error_response(status: int, error: str, message: str, *, headers: dict[str, str] | None = None,
                   **fields: Any) -> JSONResponse:  # fmt: skip
    return JSONResponse({"error": error, "message": message, **fields}, status_code=status, headers=headers)


def internal_error_response() -> JSONResponse:
    return error_response(500, "internal_error", "internal server error; it has been logged")


def install_error_handlers(app: FastAPI) -> None:
    """Render validation, HTTP, dependency and unexpected errors as JSON.

    The ``Exception`` handler runs in Starlette's outermost ServerErrorMiddleware,
    so its response skips the other middlewares; ``InternalErrorMiddleware`` is the
    primary catch-all and this is the safety net for errors raised by middleware.
    """
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(DependencyUnavailable, _dependency_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)


class InternalErrorMiddleware:
    """Turns an unhandled exception into the 500 JSON response, inside the other middlewares.

    Installed innermost, so X-Served-By and the request metrics see the 500
    like any other response, and the error is logged once (here) rather than
    again by the server.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def send_tracking_start(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking_start)
        except Exception:
            if response_started:
                raise  # too late for a clean 500: let the server abort the response
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            await internal_error_response()(scope, receive, send)


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    # Never echo what the client sent: the rejected value may be a password.
    errors = [{k: v for k, v in e.items() if k not in ("input", "url")} for e in jsonable_encoder(exc.errors())]
    problems = [f"{_location(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors]
    message = "invalid request: " + "; ".join(problems[:MAX_LISTED_VALIDATION_ERRORS])
    if len(problems) > MAX_LISTED_VALIDATION_ERRORS:
        message += f"; and {len(problems) - MAX_LISTED_VALIDATION_ERRORS} more"
    return error_response(422, "validation_error", message, detail=errors)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    status, headers = exc.status_code, exc.headers
    if not is_body_allowed_for_status_code(status):
        return Response(status_code=status, headers=headers)
    body: dict[str, Any] = {"error": error_code(status)}
    if isinstance(exc.detail, dict):  # raise HTTPException(401, {"error": "bad_token", "message": ...})
        body |= exc.detail
    else:
        body["message"] = _http_message(request, status, exc.detail)
    return JSONResponse(body, status_code=status, headers=headers)


async def _dependency_unavailable(request: Request, exc: DependencyUnavailable) -> Response:
    # The detail (addresses, client errors) is for operators, not clients.
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return error_response(
        503,
        "dependency_unavailable",
        f"{exc.dependency} is unavailable; retry shortly",
        headers={"Retry-After": "1"},
        dependency=exc.dependency,
    )


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    # Not logged here: ServerErrorMiddleware re-raises after responding and the server logs it.
    return internal_error_response()


def _http_message(request: Request, status: int, detail: Any) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = f"HTTP {status}"
    if detail is None or detail == phrase:  # Starlette's default detail: say what was refused
        return f"{phrase}: {request.method} {request.url.path}"
    return str(detail)


def _location(loc: Any) -> str:
    return ".".join(str(part) for part in loc) if isinstance(loc, (list, tuple)) else str(loc)
