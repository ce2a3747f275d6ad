"""Every error a service returns is JSON: ``{"error": "<code>", "message": "<sentence>", ...}``.

Clients (and the load tests) branch on ``error``; people read ``message``.
Stack traces and client-library exceptions only ever reach the log.

The OpenAPI schema says so too, from here: ``error_responses(404, 503)`` is what a route
passes as ``responses=`` for the errors it can give; ``ALWAYS`` (400, 413: the body limit's
answers, before any routing) is declared on every route by ``create_service_app``, and
``document_errors`` puts the real 422 body in place of FastAPI's default one.
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
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kit.errors import DependencyUnavailable

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


# -- what the OpenAPI schema says about errors ---------------------------------------------------


class ErrorBody(BaseModel):
    """Every error answer. Some add fields of their own (``dependency``, ``max_bytes``, ``country``...)."""

    model_config = ConfigDict(extra="allow")
    error: str = Field(description="a stable code to branch on: not_found, validation_error, ...")
    message: str = Field(description="a sentence for people; never echoes a rejected value")


class ValidationErrorBody(ErrorBody):
    detail: list[dict[str, Any]] = Field(description="one entry per problem: loc, msg, type (never the input)")


class PayloadTooLargeBody(ErrorBody):
    max_bytes: int = Field(description="the service's body limit (MAX_BODY_BYTES)")


class UnavailableBody(ErrorBody):
    dependency: str | None = Field(default=None, description="the part that is down (redis, auth, router, shard-a...)")


ERROR_MODELS: dict[int, type[ErrorBody]] = {413: PayloadTooLargeBody, 422: ValidationErrorBody, 503: UnavailableBody}
ERROR_DESCRIPTIONS = {
    400: "Malformed request: a Content-Length that is not one number, or a body that cannot be decoded",
    401: "Not authenticated, or wrong credentials",
    404: "Not found",
    409: "Conflict with the current state",
    413: "The request body is over the service's limit (MAX_BODY_BYTES)",
    422: "Invalid parameters or body (malformed JSON included); `detail` lists each problem",
    429: "Too many requests: Retry-After says when to try again",
    503: "A dependency is unavailable (`dependency` names it): retry shortly (Retry-After)",
}
# What any route can answer: the body limit refuses before routing, whatever the route.
ALWAYS = (400, 413)


def error_responses(*statuses: int, why: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the error statuses it answers, with the kit's JSON body.

    ``why`` replaces the generic description of a status with this route's reason.
    """
    why = why or {}
    return {
        status: {
            "model": ERROR_MODELS.get(status, ErrorBody),
            "description": why.get(status) or ERROR_DESCRIPTIONS.get(status) or HTTPStatus(status).phrase,
        }
        for status in statuses
    }


def document_errors(app: FastAPI) -> None:
    """Every route documents ``ALWAYS``; the 422 FastAPI adds to routes with parameters or a body
    documents the body this kit really sends (``ValidationErrorBody``), not FastAPI's own."""
    app.router.responses = {**error_responses(*ALWAYS), **app.router.responses}
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _replace_default_validation_error(generate())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def _replace_default_validation_error(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    replaced = False
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            response = operation.get("responses", {}).get("422")
            content = (response or {}).get("content", {}).get("application/json", {})
            if content.get("schema", {}).get("$ref") == _FASTAPI_422:
                content["schema"] = {"$ref": "#/components/schemas/ValidationErrorBody"}
                response["description"] = ERROR_DESCRIPTIONS[422]
                replaced = True
    if replaced:
        components["ValidationErrorBody"] = ValidationErrorBody.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
    # FastAPI's own models, once nothing refers to them.
    for name in ("HTTPValidationError", "ValidationError"):
        if name in components and not _refers_to(schema, f"#/components/schemas/{name}"):
            del components[name]


def _refers_to(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_refers_to(value, ref) for value in node.values())
    if isinstance(node, list):
        return any(_refers_to(value, ref) for value in node)
    return False


def error_code(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return f"http_{status}"
    return ERROR_CODES.get(status) or re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")


def error_response(
    status: int, error: str, message: str, *, headers: dict[str, str] | None = None, **fields: Any
) -> JSONResponse:
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
    if status == 405:
        # Starlette names only the methods of the first route that matched the path; the path may have more.
        headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request.app, request.scope))}
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


# What a 405's Allow can name: every method a route may serve (OPTIONS is served by none).
PROBED_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(app: Any, scope: Scope) -> list[str]:
    """Every method some route of ``app`` serves at this request's path, asked of the routes
    themselves (included routers too): the same matching that routes a request."""
    routes = app.router.routes
    return [
        method
        for method in PROBED_METHODS
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    ]


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
