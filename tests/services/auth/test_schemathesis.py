"""Schemathesis, every check, against auth's real cluster (``tests.services.schemathesis_support``).

The module's auth cluster has short, low login limits (``conftest.FAST_LIMITS``): the 429s
it answers are documented too.
"""

from __future__ import annotations

import pytest
import schemathesis
from schemathesis.schemas import BaseSchema

from infra.local.processes import ClusterProcess
from tests.services.schemathesis_support import load_schema

schema = schemathesis.pytest.from_fixture("auth_schema")


@pytest.fixture(scope="module")
def auth_schema(auth: ClusterProcess) -> BaseSchema:
    return load_schema(auth.url)


@schema.parametrize()
def test_every_operation_answers_as_its_schema_says(case: schemathesis.Case) -> None:
    case.call_and_validate()
