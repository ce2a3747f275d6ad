"""The cluster against its peers (``scalecube bench peers``): the same api app, the same load, one run.

Targets: ``scalecube serve`` (rr and os) vs ``uvicorn --workers N``, gunicorn with uvicorn's worker,
gunicorn's own asgi worker and granian, each with N workers, all started at once and loaded in
interleaved rounds (A B C D E, A B C D E, ...), medians reported. Two phases:
- ``/``: many keep-alive connections — throughput, p50/p99;
- ``/cpu``: a fixed, moderate number of connections on CPU-bound requests — p99, where an uneven
  split of connections over workers shows up as queueing.

Load comes from wrk (C, not the bottleneck) with a Lua tally of ``X-Served-By``, so every run also
gives the per-worker spread of requests. Every server is stopped by pid, its workers too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import psutil

from cluster.cpus import available_cpus
from infra.local.ports import free_port
from infra.local.processes import ManagedProcess, serve_argv
from infra.local.redis_server import RedisServer
from kit import secrets as secret_values
from loadtests.drivers import UNKNOWN, LoadSummary, median, run_wrk, write_script, wrk_available
from services.api.clone import DEFAULT_ITERATIONS

API = "services.api.app:app"
HOST = "127.0.0.1"
KEEP_ALIVE = 20  # seconds: ``scalecube serve``'s default, given to every peer that takes one
ROOT, CPU = "/", "/cpu"

# The targets: throughput at least the best peer's, /cpu p99 at most 0.8x the best peer's, spread at most 5 %.
THROUGHPUT_AT_LEAST = 1.0
CPU_P99_AT_MOST = 0.8
SPREAD_AT_MOST = 0.05
JUDGED = "scalecube rr"  # the default policy is the one judged; os is shown beside it


class BenchError(RuntimeError):
    """The bench cannot run or a server misbehaved: a message for the user, no traceback."""


@dataclass(frozen=True)
class Peer:
    name: str
    argv: Callable[[int, int, Path], list[str]]  # (workers, port, workdir) -> command line
    settings: str  # how keep-alive and logs are set, for the report
    needs: tuple[str, ...] = ()  # modules that must import
    ours: bool = False

    def missing(self) -> str | None:
        absent = [m for m in self.needs if _find_spec(m) is None]
        return f"not installed: {', '.join(absent)}" if absent else None


def _find_spec(module: str) -> Any:
    try:
        return importlib.util.find_spec(module)
    except ImportError:
        return None


def _scalecube(policy: str) -> Peer:
    return Peer(
        f"scalecube {policy}",
        lambda n, port, workdir: serve_argv(
            API, workers=n, policy=policy, host=HOST, port=port, control=workdir / f"cluster-{port}.sock"
        ),
        f"keep-alive {KEEP_ALIVE}s (--keep-alive default), no access log, uvloop + httptools",
        ours=True,
    )


PEERS: tuple[Peer, ...] = (
    _scalecube("rr"),
    _scalecube("os"),
    Peer(
        "uvicorn",
        lambda n, port, _: [
            sys.executable,
            "-m",
            "uvicorn",
            API,
            "--workers",
            str(n),
            "--host",
            HOST,
            "--port",
            str(port),
            "--http",
            "httptools",
            "--loop",
            "uvloop",
            "--timeout-keep-alive",
            str(KEEP_ALIVE),
            "--no-access-log",
            "--no-server-header",
            "--log-level",
            "warning",
        ],
        f"--timeout-keep-alive {KEEP_ALIVE}, --no-access-log, --no-server-header, uvloop + httptools",
        needs=("uvicorn", "uvloop", "httptools"),
    ),
    Peer(
        "gunicorn + uvicorn worker",
        lambda n, port, _: [
            sys.executable,
            "-m",
            "gunicorn",
            API,
            "-k",
            "uvicorn.workers.UvicornWorker",
            "-w",
            str(n),
            "-b",
            f"{HOST}:{port}",
            "--keep-alive",
            str(KEEP_ALIVE),
            "--log-level",
            "warning",
        ],
        f"--keep-alive {KEEP_ALIVE}, access log off (gunicorn's default); uvicorn.workers (deprecated for the "
        "uvicorn-worker package, still shipped) picks uvloop + httptools",
        needs=("gunicorn", "uvicorn.workers"),
    ),
    Peer(
        "gunicorn asgi worker",
        lambda n, port, _: [
            sys.executable,
            "-m",
            "gunicorn",
            API,
            "-k",
            "asgi",
            "-w",
            str(n),
            "-b",
            f"{HOST}:{port}",
            "--keep-alive",
            str(KEEP_ALIVE),
            "--log-level",
            "warning",
        ],
        f"--keep-alive {KEEP_ALIVE}, access log off (gunicorn's default); gunicorn's own ASGI worker (-k asgi)",
        needs=("gunicorn.workers.gasgi",),
    ),
    Peer(
        "granian",
        lambda n, port, _: [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--workers",
            str(n),
            "--host",
            HOST,
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "1",
            "--no-ws",
            "--no-access-log",
            "--log-level",
            "warning",
            API,
        ],
        "HTTP/1 keep-alive on (granian has no idle timeout option), --no-access-log, uvloop",
        needs=("granian", "uvloop"),
    ),
)


class Server:
    """One target running: its master, its workers, its log; ``stop()`` leaves no process behind."""

    def __init__(self, peer: Peer, workers: int, workdir: Path, env: dict[str, str]) -> None:
        self.peer = peer
        self.workers = workers
        self.port = free_port(HOST)
        self.url = f"http://{HOST}:{self.port}"
        self.argv = peer.argv(workers, self.port, workdir)
        slug = peer.name.replace(" ", "-").replace("+", "")
        self.process = ManagedProcess(self.argv, env=env, log_path=workdir / f"{slug}.log")
        self.seen: dict[int, psutil.Process] = {}  # every process of its tree seen, to stop by pid
        self.workers_seen_in_warm_up = 0

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._answers("/readyz"):
            if self.process.proc.poll() is not None:
                raise BenchError(f"{self.peer.name} exited with {self.process.proc.returncode}:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.peer.name} did not answer /readyz within {timeout:g}s:\n{self._log_tail()}")
            time.sleep(0.1)
        self.remember_tree()

    def _answers(self, path: str) -> bool:
        try:
            return httpx.get(self.url + path, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def warm_up(self, script: Path, connections: int, tries: int = 5) -> None:
        """Load until every worker has answered (or ``tries`` seconds): a worker still importing the app
        would otherwise sit out the first round. Some servers never spread, so this does not insist."""
        for _ in range(tries):
            run = run_wrk(self.url + ROOT, script=script, seconds=1, connections=connections, timeout=10)
            self.workers_seen_in_warm_up = len(set(run.served) - {UNKNOWN})
            if self.workers_seen_in_warm_up >= self.workers:
                break
        self.remember_tree()

    def connections_held(self) -> Held:
        """Client connections each worker of the tree holds right now, busiest first, and those the master
        holds: whether the connections were split evenly, to set beside how the requests were split (Linux:
        ss and /proc).

        Each connection counts once, for the first process of the tree holding it, workers before the master:
        a master that hands connections over holds each one for a moment after passing it on, and a snapshot
        taken then would count it twice (seen under load: 65 of wrk's 64, the master holding the extra one).
        What the master alone holds is not yet handed over, so it is no worker's (seen on a busy machine:
        32/25 among the workers, 7 still at the master)."""
        established = established_sockets(self.port)
        tree = self._tree()
        if not established or not tree:
            return Held([], 0)
        counts = []
        for proc in tree[1:]:
            held = socket_inodes(proc.pid) & established
            established -= held
            counts.append(len(held))
        master = len(socket_inodes(tree[0].pid) & established)
        return Held(sorted((n for n in counts if n), reverse=True), master)

    def _tree(self) -> list[psutil.Process]:
        try:
            master = psutil.Process(self.process.pid)
            return [master, *master.children(recursive=True)]
        except psutil.Error:
            return []

    def remember_tree(self) -> None:
        for proc in self._tree():
            self.seen.setdefault(proc.pid, proc)

    def begin_stop(self) -> None:
        """SIGTERM to the master, without waiting: servers stop side by side, then ``stop()`` waits."""
        self.remember_tree()
        self.process.signal(signal.SIGTERM)

    def stop(self) -> None:
        self.remember_tree()
        self.process.stop()
        # A master that stops before its workers, or is killed, leaves them to init: end those by pid.
        left = [proc for pid, proc in self.seen.items() if pid != self.process.pid and _alive(proc)]
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, still = psutil.wait_procs(left, timeout=5)
        for proc in still:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(still, timeout=5)

    def _log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.process.log().splitlines()[-lines:])


def established_sockets(port: int) -> set[int]:
    """Inodes of the established TCP sockets on local ``port``: ``ss`` filters in the kernel, where
    psutil would parse every socket of the machine (tens of milliseconds of CPU on a busy one)."""
    try:
        out = subprocess.run(
            ["ss", "-tnHe", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return {int(inode) for inode in re.findall(r"\bino:(\d+)", out)}


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Held(NamedTuple):
    """One snapshot of a server's client connections: per worker (busiest first), and at the master."""

    workers: list[int]
    master: int

    @property
    def total(self) -> int:
        return sum(self.workers) + self.master


@dataclass
class PhaseResult:
    """One target in one phase over all rounds: medians, and each round's figures."""

    rps: float | None
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    spread: float | None  # median over rounds of (max - min) / mean per-worker requests
    runs: list[float] = field(default_factory=list)  # requests/s per round
    spreads: list[float | None] = field(default_factory=list)
    per_worker: list[list[int]] = field(default_factory=list)  # per round, busiest first, unseen workers as 0
    connections_per_worker: list[list[int]] = field(default_factory=list)  # per round, fullest snapshot
    connections_at_master: list[int] = field(default_factory=list)  # per round, not yet handed to a worker
    vs_best_peer: float | None = None  # rps (/) or p99 (/cpu) over the best peer's


@dataclass
class Verdict:
    target: str
    value: float | None
    limit: float
    holds: bool | None  # None: could not be measured


@dataclass
class PeersReport:
    workers: int
    cpus: int
    seconds: float
    rounds: int
    connections: int
    cpu_connections: int
    cpu_iterations: int
    driver: str = ""
    loadavg_before: list[float] = field(default_factory=list)
    loadavg_after: list[float] = field(default_factory=list)
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)  # command line, settings, pids, warm-up
    skipped: dict[str, str] = field(default_factory=dict)
    phases: dict[str, dict[str, PhaseResult]] = field(default_factory=dict)
    best_peer: dict[str, str | None] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(v.holds is False for v in self.verdicts)


def choose(names: list[str] | None = None) -> tuple[list[Peer], dict[str, str]]:
    """The peers to run and, for the others, why not (not installed, or not asked for)."""
    chosen, skipped = [], {}
    for peer in PEERS:
        if names is not None and peer.name not in names:
            skipped[peer.name] = "not selected"
        elif reason := peer.missing():
            skipped[peer.name] = reason
        else:
            chosen.append(peer)
    return chosen, skipped


def run(
    *,
    seconds: float = 8.0,
    rounds: int = 3,
    workers: int | None = None,
    connections: int = 64,
    cpu_connections: int = 8,
    cpu_iterations: int = DEFAULT_ITERATIONS,
    names: list[str] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> PeersReport:
    if not wrk_available():
        raise BenchError("wrk is not installed: this bench needs it (apt-get install wrk)")
    workers = workers or available_cpus()
    report = PeersReport(
        workers,
        available_cpus(),
        seconds,
        rounds,
        connections,
        cpu_connections,
        cpu_iterations,
        driver=f"{wrk_version()}, 2 threads, Lua tally of X-Served-By",
        loadavg_before=_loadavg(),
    )
    peers, report.skipped = choose(names)
    if not any(p.ours for p in peers) or not any(not p.ours for p in peers):
        raise BenchError("need at least one scalecube target and one peer")
    paths = {ROOT: (ROOT, connections), CPU: (f"{CPU}?iterations={cpu_iterations}", cpu_connections)}
    with tempfile.TemporaryDirectory(prefix="scalecube-bench-") as tmp, RedisServer() as redis:
        workdir = Path(tmp)
        script = write_script(workdir)
        env = {
            "REDIS_URL": redis.url,
            "SESSION_SECRET": secret_values.generate(),
            "LOG_LEVEL": "warning",
            "SCALECUBE_RUN_DIR": str(workdir),
        }
        servers: list[Server] = []
        try:
            progress(f"starting {len(peers)} servers, {workers} workers each: {', '.join(p.name for p in peers)}")
            for peer in peers:  # all up at once: idle ones cost next to nothing
                servers.append(Server(peer, workers, workdir, env))
            for server in servers:
                server.wait_ready()
            progress("warming up (until every worker has answered)")
            with ThreadPoolExecutor(len(servers)) as pool:  # side by side: only a bound on startup time
                list(pool.map(lambda server: server.warm_up(script, connections), servers))
            runs, held = interleave(servers, paths, script, rounds=rounds, seconds=seconds, progress=progress)
        finally:
            progress("stopping the servers")
            for server in servers:
                server.begin_stop()
            for server in servers:
                server.stop()
        for server in servers:
            report.targets[server.peer.name] = {
                "command": " ".join(server.argv),
                "settings": server.peer.settings,
                "master_pid": server.process.pid,
                "pids": sorted(server.seen),
                "workers_seen_in_warm_up": server.workers_seen_in_warm_up,
            }
    report.loadavg_after = _loadavg()
    report.phases = {
        phase: {name: summarise(r, workers, held[phase][name]) for name, r in by_target.items()}
        for phase, by_target in runs.items()
    }
    judge(report, {p.name for p in peers if not p.ours})
    return report


Rounds = dict[str, dict[str, list[Any]]]  # phase -> target -> one entry per round


def interleave(
    servers: list[Server],
    paths: dict[str, tuple[str, int]],
    script: Path,
    *,
    rounds: int,
    seconds: float,
    progress: Callable[[str], None],
) -> tuple[Rounds, Rounds]:
    """Round after round, each phase on every server in turn (A B C, A B C, ...), so drift and noisy
    neighbours hit every target alike. The wrk runs, and the connections per worker of each."""
    runs: Rounds = {phase: {s.peer.name: [] for s in servers} for phase in paths}
    held: Rounds = {phase: {s.peer.name: [] for s in servers} for phase in paths}
    for number in range(1, rounds + 1):
        for phase, (path, connections) in paths.items():
            progress(f"round {number}/{rounds}: {phase}, {connections} connections, {len(servers)} × {seconds:g}s")
            for server in servers:
                tallied, connections_held = measure(server, server.url + path, script, seconds, connections)
                runs[phase][server.peer.name].append(tallied)
                held[phase][server.peer.name].append(connections_held)
    return runs, held


def measure(server: Server, url: str, script: Path, seconds: float, connections: int) -> tuple[LoadSummary, Held]:
    """One wrk run, and the connections each worker held: of snapshots taken through the run, the fullest
    (wrk may still be connecting at any one moment on a busy machine)."""
    fullest = Held([], 0)
    finished = threading.Event()

    def sample() -> None:
        nonlocal fullest
        while not finished.wait(min(0.5, max(1, round(seconds)) / 4)):
            snapshot = server.connections_held()
            if snapshot.total > fullest.total:
                fullest = snapshot

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run = run_wrk(url, script=script, seconds=seconds, connections=connections, timeout=10)
    finally:
        finished.set()
        sampler.join()
    return run, fullest


def spread(served: dict[str, int], workers: int) -> float | None:
    """(max - min) / mean of the requests each of ``workers`` served; a worker never seen served 0.

    0 is a perfect split; with 2 workers 0.05 is 51.25 % / 48.75 %, and 2.0 is one worker doing all.
    """
    counts = [n for who, n in served.items() if who != UNKNOWN]
    counts += [0] * max(0, workers - len(counts))
    total = sum(counts)
    if not total:
        return None
    return (max(counts) - min(counts)) / (total / len(counts))


def summarise(runs: list[LoadSummary], workers: int, held: list[Held] | None = None) -> PhaseResult:
    spreads = [spread(r.served, workers) for r in runs]
    return PhaseResult(
        rps=median([r.rps for r in runs]),
        p50_ms=median([r.p50_ms for r in runs]),
        p99_ms=median([r.p99_ms for r in runs]),
        errors=sum(r.errors for r in runs),
        spread=median(spreads),
        runs=[round(r.rps, 1) for r in runs],
        spreads=[None if s is None else round(s, 4) for s in spreads],
        per_worker=[sorted(r.served.values(), reverse=True) + [0] * max(0, workers - len(r.served)) for r in runs],
        connections_per_worker=[h.workers + [0] * max(0, workers - len(h.workers)) for h in held or []],
        connections_at_master=[h.master for h in held or []],
    )


def judge(report: PeersReport, peer_names: set[str]) -> None:
    """Ratios to the best peer for every target, and the issue's targets judged on ``JUDGED``."""
    root, cpu = report.phases[ROOT], report.phases[CPU]
    best_root = max((n for n in peer_names if root[n].rps), key=lambda n: root[n].rps or 0, default=None)
    best_cpu = min((n for n in peer_names if cpu[n].p99_ms), key=lambda n: cpu[n].p99_ms or 0, default=None)
    report.best_peer = {ROOT: best_root, CPU: best_cpu}
    for row in root.values():
        row.vs_best_peer = _ratio(row.rps, root[best_root].rps) if best_root else None
    for row in cpu.values():
        row.vs_best_peer = _ratio(row.p99_ms, cpu[best_cpu].p99_ms) if best_cpu else None
    if JUDGED not in root:
        return
    throughput = root[JUDGED].vs_best_peer
    p99 = cpu[JUDGED].vs_best_peer
    report.verdicts = [
        Verdict(
            f"{JUDGED}: requests/s on / ≥ best peer's",
            throughput,
            THROUGHPUT_AT_LEAST,
            None if throughput is None else throughput >= THROUGHPUT_AT_LEAST,
        ),
        Verdict(
            f"{JUDGED}: p99 on /cpu ≤ {CPU_P99_AT_MOST}× best peer's",
            p99,
            CPU_P99_AT_MOST,
            None if p99 is None else p99 <= CPU_P99_AT_MOST,
        ),
    ]
    for phase, rows in report.phases.items():
        value = rows[JUDGED].spread
        report.verdicts.append(
            Verdict(
                f"{JUDGED}: per-worker spread of requests on {phase} ≤ {SPREAD_AT_MOST:.0%}",
                value,
                SPREAD_AT_MOST,
                None if value is None else value <= SPREAD_AT_MOST,
            )
        )


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def wrk_version() -> str:
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    first = (out.stdout or out.stderr).strip().splitlines()
    return " ".join(first[0].split()[:2]) if first else "wrk"


def as_dict(report: PeersReport) -> dict[str, Any]:
    data = asdict(report)
    data["failed"] = report.failed
    return data


def render(report: PeersReport, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    phases = {
        ROOT: f"GET / — {report.connections} connections",
        CPU: f"GET /cpu?iterations={report.cpu_iterations} — {report.cpu_connections} connections",
    }
    for phase, rows in report.phases.items():
        best = report.best_peer.get(phase)
        title = (
            f"{phases[phase]}; {report.workers} workers each, {report.rounds} interleaved rounds of "
            f"{report.seconds:g}s — load: {report.driver}"
        )
        table = Table(title=title, title_justify="left")
        ratio = "req/s ÷ best peer" if phase == ROOT else "p99 ÷ best peer"
        for column in (
            "target",
            "req/s (median)",
            ratio,
            "p50 ms",
            "p99 ms",
            "errors",
            "spread (median)",
            "requests per worker",
            "connections per worker",
            "req/s per round",
        ):
            table.add_column(column)
        for name, row in rows.items():
            label = f"{name} (best peer)" if name == best else name
            table.add_row(
                label,
                _num(row.rps, "{:.0f}"),
                _num(row.vs_best_peer, "{:.2f}×"),
                _num(row.p50_ms, "{:.2f}"),
                _num(row.p99_ms, "{:.2f}"),
                str(row.errors),
                _num(row.spread, "{:.1%}"),
                " | ".join("/".join(map(str, counts)) for counts in row.per_worker),
                " | ".join(
                    "/".join(map(str, counts)) + (f" (+{master} at the master)" if master else "")
                    for counts, master in zip(row.connections_per_worker, row.connections_at_master, strict=True)
                ),
                " / ".join(f"{r:.0f}" for r in row.runs),
            )
        console.print(table)
    for verdict in report.verdicts:
        state = {True: "[green]holds[/]", False: "[red]does not hold[/]", None: "[yellow]not measured[/]"}[
            verdict.holds
        ]
        value = "—" if verdict.value is None else f"{verdict.value:.3f}"
        console.print(f"{verdict.target}: {value} (limit {verdict.limit:g}) — {state}")
    console.print(
        "spread = (max − min) / mean of the requests each worker served in a run (a worker that served none "
        "counts 0); median over rounds. 0 is an even split; 5 % with 2 workers is 51.25 / 48.75."
    )
    console.print(
        f"load average (1/5/15 min) before {report.loadavg_before}, after {report.loadavg_after}; "
        f"{report.cpus} CPU(s) shared by the servers and wrk — compare ratios, not absolutes."
    )
    for name, reason in report.skipped.items():
        console.print(f"skipped {name}: {reason}")
    for name, target in report.targets.items():
        console.print(f"[dim]{name}: {target['settings']}[/]")


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)
