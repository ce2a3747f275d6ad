from __future__ import annotations

from typing import Any

import pytest

API = "services.api.app:app"


@pytest.fixture
def start_api(start_cluster, tmp_path):
    """The api as a real cluster against a given Redis URL."""

    def start(redis_url: str, *, workers: int = 2, env: dict[str, str] | None = None, **kwargs: Any):
        environment = {
            "REDIS_URL": redis_url,
            "SESSION_SECRET": "test-secret-long-enough-123",
            "SCALECUBE_RUN_DIR": str(tmp_path),
            **(env or {}),
        }
        return start_cluster(API, workers=workers, env=environment, **kwargs)

    return start
