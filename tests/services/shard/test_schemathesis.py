"""Schemathesis, every check, against a shard's real cluster (``tests.services.schemathesis_support``)."""

from __future__ import annotations

import pytest
import schemathesis
from schemathesis.schemas import BaseSchema

from infra.local.processes import ClusterProcess
from tests.services.schemathesis_support import load_schema

schema = schemathesis.pytest.from_fixture("shard_schema")


@pytest.fixture(scope="module")
def shard_schema(shard_cluster: ClusterProcess) -> BaseSchema:
    return load_schema(shard_cluster.url)


@schema.parametrize()
def test_every_operation_answers_as_its_schema_says(case: schemathesis.Case) -> None:
    case.call_and_validate()
