"""The console's backend for the local stack (``scalecube up``): its state as ``scalecube status --json
--state-dir D`` gives it (run as a process, argv only, never a shell), and signals to its processes.

- kill a component (the "container" of the local stack): SIGKILL to its process; the stack's supervisor
  restarts it (its ``restart: unless-stopped``), which the status's ``restarts`` shows;
- kill one worker: SIGKILL to the worker's pid (from its master's control socket, in the status); the master
  replaces it;
- rolling restart: SIGHUP to each master of the service in turn (its rolling reload), the next once every
  worker of this one is new;
- stop a Redis for T seconds: SIGSTOP, then SIGCONT after T seconds (its clients see it hang, as with a
  frozen host; the supervisor does not restart a stopped process);
- scale: the local stack's api replicas are fixed by ``scalecube up --api N``: refused, saying so.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kit.errors import DependencyUnavailable
from services.console.actions import ActionFailed, KillContainer, KillWorker, RollingRestart, Say, Scale, StopRedis

STATUS_TIMEOUT = 15.0
_REPLICA = re.compile(r"-(\d+)$")  # api-1, api-2: replicas of the api (infra/prometheus/local.py's rule too)
T = TypeVar("T")


def service_of(name: str) -> str:
    return _REPLICA.sub("", name)


class LocalBackend:
    def __init__(self, state_dir: str, *, timeout: float = 90.0) -> None:
        self.state_dir = state_dir
        self.timeout = timeout

    def _status(self) -> dict[str, Any]:
        argv = [sys.executable, "-m", "scalecube", "status", "--json"]
        argv += ["--state-dir", self.state_dir] if self.state_dir else []
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=STATUS_TIMEOUT, check=False)
            stack = json.loads(done.stdout)["stack"] if done.returncode == 0 else None
        except (subprocess.TimeoutExpired, ValueError, KeyError) as exc:
            raise DependencyUnavailable("local stack", f"scalecube status: {exc}"[:200]) from exc
        if stack is None:
            raise DependencyUnavailable("local stack", f"no stack in {self.state_dir or 'the default state dir'}")
        return stack

    def _components(self) -> list[dict[str, Any]]:
        return self._status()["components"]

    def _component(self, name: str) -> dict[str, Any]:
        for component in self._components():
            if component["name"] == name:
                return component
        raise ActionFailed(f"no component {name!r} in the local stack")

    def topology(self) -> dict[str, object]:
        now, rows = time.time(), []
        stack = self._status()
        for c in stack["components"]:
            name, alive = c["name"], bool(c.get("alive"))
            number = _REPLICA.search(name)
            cluster = c.get("cluster") or {}
            state = "running" if alive else c.get("state") or "exited"
            health = "-"
            if c.get("kind") == "cluster":
                health = "healthy" if alive and cluster else "starting" if alive else "unhealthy"
            rows.append(
                {
                    "service": service_of(name),
                    "number": int(number.group(1)) if number else 0,
                    "name": name,
                    "id": f"pid {c.get('pid')}",
                    "state": state,
                    "health": health,
                    "uptime_s": round(now - c["started"], 1) if alive and c.get("started") else None,
                    "restarts": int(c.get("restarts") or 0),
                    "ip": c.get("url"),
                    "instance": name,  # the local Prometheus config's `instance` label (infra/prometheus/local.py)
                    "workers": [
                        {"slot": w["slot"], "pid": w["pid"], "state": w["state"]} for w in cluster.get("workers", [])
                    ],
                }
            )
        return {"kind": "local", "project": stack.get("state_dir", self.state_dir), "containers": rows}

    def _wait(self, condition: Callable[[], T | None], what: str) -> T:
        deadline = time.monotonic() + self.timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise ActionFailed(f"{what}: not within {self.timeout:g} s")
            time.sleep(0.3)

    def _signal(self, pid: int, sig: signal.Signals, what: str) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            raise ActionFailed(f"{what} (pid {pid}) is gone already") from None

    @staticmethod
    def _workers(component: dict[str, Any]) -> dict[int, dict[str, Any]]:
        return {int(w["slot"]): w for w in (component.get("cluster") or {}).get("workers", [])}

    def scale(self, action: Scale, say: Say) -> str:
        raise ActionFailed(
            "the local stack's replicas are fixed when it starts (scalecube up --api N); "
            "the compose stack's console scales containers"
        )

    def kill_container(self, action: KillContainer, say: Say) -> str:
        before = self._component(action.container)
        if not before.get("alive"):
            raise ActionFailed(f"{action.container} is not running")
        started = time.monotonic()
        self._signal(int(before["pid"]), signal.SIGKILL, action.container)
        say(f"{action.container} killed (SIGKILL, pid {before['pid']}); down until the supervisor restarts it")

        def back() -> dict[str, Any] | None:
            now = self._component(action.container)
            restarted = int(now.get("restarts") or 0) > int(before.get("restarts") or 0)
            serving = now.get("alive") and (now.get("kind") != "cluster" or now.get("cluster"))
            return now if restarted and serving else None

        now = self._wait(back, f"{action.container} restarted")
        return (
            f"{action.container} replaced by pid {now['pid']}: serving again after {time.monotonic() - started:.1f} s"
        )

    def kill_worker(self, action: KillWorker, say: Say) -> str:
        component = self._component(action.container)
        workers = self._workers(component)
        slot = action.worker if action.worker is not None else min(workers, default=None)
        if slot not in workers:
            raise ActionFailed(f"{action.container} has no worker {slot} (its workers: {sorted(workers)})")
        pid, started = int(workers[slot]["pid"]), time.monotonic()
        self._signal(pid, signal.SIGKILL, f"worker {slot} of {action.container}")
        say(f"worker {slot} (pid {pid}) of {action.container} killed")

        def replaced() -> int | None:
            new = self._workers(self._component(action.container)).get(slot)
            return int(new["pid"]) if new and int(new["pid"]) != pid and new["state"] == "listening" else None

        new_pid = self._wait(replaced, f"worker {slot} of {action.container} replaced")
        return f"worker {slot} of {action.container} replaced by pid {new_pid} after {time.monotonic() - started:.1f} s"

    def rolling_restart(self, action: RollingRestart, say: Say) -> str:
        started, replaced = time.monotonic(), 0
        clusters = [c for c in self._components() if service_of(c["name"]) == action.service and c.get("alive")]
        if not clusters:
            raise ActionFailed(f"no running {action.service} in the local stack")
        for cluster in clusters:
            name, before = cluster["name"], {int(w["pid"]) for w in self._workers(cluster).values()}
            self._signal(int(cluster["pid"]), signal.SIGHUP, name)

            def renewed() -> set[int] | None:
                workers = self._workers(self._component(name)).values()
                pids = {int(w["pid"]) for w in workers}
                fresh = not (pids & before) and all(w["state"] == "listening" for w in workers)
                return pids if fresh and len(pids) >= len(before) else None

            replaced += len(self._wait(renewed, f"every worker of {name} replaced"))
            say(f"{name}: {len(before)} workers replaced")
        seconds = time.monotonic() - started
        return f"{len(clusters)} {action.service} clusters reloaded, {replaced} workers replaced in {seconds:.1f} s"

    def stop_redis(self, action: StopRedis, say: Say) -> str:
        redis = next((c for c in self._components() if c["name"] == action.service and c.get("alive")), None)
        if redis is None:
            raise ActionFailed(f"no running {action.service} in the local stack")
        pid = int(redis["pid"])
        self._signal(pid, signal.SIGSTOP, action.service)
        say(f"{action.service} (pid {pid}) stopped (SIGSTOP); continuing it in {action.seconds:g} s")
        try:
            time.sleep(action.seconds)
        finally:
            self._signal(pid, signal.SIGCONT, action.service)
        return f"{action.service} was stopped {action.seconds:g} s and runs again (SIGCONT)"

    def close(self) -> None:
        pass
