"""The compose stack for the end-to-end modules: one per module, torn down with nothing left behind."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.docker import ComposeStack, compose_stack, leftovers


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[ComposeStack]:
    project = f"scalecube-{request.module.__name__.rsplit('.', 1)[-1].removeprefix('test_')}-{uuid.uuid4().hex[:6]}"
    project = project.replace("_", "-")
    with compose_stack(project) as running:
        yield running
    assert leftovers(running.client, project) == {"containers": [], "networks": [], "volumes": []}
