"""Where the outage demo makes its faults: a local stack of its own (``scalecube up``), or the compose stack.

The same four verbs on both, by part name (the local stack's component, compose's service):

- ``freeze`` / ``thaw``: the part stops answering but keeps its sockets (a hung process, a GC pause,
  a VM stalled) — SIGSTOP and SIGCONT to the component's whole process group (a cluster's master and its
  workers, as ``docker pause`` freezes a whole container); or ``container.pause()`` / ``unpause()``.
- ``kill``: SIGKILL to the component's process (a cluster: its master; its workers see it gone and the
  supervisor kills what is left of its group), for the supervisor to restart. Under Docker, SIGKILL to the
  container's main process by its pid on this host: to the engine that is a crash, and the service's
  restart policy (``unless-stopped``) brings it back, counted in the container's ``RestartCount``. Not
  ``container.kill()``: a kill through the engine counts as stopped by the user, and no policy restarts
  it. Where the engine runs elsewhere (its pids are not ours), the demo does that and starts it itself.
- ``ready``: the part answers again — its own check, not the supervisor's or Docker's bookkeeping (a
  healthcheck every 5 s would blur the timeline): a Redis answers PING, a cluster's master answers 200
  at ``/readyz`` on its health port (while a worker listens).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import psutil
import redis

from infra.docker.engine import DockerError
from infra.local.errors import StackError
from infra.local.pids import ProcessRef
from infra.local.ports import free_port
from infra.local.processes import wait_until
from infra.paths import REPO

if TYPE_CHECKING:
    from docker.models.containers import Container

    from infra.docker.ops.project import Project

CHECK_TIMEOUT = 1.0  # one readiness check: a part that takes longer is not ready
UP_TIMEOUT = 240.0  # `scalecube up -d` of the full stack on a busy 2-core machine (each component: 60 s at most)
DOWN_TIMEOUT = 180.0
STATUS_TIMEOUT = 60.0
GONE_TIMEOUT = 10.0  # a SIGKILLed process is gone at once; the kernel may take a moment to reap it


class Faults(Protocol):
    """What the outage demo needs from a stack, by part name."""

    where: str  # "local stack (haproxy)", "compose project scalecube"

    def freeze(self, part: str) -> None: ...
    def thaw(self, part: str) -> None: ...
    def kill(self, part: str) -> str:
        """Kill it and get it restarted (or see to it, under Docker); returns what was done, in words."""
        ...

    def ready(self, part: str) -> bool: ...
    def restarts(self, part: str) -> int | None:
        """How many times its supervisor restarted it (Docker: the container's RestartCount); None where nothing counts them."""
        ...

    def all_running(self) -> bool:
        """Every part is up as far as its supervisor knows (none restarting, none frozen)."""
        ...


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=CHECK_TIMEOUT, socket_connect_timeout=CHECK_TIMEOUT)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def cluster_ready(health_url: str) -> bool:
    try:
        return httpx.get(health_url.rstrip("/") + "/readyz", timeout=CHECK_TIMEOUT, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


# -- a local stack of the demo's own -------------------------------------------------------------


class LocalStack:
    """The full stack (``scalecube up -d --services all``: the api × 2 behind the default balancer, auth, the
    router, two shards, each with its Redis) in a state dir of its own, run and read through the CLI as a
    user would: ``up -d``, ``status --json``, ``down``. Every process seen is remembered and, after ``down``,
    killed by pid if it still runs."""

    API_REPLICAS = 2

    def __init__(self, workdir: Path, *, keep_logs: Path | None = None) -> None:
        self.state_dir = workdir / "state"
        self.keep_logs = keep_logs
        self.port, self.stats_port = free_port(), free_port()
        # A run dir of its own: `status` must not list the clusters other stacks run meanwhile.
        self.env = {**os.environ, "SCALECUBE_RUN_DIR": str(workdir)}
        self.seen: set[ProcessRef] = set()
        self.where = "local stack"
        self.records: dict[str, dict[str, Any]] = {}  # the last `status --json`, by component name
        self.frozen: dict[str, int] = {}  # part -> its process group, stopped and not yet thawed (down() thaws it)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _cli(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scalecube", *args, "--state-dir", str(self.state_dir)],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def up(self) -> str:
        result = self._cli(
            "up",
            "-d",
            "--api",
            str(self.API_REPLICAS),
            "--workers",
            "1",
            "--port",
            str(self.port),
            "--stats-port",
            str(self.stats_port),
            timeout=UP_TIMEOUT,
        )
        with contextlib.suppress(StackError):
            self.components()  # remember what started, even if not all of it
        if result.returncode != 0:
            raise StackError(
                f"scalecube up failed (exit {result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        lb = self.components().get("lb", {})
        self.where = f"local stack ({lb.get('kind', 'no balancer')}, {self.API_REPLICAS} api replicas)"
        return self.url

    def components(self) -> dict[str, dict[str, Any]]:
        """``scalecube status --json``: each component's record, by name."""
        result = self._cli("status", "--json", timeout=STATUS_TIMEOUT)
        if result.returncode != 0:
            raise StackError(f"scalecube status failed (exit {result.returncode}): {result.stderr[-1000:]}")
        stack = json.loads(result.stdout)["stack"]
        if stack is None:  # no state file: `up` never got as far as starting anything
            raise StackError(f"scalecube status found no stack in {self.state_dir}")
        found = self.records = {c["name"]: c for c in stack["components"]}
        self.seen.update(
            ProcessRef(c["pid"], c["started"]) for c in found.values() if c.get("pid") and c.get("started")
        )
        for component in found.values():
            for worker in (component.get("cluster") or {}).get("workers", []):
                if (ref := ProcessRef.of(worker["pid"])) is not None:
                    self.seen.add(ref)
        if stack["supervisor"]["alive"] and (ref := ProcessRef.of(stack["supervisor"]["pid"])) is not None:
            self.seen.add(ref)
        return found

    def all_running(self) -> bool:
        return all(c["alive"] and c["state"] == "running" for c in self.components().values())

    def _ref(self, part: str) -> ProcessRef:
        """The part's process, from the last ``status`` if that one still runs (asking again takes a second or
        more here: the fault would start that much later than the demo says), else from a fresh one."""
        for records in (self.records, None):
            record = (records if records is not None else self.components()).get(part)
            if record is None:
                raise StackError(f"no component {part!r} in the stack: {', '.join(self.records)}")
            if record.get("pid") and record.get("started"):
                ref = ProcessRef(record["pid"], record["started"])
                if ref.alive():
                    return ref
        raise StackError(f"{part} is not running (state {record['state']}): nothing to fail")

    def freeze(self, part: str) -> None:
        ref = self._ref(part)
        if os.getpgid(ref.pid) != ref.pid:  # each component leads its own group; never signal a stranger's
            raise StackError(f"{part} (pid {ref.pid}) does not lead its process group")
        self.frozen[part] = ref.pid
        os.killpg(ref.pid, signal.SIGSTOP)
        # Seen stopped, not assumed: a fault that did not happen would make every claim about it hold.
        wait_until(
            lambda: psutil.Process(ref.pid).status() == psutil.STATUS_STOPPED,
            GONE_TIMEOUT,
            interval=0.01,
            what=f"{part} (pid {ref.pid}) to be stopped",
        )

    def thaw(self, part: str) -> None:
        """SIGCONT to the group ``freeze`` stopped (not looked up again: `status` would ask the frozen master)."""
        pgid = self.frozen.pop(part, None)
        if pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGCONT)

    def kill(self, part: str) -> str:
        ref = self._ref(part)
        ref.signal(signal.SIGKILL)
        if not ref.wait_gone(GONE_TIMEOUT):
            raise StackError(f"{part} (pid {ref.pid}) still runs {GONE_TIMEOUT:g}s after SIGKILL")
        return f"SIGKILL pid {ref.pid}; the supervisor restarts it"

    def ready(self, part: str) -> bool:
        """Asked directly, not through `status` (a second or more per call here): a restarted component keeps
        its address and port, so the record read before the fault still says where to ask."""
        record = self.records[part]
        if record["kind"] == "redis":
            return redis_answers(record["url"])
        return cluster_ready(record["health"])

    def restarts(self, part: str) -> int | None:
        return int(self.components()[part]["restarts"])

    def down(self) -> None:
        """``scalecube down``, then SIGKILL by pid whatever still runs; the logs copied to ``keep_logs``."""
        for part in list(self.frozen):  # a frozen process would not stop: thaw it first
            self.thaw(part)
        try:
            self._cli("down", timeout=DOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        finally:
            for ref in self.seen:
                ref.kill_tree()
            self._keep_logs()

    def _keep_logs(self) -> None:
        if self.keep_logs is None or not self.state_dir.is_dir():
            return
        for log in self.state_dir.rglob("*.log"):
            target = self.keep_logs / log.relative_to(self.state_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                shutil.copyfile(log, target)


# -- the compose stack -------------------------------------------------------------------------------

REDIS_PORT = 6379
HEALTH_PORT = 8001  # the service image's HEALTH_PORT: each container's cluster master answers /readyz there


class ComposeStack:
    """The running compose project's containers, one per part (the first, if a service has several)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.where = f"compose project {project.name}"

    @classmethod
    def connect(cls, name: str) -> ComposeStack:
        from infra.docker.ops.project import Project
        from infra.paths import REPO as COMPOSE_DIR

        return cls(Project.connect(COMPOSE_DIR, name))

    def container(self, part: str) -> Container:
        found = self.project.containers(part, all=True)
        if not found:
            from infra.docker.ops.project import UnknownService

            raise UnknownService(part, self.project.running_services(), self.project.name)
        return found[0]

    def freeze(self, part: str) -> None:
        container = self.container(part)
        container.pause()
        container.reload()
        if container.status != "paused":  # seen paused, not assumed (as the local stack's SIGSTOP)
            raise DockerError(f"{part}: paused, yet its container is {container.status}")

    def thaw(self, part: str) -> None:
        container = self.container(part)
        container.reload()
        if container.status == "paused":
            container.unpause()

    def kill(self, part: str) -> str:
        container = self.container(part)
        container.reload()
        pid = _host_pid(container)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)  # its main process dies: a crash, as the engine sees it
            return f"SIGKILL pid {pid} (its main process, on this host); Docker restarts it (restart policy)"
        container.kill()  # through the engine: counts as stopped by the user, no policy restarts it
        container.wait(timeout=30)
        started = time.monotonic()
        container.start()
        return (
            f"container.kill() (the engine's pids are not this host's); Docker leaves that exited, "
            f"so the demo started it again ({time.monotonic() - started:.1f}s)"
        )

    def ready(self, part: str) -> bool:
        from infra.docker.ops.project import ip_address

        container = self.container(part)
        container.reload()
        address = ip_address(container)
        if container.status != "running" or address is None:
            return False
        if part.endswith("redis"):
            from infra.docker.ops.project import redis_url

            return redis_answers(redis_url(container, address, REDIS_PORT))
        return cluster_ready(f"http://{address}:{HEALTH_PORT}")

    def restarts(self, part: str) -> int | None:
        """Docker's own count of restarts by the restart policy (None where the engine is not on this host:
        the demo restarts what it kills itself there)."""
        container = self.container(part)
        container.reload()
        if _host_pid(container) is None and container.status == "running":
            return None
        return int(container.attrs.get("RestartCount", 0))

    def all_running(self) -> bool:
        return all(container.status == "running" for container in self.project.containers())

    def restore(self, parts: Iterable[str]) -> None:
        """What an interrupted fault may have left behind, put back: a paused container unpaused, a killed one
        started (these parts' containers only, in this project only)."""
        for part in set(parts):
            with contextlib.suppress(Exception):
                container = self.container(part)
                container.reload()
                if container.status == "paused":
                    container.unpause()
                elif container.status in ("exited", "created"):
                    container.start()


def _host_pid(container: Container) -> int | None:
    """The container's main process as a pid of this host, if the engine runs here (its cgroup names the
    container); None for an engine elsewhere (DOCKER_HOST, Docker Desktop's VM) or a container not running."""
    pid = int(container.attrs.get("State", {}).get("Pid") or 0)
    if pid <= 0:
        return None
    try:
        cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    return pid if container.id in cgroup else None


def wait_ready(faults: Faults, part: str, timeout: float) -> float:
    """Poll ``faults.ready(part)`` until it holds; returns when it was first seen (seconds since the epoch)."""
    wait_until(lambda: faults.ready(part), timeout, interval=0.05, what=f"{part} to answer again")
    return time.time()
