"""One compose stack for this package: `test_ops.py` (the `scalecube docker …` operations) and then `test_stack.py`
(the stack end to end, every demo against it) share it. Each test leaves 3 healthy api containers behind the
balancer, which is all the next one needs — so the stack comes up once (about 45 s here) instead of once a module,
and is torn down, with nothing left behind, after the package's last test. `test_ops.py` goes first (pytest takes
the files in name order): its `ps` test names api-1..3, which the later tests' kills and scalings renumber."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.docker import ComposeStack, compose_stack, leftovers


@pytest.fixture(scope="package")
def stack() -> Iterator[ComposeStack]:
    project = f"scalecube-compose-{uuid.uuid4().hex[:6]}"
    with compose_stack(project) as running:
        yield running
    assert leftovers(running.client, project) == {"containers": [], "networks": [], "volumes": []}
