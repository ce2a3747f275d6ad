"""What the supervisor does when a component of a running stack dies: restart it, or give up on a crash loop.

Compose's ``restart: unless-stopped``, per component. A component that dies
after the stack is up is restarted with the same command line, on the same
address and port, with the same data dir — so what depends on it recovers by
itself: the api re-dials Redis, the balancers' health checks see a replica come
back, the DNS names do not change. Nothing else is restarted.

A component that dies young (before it was serving, or less than
``min_uptime`` after) is probably crash-looping: its restarts back off
exponentially (``cluster.crashes.CrashPolicy``, the rule the cluster applies to
its workers), and after ``max_crashes`` young deaths within ``window`` the
supervisor gives up on it, says why, and marks it failed. The rest keeps
running, as compose leaves the other containers up: a balancer routes around a
failed replica, the api answers 503 "redis" while its Redis is gone, and whoever
looks (``scalecube status``) sees which one failed and why. Stopping everything
would turn one bad component into a full outage. A component that cannot start
at ``up`` time still fails ``up`` (``LocalStack.start``): that is a broken
command line or machine, not an outage to ride out.

A death is "young" from readiness, not from launch: a cluster that takes 20 s to
fail its start on a busy machine is still a failed start, never a stable run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cluster.crashes import CrashPolicy
from infra.local.components import Component
from infra.local.pids import ProcessRef, log_tail
from infra.local.stack import describe_exit

RUNNING, STARTING, RESTARTING, FAILED = "running", "starting", "restarting", "failed"
SLOT = 0  # CrashPolicy keeps a streak per slot; a component is one slot


@dataclass(frozen=True)
class RestartPolicy:
    """The local stack's restart rule; these defaults are its one definition."""

    backoff_base: float = 0.5  # seconds before restarting a component that died young; doubles each time
    backoff_cap: float = 8.0  # a crash-looping component is retried at least this often, until given up
    min_uptime: float = 10.0  # serving this long = not crash-looping: restarted at once, its streak forgotten
    max_crashes: int = 5  # young deaths within ``window`` before giving up on it
    # Holds max_crashes failed starts of a slow cluster (seconds each on a busy 2-core box) plus their backoffs.
    window: float = 120.0

    def crash_policy(self) -> CrashPolicy:
        return CrashPolicy(
            max_crashes=self.max_crashes,
            window=self.window,
            min_uptime=self.min_uptime,
            backoff_base=self.backoff_base,
            backoff_cap=self.backoff_cap,
        )


@dataclass(frozen=True)
class Exit:
    """One death of a component, as ``scalecube status`` shows it (``last_exit``)."""

    how: str  # "killed by SIGKILL", "exit code 1", "failed to start: ..."
    code: int | None  # the exit code (negative: the signal); None when unknown (it never ran)
    at: str  # when it was noticed, ISO 8601 UTC
    uptime: float  # seconds it had been serving (ready); 0 if it never was
    log_tail: str


class RestartReporter(Protocol):
    """Tells the user about each death, restart, recovery and give-up, with the dead one's log tail."""

    def component_exited(self, name: str, how: str, log_path: Path, tail: str, restart_in: float) -> None: ...
    def component_restarted(self, name: str, pid: int | None, restarts: int) -> None: ...
    def component_back(self, name: str, restarts: int) -> None: ...
    def component_failed(self, name: str, why: str, log_path: Path, tail: str) -> None: ...


class Keeper:
    """Keeps one component of a ready stack running. The supervisor calls ``tick()`` on every watch
    interval; it returns True when something changed that the state file should record.

    States: running (serving), restarting (dead, waiting out its backoff), starting (restarted, not
    ready yet), failed (given up on).
    """

    def __init__(
        self,
        component: Component,
        reporter: RestartReporter,
        policy: RestartPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.component = component
        self.reporter = reporter
        self.policy = policy or RestartPolicy()
        self.state = RUNNING  # it was ready when the stack was
        self.restarts = 0
        self.last_exit: Exit | None = None
        self.failure = ""  # why it was given up on
        self._crashes = self.policy.crash_policy()
        self._clock = clock
        self._ready_at: float | None = clock()
        self._restart_at = 0.0

    def tick(self) -> bool:
        if self.state in (RUNNING, STARTING):
            code = self.component.poll()
            if code is not None:
                self._died(describe_exit(code), code)
                return True
            if self.state == STARTING and self.component.ready():
                self.state, self._ready_at = RUNNING, self._clock()
                self.reporter.component_back(self.component.name, self.restarts)
                return True
            return False
        if self.state == RESTARTING and self._clock() >= self._restart_at:
            self._restart()
            return True
        return False

    def describe(self) -> dict[str, Any]:
        """What the state file adds to the component's own record."""
        return {
            "state": self.state,
            "restarts": self.restarts,
            "last_exit": asdict(self.last_exit) if self.last_exit else None,
            "failure": self.failure or None,
        }

    def _died(self, how: str, code: int | None) -> None:
        now = self._clock()
        uptime = now - self._ready_at if self._ready_at is not None else 0.0
        self._ready_at = None
        name, log_path = self.component.name, self.component.log_path
        kill_leftovers_of(self.component)  # a cluster's workers, HAProxy's worker: they would hold its port
        tail = log_tail(log_path)
        self.last_exit = Exit(how, code, datetime.now(UTC).isoformat(timespec="seconds"), round(uptime, 1), tail)
        if uptime >= self.policy.min_uptime:
            self._crashes.stable(SLOT)  # only young deaths count towards giving up
            delay = 0.0
        else:
            delay = self._crashes.record(SLOT, uptime, now)
            if self._crashes.exhausted():
                self.state = FAILED
                self.failure = (
                    f"{self._crashes.recent} deaths within {self.policy.window:g}s, each before it had "
                    f"served {self.policy.min_uptime:g}s; the last: {how}"
                )
                self.reporter.component_failed(name, self.failure, log_path, tail)
                return
        self.state, self._restart_at = RESTARTING, now + delay
        self.reporter.component_exited(name, how, log_path, tail, delay)

    def _restart(self) -> None:
        self.restarts += 1
        try:
            self.component.start()  # same command line, address, port and data dir as before
        except (OSError, RuntimeError) as exc:
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0].rstrip(":")  # the log's tail follows
            self._died(f"failed to start: {first_line}", getattr(exc, "returncode", None))  # RedisExited has one
            return
        self.state = STARTING
        self.reporter.component_restarted(self.component.name, self.component.describe().get("pid"), self.restarts)


def kill_leftovers_of(component: Component) -> list[int]:
    """SIGKILL what a dead component's process left in its process group (each component leads its own), as
    a container's processes die with its PID 1; returns their pids."""
    record = component.describe()
    if not record.get("pid") or not record.get("started"):
        return []
    return ProcessRef(record["pid"], record["started"]).kill_group()
