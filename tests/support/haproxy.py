"""HAProxy for tests: required in CI (which installs it), skipped with the reason elsewhere."""

from __future__ import annotations

import os
import re

import pytest

from lb.haproxy import runner


def require_haproxy() -> str:
    """The haproxy binary; skip (saying why) without one — but fail under CI, which installs it."""
    try:
        return runner.find_haproxy()
    except runner.HaproxyNotFound as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {exc}", pytrace=False)
        pytest.skip(reason=f"haproxy is not installed here: {exc}")


# An HAProxy log line of a 200 the server cut off mid-body ("SD"): already begun, so no proxy can replay it.
HAPROXY_CUT_RESPONSE = re.compile(r"\] public \w+/\S+ \S+ 200 \d+ \S+ \S+ SD")
