"""The kit's OpenAPI schema tells the truth about errors, and 405s name every method of the path.

Over a real uvicorn server; schemathesis judges the schema against the answers.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import HTTPException
from schemathesis.core.failures import FailureGroup
from schemathesis.openapi.checks import UndefinedStatusCode

from services.common.app import create_service_app
from services.common.errors import ALWAYS, error_responses
from services.common.settings import ServiceSettings
from tests.services.schemathesis_support import load_schema


def build_app():
    app = create_service_app("openapi-test", ServiceSettings.load(max_body_bytes=1024))

    @app.get("/things/{thing_id}", responses=error_responses(404))
    async def get_thing(thing_id: int) -> dict[str, int]:
        if thing_id != 1:
            raise HTTPException(404, "no such thing")
        return {"thing_id": thing_id}

    @app.put("/things/{thing_id}")
    async def put_thing(thing_id: int) -> dict[str, int]:
        return {"thing_id": thing_id}

    @app.delete("/things/{thing_id}")
    async def delete_thing(thing_id: int) -> dict[str, int]:
        return {"thing_id": thing_id}

    @app.get("/teapot")
    async def teapot() -> dict[str, str]:
        raise HTTPException(418, "undocumented on purpose")

    return app


@pytest.fixture
def url(serve) -> str:
    return serve(build_app())


def test_every_route_documents_the_kits_errors_and_the_real_422_body(url: str) -> None:
    schema = httpx.get(url + "/openapi.json").json()
    get_thing = schema["paths"]["/things/{thing_id}"]["get"]["responses"]
    assert {"400", "413", "404", "422"} <= set(get_thing)
    assert all(
        {str(status) for status in ALWAYS} <= set(item["get"]["responses"])
        for path, item in schema["paths"].items()
        if "get" in item
    )
    assert get_thing["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationErrorBody"
    }
    assert get_thing["404"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    # ... and the 422 really is that body.
    body = httpx.get(url + "/things/abc").json()
    assert body["error"] == "validation_error" and {"message", "detail"} <= set(body)


def test_a_405_allows_every_method_of_the_path(url: str) -> None:
    for method in ("OPTIONS", "POST", "PATCH", "HEAD"):
        response = httpx.request(method, url + "/things/1")
        assert response.status_code == 405
        assert response.headers["allow"] == "DELETE, GET, PUT"
        assert method == "HEAD" or response.json()["error"] == "method_not_allowed"


def test_schemathesis_fails_a_route_that_answers_an_undocumented_status(url: str) -> None:
    """The guard the per-service schemathesis tests rely on: an undocumented status is a failure."""
    schema = load_schema(url)
    with pytest.raises(FailureGroup) as failed:
        schema["/teapot"]["GET"].Case().call_and_validate()
    assert failed.group_contains(UndefinedStatusCode, match="Received: 418")
    schema["/things/{thing_id}"]["GET"].Case(path_parameters={"thing_id": 2}).call_and_validate()  # a documented 404
