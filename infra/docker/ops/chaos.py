"""``scalecube docker chaos``: kill a random api container (or a random worker inside one) every T
seconds for a bounded duration, under our own bounded GET load, and report what clients saw.

Only the project's own api containers are ever touched: containers are found by the project's
compose labels, and a worker is killed from inside its container (``docker exec``, the container's
own user and pid namespace).

A container killed through the engine is *not* restarted by Docker, whatever its restart policy
(the engine counts a kill as stopped by the user; checked here with Docker 20.10 and the policy
compose derives from ``deploy.restart_policy``, ``always``). A real crash would be restarted, so by
default chaos starts the killed container again itself, like the policy would (``--no-restart``
leaves it down); and at the end compose brings the service back to its count if it is short.
Victims are healthy containers, and the last healthy one is never killed: that would measure an
outage, not resilience.
"""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from infra.docker.engine import DockerError
from infra.docker.ops.project import health, short_name

if TYPE_CHECKING:
    from docker.models.containers import Container
    from rich.console import Console

    from infra.client_load import LoadTally
    from infra.docker.ops.project import Project

SERVICE = "api"
TARGETS = ("container", "worker")
LATENCIES = {"p50": 0.5, "p99": 0.99, "max": 1.0}

# Runs inside the container (python3 is there, procps is not): SIGKILL one cluster worker, chosen by
# a fraction drawn from the caller's seeded generator; prints its pid. (This script's own command line
# holds the words too: hence the exact argv match and the own-pid check.)
_KILL_WORKER = """
import os, signal, sys
pids = []
for entry in os.listdir("/proc"):
    if entry.isdigit() and int(entry) != os.getpid():
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if b"cluster.worker" in f.read().split(b"\\0"):  # python -m cluster.worker …
                    pids.append(int(entry))
        except OSError:
            pass
if not pids:
    sys.exit("no cluster worker found")
pid = sorted(pids)[int(float(sys.argv[1]) * len(pids)) % len(pids)]
os.kill(pid, signal.SIGKILL)
print(pid)
"""


@dataclass(frozen=True)
class Kill:
    at: float  # seconds since the chaos started
    target: str  # container | worker
    container: str  # api-2
    container_id: str
    pid: int | None = None  # the worker's pid inside its container
    note: str = ""  # what happened after (restarted, or why the kill failed)


@dataclass
class ChaosReport:
    target: str
    every: float
    duration: float
    kills: list[Kill]
    ok: int
    failed: int
    errors: dict[str, int]
    elapsed: float
    failures_after_kill: list[int] = field(default_factory=list)  # per kill: failures until the next one
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50, p99, max of every request
    restored: str = ""

    @property
    def total(self) -> int:
        return self.ok + self.failed

    @property
    def failed_percent(self) -> float:
        return 100.0 * self.failed / self.total if self.total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total, "failed_percent": round(self.failed_percent, 4)}


def failures_per_kill(kills: list[Kill], failure_times: list[float], end: float) -> list[int]:
    """How many failures fell between each kill and the next (the last one: until ``end``)."""
    bounds = [k.at for k in kills] + [end]
    return [sum(bounds[i] <= t < bounds[i + 1] for t in failure_times) for i in range(len(kills))]


def kill_times(every: float, duration: float) -> list[float]:
    """Kills at every, 2×every, … strictly before the end: a bounded schedule."""
    if every <= 0 or duration <= 0:
        raise ValueError("--every and --duration must be positive")
    count = int(duration // every)
    return [every * n for n in range(1, count + 1) if every * n < duration]


class Chaos:
    def __init__(
        self,
        project: Project,
        url: str,
        *,
        every: float,
        duration: float,
        target: str = "container",
        concurrency: int = 8,
        keepalive: bool = True,
        seed: int | None = None,
        restart: bool = True,
        say: Callable[[str], None] = lambda _: None,
    ) -> None:
        if target not in TARGETS:
            raise ValueError(f"--target must be one of {', '.join(TARGETS)}")
        self.project = project
        self.url = url.rstrip("/") + "/"
        self.schedule = kill_times(every, duration)
        self.every, self.duration, self.target = every, duration, target
        self.concurrency, self.keepalive, self.restart = concurrency, keepalive, restart
        self.rng = random.Random(seed)
        self.say = say

    def run(self) -> ChaosReport:
        from infra.client_load import LoadGenerator

        self.project.require_service(SERVICE)
        count = len(self.project.containers(SERVICE))
        if count == 0:
            raise DockerError(f"no running {SERVICE} container to kill")
        kills: list[Kill] = []
        # Bounded twice: by time (the duration plus a little) and by count (far above what 2 cores serve).
        load = LoadGenerator(
            self.url,
            concurrency=self.concurrency,
            keepalive=self.keepalive,
            max_requests=int(5_000 * self.duration) + 1000,
            max_seconds=self.duration + 5,
        )
        with load:
            for at in self.schedule:
                time.sleep(max(0.0, load.started + at - time.monotonic()))
                kill = self.kill(time.monotonic() - load.started)
                self.say(
                    f"t={kill.at:5.1f}s killed {kill.target} {kill.container}"
                    f"{f' pid {kill.pid}' if kill.pid else ''} {kill.note}".rstrip()
                )
                kills.append(kill)
            time.sleep(max(0.0, load.started + self.duration - time.monotonic()))
        result: LoadTally = load.result
        report = ChaosReport(
            self.target,
            self.every,
            self.duration,
            kills,
            result.ok,
            result.failed,
            dict(result.errors),
            result.elapsed,
            failures_per_kill(kills, result.failure_times, result.elapsed),
            {name: round(1000 * result.latency(q), 1) for name, q in LATENCIES.items()},
        )
        report.restored = self._restore(count)
        return report

    def _victim(self) -> Container | None:
        """A random healthy api container; for a container kill, never the last healthy one."""
        healthy = [c for c in self.project.containers(SERVICE) if health(c) in ("healthy", "-")]
        if self.target == "container" and len(healthy) <= 1:
            return None
        return self.rng.choice(healthy) if healthy else None

    def kill(self, at: float) -> Kill:
        """Kill one victim now (``at``: seconds into the run, for the report); also what a demo calls
        on its own schedule under its own load (``scalecube demo availability --docker``)."""
        victim = self._victim()
        if victim is None:
            return Kill(at, self.target, "-", "-", note="skipped: one healthy left")
        name, short_id = short_name(victim), victim.short_id
        if self.target == "worker":
            exit_code, output = victim.exec_run(["python3", "-c", _KILL_WORKER, repr(self.rng.random())])
            text = output.decode(errors="replace").strip()
            if exit_code != 0:
                return Kill(at, "worker", name, short_id, note=f"failed: {text[-200:]}")
            return Kill(at, "worker", name, short_id, pid=int(text.splitlines()[-1]), note="its master forks another")
        victim.kill()  # SIGKILL: no drain, like a crash
        victim.wait(timeout=30)  # exited: a start() on a still-running container would do nothing
        if not self.restart:
            return Kill(at, "container", name, short_id, note="left down (--no-restart)")
        started = time.monotonic()
        victim.start()
        return Kill(at, "container", name, short_id, note=f"restarted ({time.monotonic() - started:.1f}s)")

    def _restore(self, count: int) -> str:
        """Back to ``count`` healthy containers (compose starts the stopped ones and waits for health)."""
        running = len(self.project.containers(SERVICE))
        if running < count:
            self.say(
                f"{SERVICE}: {running} of {count} running (Docker does not restart killed containers): "
                "compose up --scale"
            )
        self.project.compose_scale(SERVICE, count)
        if running < count:
            return f"{SERVICE}: compose brought it back from {running} to {count} healthy container(s)"
        return f"{SERVICE}: {count} container(s) running and healthy again"


def render(report: ChaosReport, console: Console) -> None:
    from rich import box
    from rich.table import Table

    def table(title: str) -> Table:
        return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))

    kills = table(f"chaos: a {report.target} killed every {report.every:g}s for {report.duration:g}s")
    for column in ("#", "at", "killed", "container", "pid", "failed after", "note"):
        kills.add_column(column, justify="left" if column in ("killed", "container", "note") else "right")
    for number, (kill, failed) in enumerate(zip(report.kills, report.failures_after_kill, strict=True), 1):
        kills.add_row(
            str(number), f"{kill.at:.1f}s", kill.target, kill.container, str(kill.pid or "-"), str(failed), kill.note
        )
    console.print(kills)
    clients = table("what clients saw")
    for column in ("requests", "ok", "failed", "failed %", "req/s", "p50", "p99", "max", "failure kinds"):
        clients.add_column(column, justify="left" if column == "failure kinds" else "right")
    kinds = ", ".join(f"{kind}: {n}" for kind, n in collections.Counter(report.errors).most_common()) or "-"
    rate = report.total / report.elapsed if report.elapsed else 0.0
    latency = [f"{report.latency_ms.get(name, 0):.0f}ms" for name in LATENCIES]
    clients.add_row(
        str(report.total),
        str(report.ok),
        str(report.failed),
        f"{report.failed_percent:.2f}%",
        f"{rate:.0f}",
        *latency,
        kinds,
    )
    console.print(clients)
    console.print(report.restored)
