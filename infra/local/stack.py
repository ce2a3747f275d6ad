"""The local stack: Redis and the api cluster as processes on this machine, no Docker.

``build_components`` says what the stack is made of, in start order; ``LocalStack``
starts them one at a time (each must be ready before the next starts), watches
them, and stops them in reverse order. Adding a component — another cluster, a
balancer, a shard's Redis — is one more entry in ``build_components``.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.local.components import ClusterComponent, Component, RedisComponent
from infra.local.errors import StartAborted, StartFailed
from infra.local.pids import log_tail

log = logging.getLogger("scalecube.stack")

API_APP = "services.api.app:app"
READY_TIMEOUT = 60.0  # per component: a cold interpreter importing FastAPI on a busy 2-core box is slow
POLL_INTERVAL = 0.1


@dataclass(frozen=True)
class StackOptions:
    state_dir: Path
    port: int = 8080
    workers: str = "auto"  # 'auto' or a count, passed on to `scalecube serve`
    policy: str = "rr"
    session_backend: str = "redis"
    redis_port: int = 0  # 0 = a free port
    host: str = "127.0.0.1"


def session_secret() -> str:
    """SESSION_SECRET from the environment, else a fresh one per stack (sessions end with the stack anyway)."""
    return os.environ.get("SESSION_SECRET") or secrets.token_urlsafe(32)


def build_components(options: StackOptions) -> list[Component]:
    """What the stack is made of, in start order (it stops in reverse)."""
    redis = RedisComponent(options.state_dir / "redis", port=options.redis_port, host=options.host)
    api = ClusterComponent(
        "api", API_APP, port=options.port, workers=options.workers, policy=options.policy,
        state_dir=options.state_dir, host=options.host,
        env={
            "REDIS_URL": redis.url,
            "SESSION_BACKEND": options.session_backend,
            "SESSION_SECRET": session_secret(),
            "SCALECUBE_RUN_DIR": str(options.state_dir),
        },
    )  # fmt: skip
    return [redis, api]


class LocalStack:
    def __init__(self, components: list[Component], *, ready_timeout: float = READY_TIMEOUT) -> None:
        self.components = components
        self.ready_timeout = ready_timeout
        self._started: list[Component] = []

    @classmethod
    def from_options(cls, options: StackOptions) -> LocalStack:
        return cls(build_components(options))

    def check(self) -> None:
        """Fail before starting anything if some component cannot start (e.g. its port is taken)."""
        for component in self.components:
            component.check()

    def start(self, on_launched: Callable[[Component], None] = lambda _: None,
              should_stop: Callable[[], bool] = lambda: False) -> None:  # fmt: skip
        """Start every component in order, each ready before the next; on any failure stop them all.

        ``on_launched`` runs as soon as a process exists (before it is ready), so
        the caller can record its pid; ``should_stop`` aborts a start in progress.
        """
        try:
            for component in self.components:
                if should_stop():
                    raise StartAborted()
                self._started.append(component)
                self._launch(component)
                on_launched(component)
                self._wait_ready(component, should_stop)
        except BaseException:
            self.stop()
            raise

    def exited(self) -> tuple[Component, int] | None:
        """The first started component whose process has exited, with its exit code."""
        for component in self._started:
            code = component.poll()
            if code is not None:
                return component, code
        return None

    def stop(self) -> list[Component]:
        """Stop what was started, last first (the api drains while Redis still serves it)."""
        stopped = []
        while self._started:
            component = self._started.pop()
            try:
                component.stop()
            except Exception:  # keep going: one stubborn component must not leave the rest running
                log.exception("stopping %s failed", component.name)
            stopped.append(component)
        return stopped

    def describe(self) -> list[dict[str, Any]]:
        return [component.describe() for component in self._started]

    def _launch(self, component: Component) -> None:
        try:
            component.start()
        except (OSError, RuntimeError) as exc:
            raise StartFailed(component.name, str(exc)) from None

    def _wait_ready(self, component: Component, should_stop: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while not component.ready():
            exited = self.exited()  # this one, or one it depends on (the api never gets ready without Redis)
            if exited is not None:
                dead, code = exited
                raise StartFailed(dead.name, f"exited ({describe_exit(code)}) before the stack was ready",
                                  log_tail(dead.log_path), dead.log_path)  # fmt: skip
            if should_stop():
                raise StartAborted()
            if time.monotonic() >= deadline:
                raise StartFailed(component.name, f"not ready after {self.ready_timeout:g}s",
                                  log_tail(component.log_path), component.log_path)  # fmt: skip
            time.sleep(POLL_INTERVAL)


def describe_exit(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
