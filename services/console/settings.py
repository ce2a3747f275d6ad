"""The console's environment (on top of every service's: REDIS_URL, REDIS_SENTINELS, REDIS_PASSWORD...).

The sessions Redis is read (SCAN for the session count) with the api's own variables, so the console
counts what the api stores; the rest is what the console reads from or acts on.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, SecretStr

from services.common.settings import ServiceSettings


class ConsoleSettings(ServiceSettings):
    # PROMETHEUS_URL: where the rates, latencies and targets come from (its HTTP API, the recording rules).
    prometheus_url: str = "http://prometheus:9090"
    # ROUTER_URL: the router's GET /shards gives the users per shard.
    router_url: str = "http://router:8000"
    # LOCUST_URL: Locust's web UI, whose HTTP API (/swarm, /stop, /stats/requests) starts and stops swarms.
    locust_url: str = "http://locust:8089"
    # CONSOLE_BACKEND: what the console shows and acts on: the compose stack through the Docker engine's socket
    # (docker), or the local stack of processes (local: `scalecube status --json`, signals).
    console_backend: Literal["docker", "local"] = "docker"
    # CONSOLE_STATE_DIR: the local stack's state dir (`scalecube up --state-dir`); unset, scalecube's default.
    console_state_dir: str = ""
    # COMPOSE_PROJECT: the compose project whose containers the console shows and acts on; unset, its own
    # (the project label of the container it runs in).
    compose_project: str = ""
    # CONSOLE_PASSWORD / CONSOLE_PASSWORD_FILE: HTTP basic auth (user `admin`) on every page and call but
    # /healthz; unset, no password (only for a console bound to loopback and nothing else).
    console_password: SecretStr | None = None
    # CONSOLE_TOPOLOGY_TTL: how long one read of the engine's containers serves the polling pages.
    console_topology_ttl: PositiveFloat = 1.0
    # CONSOLE_ACTION_TIMEOUT: how long an action waits for its effect before the timeline says it did not come.
    console_action_timeout: PositiveFloat = Field(default=90.0, le=600)
