"""Everything a cluster is told at start: the master's ``ClusterConfig``, and each worker's ``WorkerConfig``.

Why one module: every default of the runtime is written here once. The CLI takes its
defaults from ``ClusterConfig``'s fields, and a worker gets its ``WorkerConfig`` whole
(JSON in ``SCALECUBE_WORKER_CONFIG``), built from the master's config, so no second
parser holds a second copy of a default that could drift from this one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.handoff import HandoffLimits

POLICIES = ("rr", "least", "os")
# A cluster's name (``scalecube reload NAME``): starts with a letter, so it never reads as a port.
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
KILL_GRACE = 5.0  # after a worker's drain timeout (and settle), how long before SIGKILL
WORKER_CONFIG_ENV = "SCALECUBE_WORKER_CONFIG"  # a worker's WorkerConfig, as JSON
MASTER_HOOK_ENV = "SCALECUBE_MASTER_HOOK"  # "module:attribute" of the hook run in the master (cluster.hooks)
_GENERIC_MODULES = frozenset({"app", "apps", "main", "asgi", "server"})  # say nothing about which app it is


def default_run_dir() -> Path:
    """Where masters put their control sockets (``scalecube status`` looks here)."""
    return Path(os.environ.get("SCALECUBE_RUN_DIR", "/tmp/scalecube"))


def default_name(app: str) -> str:
    """A cluster's name when none is given: the app module's telling part (``services.api.app:app`` -> api)."""
    parts = [part.strip("_") for part in app.partition(":")[0].split(".")]
    telling = [part for part in parts if part and part not in _GENERIC_MODULES] or [p for p in parts if p]
    name = telling[-1] if telling else "app"
    return name if NAME_PATTERN.fullmatch(name) else "app"


@dataclass(frozen=True)
class ClusterConfig:
    app: str  # "module:attribute" of an ASGI app, imported by each worker
    workers: int = 1
    policy: str = "rr"
    handoff: HandoffLimits = field(
        default_factory=HandoffLimits
    )  # rr/least: what a worker may hold, queueing, shedding
    host: str = "127.0.0.1"
    port: int = 8000
    health_port: int | None = None  # the master's /healthz and /readyz for probes (cluster.health); None = off
    backlog: int = 2048
    drain_timeout: float = 30.0  # in-flight requests of a leaving worker get this long
    startup_timeout: float = 60.0  # a worker not listening by then is killed and counted as a crash
    heartbeat_timeout: float = 60.0  # a listening worker silent this long is hung: killed and replaced
    # Longer than any balancer keeps an idle upstream connection for reuse (ours: 2 s, HAProxy: ~5 s):
    # otherwise a request can be sent on a connection the worker is closing — fatal for a POST.
    keep_alive: float = 20.0
    settle: float = 0.25  # how long a leaving worker keeps just-received connections before closing idle ones
    max_requests: int = 0  # recycle a worker after this many requests (0 = never) ...
    max_requests_jitter: int = 0  # ... plus up to this many more, so workers don't recycle together
    max_rss_mb: float = 0.0  # recycle a worker whose resident memory exceeds this (0 = never)
    max_crashes: int = 10  # this many crashes within crash_window and the master gives up (0 = never)
    crash_window: float = 60.0
    min_uptime: float = 1.0  # a worker dying younger than this is "unstable": its restarts back off
    backoff_base: float = 0.1
    backoff_cap: float = 10.0
    monitor_interval: float = 1.0  # resource sampling (RSS, CPU%) and hung-worker checks
    control_path: Path | None = None  # status/control socket; None = <run dir>/cluster-<port>.sock
    env: dict[str, str] = field(default_factory=dict)  # extra environment for workers
    app_dir: Path = field(default_factory=Path.cwd)  # put first on sys.path, as uvicorn's --app-dir
    name: str = ""  # how `scalecube reload NAME` & co. find it; "" = default_name(app)
    log_dir: Path | None = None  # each worker's output to <log_dir>/worker-<slot>.log; None = the master's stderr
    master_hook: str = ""  # "module:attribute" run in the master; "" = <app package>.master:on_master if it exists

    def __post_init__(self) -> None:
        if ":" not in self.app:
            raise ValueError(f"app must look like 'module:attribute', got {self.app!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if not self.name:
            object.__setattr__(self, "name", default_name(self.app))  # frozen: set once, here
        if not NAME_PATTERN.fullmatch(self.name):
            raise ValueError(
                f"name must start with a letter and hold only letters, digits, '_', '.', '-' "
                f"(at most 64), got {self.name!r}"
            )

    def control_socket(self, port: int) -> Path:
        return self.control_path or default_run_dir() / f"cluster-{port}.sock"

    def worker_config(
        self, worker_id: int, slot: int, channel_fd: int, listen_fd: int | None, max_requests: int
    ) -> WorkerConfig:
        """What one worker is told (``max_requests``: this worker's share, jitter included)."""
        return WorkerConfig(
            app=self.app,
            id=worker_id,
            slot=slot,
            channel_fd=channel_fd,
            listen_fd=listen_fd,
            drain_timeout=self.drain_timeout,
            settle=self.settle,
            keep_alive=self.keep_alive,
            max_requests=max_requests,
            app_dir=str(self.app_dir),
        )


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker process is told, in one piece: no defaults here, they are ``ClusterConfig``'s."""

    app: str
    id: int
    slot: int
    channel_fd: int  # its end of the channel (cluster.channel), inherited
    listen_fd: int | None  # the shared listening socket (policy os), or None: connections come over the channel
    drain_timeout: float
    settle: float
    keep_alive: float
    max_requests: int  # 0 = never recycle
    app_dir: str

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> WorkerConfig:
        try:
            data: dict[str, Any] = json.loads(text)
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a worker config ({WORKER_CONFIG_ENV}): {exc}") from None

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> WorkerConfig:
        text = (os.environ if environ is None else environ).get(WORKER_CONFIG_ENV)
        if not text:
            raise ValueError(f"{WORKER_CONFIG_ENV} is not set: workers are started by a cluster master")
        return cls.from_json(text)
