"""The api's environment (on top of every service's: REDIS_URL, SESSION_*, ...)."""

from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeFloat, PositiveFloat

from services.common.settings import ServiceSettings


class ApiSettings(ServiceSettings):
    users_count_interval: PositiveFloat = 10.0  # USERS_COUNT_INTERVAL: how often the count is refreshed
    # broadcast: the master reads once per interval and tells every worker (the guides' way);
    # worker: every worker reads for itself — N reads per interval, what broadcasting avoids.
    users_count_mode: Literal["broadcast", "worker"] = "broadcast"
    users_source_delay: NonNegativeFloat = 0.2  # USERS_SOURCE_DELAY: the "database" is slow on purpose
    cookie_secure: bool = False  # COOKIE_SECURE=1 behind TLS
