"""The api's code in the cluster master (``cluster.hooks``): the one reader of the users count.

A module of its own, next to ``app.py``, so the master can run it without importing the
app — no FastAPI, no routes, no logging setup inside PID 1; only the settings, a Redis
connection and the users source (``services.api.users_source``).
"""

from __future__ import annotations

from typing import Any

from services.api.settings import ApiSettings
from services.api.users_source import broadcast_from_master, reading_from


def on_master(cluster: Any) -> None:
    """In broadcast mode, read the count once per interval and tell every worker (see ``users_source``)."""
    settings = ApiSettings.load()
    if settings.users_count_mode == "broadcast":
        connector = settings.redis_connector()
        reading, _, _ = reading_from(settings, connector)
        broadcast_from_master(cluster, reading, settings.users_count_interval)
