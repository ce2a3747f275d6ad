"""Every scenario runs once per balancer kind, with the same assertions: HAProxy and the Python
balancer are held to the same behaviour. HAProxy's runs skip (saying why) without the binary,
and fail under CI, which installs it."""

from __future__ import annotations

import pytest

from tests.lb.conftest import require_haproxy

KINDS = ("haproxy", "python")


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "haproxy":
        require_haproxy()
    return request.param
