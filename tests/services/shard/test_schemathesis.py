"""Schemathesis, every check, against a shard's real cluster and Redis (``tests.services.schemathesis_support``)."""

from __future__ import annotations

from infra.local.processes import ClusterProcess
from tests.services.schemathesis_support import find_failures


def test_every_operation_answers_as_its_schema_says(shard_cluster: ClusterProcess) -> None:
    assert find_failures(shard_cluster.url) == []
