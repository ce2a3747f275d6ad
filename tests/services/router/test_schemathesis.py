"""Schemathesis, every check, against the router's real cluster in front of two real shards
(``tests.services.schemathesis_support``)."""

from __future__ import annotations

import pytest
import schemathesis
from schemathesis.schemas import BaseSchema

from tests.services.router.conftest import ShardedStack
from tests.services.schemathesis_support import load_schema

schema = schemathesis.pytest.from_fixture("router_schema")


@pytest.fixture
def router_schema(stack: ShardedStack) -> BaseSchema:
    return load_schema(stack.url)


@schema.parametrize()
def test_every_operation_answers_as_its_schema_says(case: schemathesis.Case) -> None:
    case.call_and_validate()
