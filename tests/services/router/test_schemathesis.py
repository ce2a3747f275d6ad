"""Schemathesis, every check, against the router's real cluster in front of two real shards
(``tests.services.schemathesis_support``)."""

from __future__ import annotations

from tests.services.router.conftest import ShardedStack
from tests.services.schemathesis_support import find_failures


def test_every_operation_answers_as_its_schema_says(stack: ShardedStack) -> None:
    assert find_failures(stack.url) == []


def test_a_405_names_every_method_of_the_path(stack: ShardedStack) -> None:
    """``OPTIONS /users`` said ``Allow: POST`` (the first matching route's) though ``GET /users`` is served."""
    with stack.client() as client:
        for path, allowed in (
            ("/users", "GET, POST"),
            ("/users/abc", "GET"),
            ("/users/count", "GET"),
            ("/shards", "GET"),
        ):
            response = client.options(path)
            assert (response.status_code, response.headers["allow"]) == (405, allowed), path
        assert client.get("/users/not an id").status_code == 404  # the bare route: no 422 for an id's shape
