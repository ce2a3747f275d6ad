"""Every error is JSON ``{"error", "message", ...}``, over a real uvicorn server."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from services.common.errors import error_code, install_error_handlers
from services.common.settings import ServiceSettings
from tests.services.common.service_under_test import SECRET_IN_ERROR, build_app


@pytest.fixture
def url(serve) -> str:
    return serve(build_app(ServiceSettings.load(max_body_bytes=1024)))


def test_validation_error_is_422_naming_the_bad_fields(url: str) -> None:
    response = httpx.post(url + "/items", json={"name": "bolt", "quantity": "lots"})

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["message"].startswith("invalid request: body.quantity: Input should be a valid integer")
    assert [(e["loc"], e["type"]) for e in body["detail"]] == [(["body", "quantity"], "int_parsing")]


def test_every_missing_field_is_named(url: str) -> None:
    body = httpx.post(url + "/items", json={}).json()

    assert "body.name: Field required" in body["message"]
    assert "body.quantity: Field required" in body["message"]
    assert len(body["detail"]) == 2


def test_bad_path_parameter_is_422(url: str) -> None:
    response = httpx.get(url + "/items/abc")

    assert response.status_code == 422
    assert "path.item_id" in response.json()["message"]


def test_malformed_json_is_422(url: str) -> None:
    response = httpx.post(url + "/items", content=b"{not json", headers={"content-type": "application/json"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_unknown_route_is_404_json(url: str) -> None:
    response = httpx.get(url + "/no/such/thing")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "not_found", "message": "Not Found: GET /no/such/thing"}


def test_wrong_method_is_405_json_with_allow(url: str) -> None:
    response = httpx.delete(url + "/healthz")

    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert "GET" in response.headers["allow"]


def test_http_exception_keeps_its_status_and_detail(url: str) -> None:
    response = httpx.get(url + "/boom/forbidden")

    assert response.status_code == 403
    assert response.json() == {"error": "forbidden", "message": "you may not"}


def test_dependency_unavailable_is_503_naming_it_with_retry_after(url: str) -> None:
    response = httpx.get(url + "/boom/dependency")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert body["error"] == "dependency_unavailable"
    assert body["dependency"] == "redis"
    assert body["message"].startswith("redis is unavailable")
    assert SECRET_IN_ERROR not in response.text  # the detail is for the log only


def test_unexpected_exception_is_500_json_without_traceback(url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="scalecube.errors"):
        response = httpx.get(url + "/boom/crash")

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "internal_error"
    assert "Traceback" not in response.text
    assert SECRET_IN_ERROR not in response.text
    logged = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], RuntimeError)]
    assert len(logged) == 1 and SECRET_IN_ERROR in str(logged[0].exc_info[1])


def test_install_error_handlers_alone_still_answers_crashes_with_json(serve) -> None:
    """Without the kit's InternalErrorMiddleware, the Exception handler is the safety net."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/crash")
    async def crash() -> None:
        raise ValueError(SECRET_IN_ERROR)

    url = serve(app)
    response = httpx.get(url + "/crash")

    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert SECRET_IN_ERROR not in response.text


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (404, "not_found"),
        (413, "payload_too_large"),
        (418, "i_m_a_teapot"),
        (502, "bad_gateway"),
        (599, "http_599"),
    ],
)
def test_error_codes(status: int, code: str) -> None:
    assert error_code(status) == code
