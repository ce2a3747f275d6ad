from __future__ import annotations

import pytest

from tests.support.haproxy import require_haproxy


@pytest.fixture
def haproxy_binary() -> str:
    """The haproxy executable: a skip that says why without one, a failure under CI (which installs it)."""
    return require_haproxy()
