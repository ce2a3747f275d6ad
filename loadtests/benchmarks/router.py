"""What the router costs (``scalecube bench router``): ``GET /users/{id}`` through the router vs
straight to the shard that holds the user — same shard, same user, same run, interleaved rounds.

Two phases, as for the balancers:
- throughput: many keep-alive connections; requests/s through each path, and their ratio;
- added latency: one connection, no queueing; the router's p50 minus the shard's.

Through the router a request costs a directory lookup (one ``HGET`` in the router's Redis),
the map (cached in the worker) and one HTTP request to the shard over a pooled keep-alive
connection, on top of everything the shard itself does: the router does at least as much
work per request as the shard. Three placements, each measured the same way:

- ``shared``: every process may run on every core. The router's CPU is taken from the
  shard's, so this measures CPU cost, not what a deployment sees.
- ``split``: the shard and its Redis on CPU 0; the router, its Redis and the load generator
  on CPU 1. The router's core also feeds the load generator, on both paths: through the
  router it carries router + load, direct only load.
- ``router-alone``: the router and its Redis alone on CPU 1; the shard, its Redis and the
  load generator on CPU 0 — the router on hardware of its own, as in the stack (its own
  containers), and the load generator's CPU taken from the shard's core on both paths alike.
  The shard's core is then the bottleneck on both paths as long as the router needs less
  CPU per request than the shard and the load generator together.

With two cores there is no placement where the router, the shard and the load generator each
get a core of their own: the report gives each side's CPU per request (the processes' own
accounting) so the cores the router needs per shard core can be read off whatever the placement.
After the runs it counts the connections open on the shard's port: the router's pool, which
must not exceed its limit (router workers × ``SHARD_MAX_CONNECTIONS``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from infra.local.ports import free_port
from infra.local.processes import ClusterProcess
from infra.local.redis_server import RedisServer
from loadtests.drivers import LoadSummary, median, run_load, summarise
from services.router.settings import RouterSettings

ROUTER = "services.router.app:app"
SHARD = "services.shard.app:app"
TARGETS = ("direct to the shard", "through the router")
TARGET_COST = 0.10  # the target: at most 10% of the throughput
# placement -> the CPUs of (the shard and its Redis, the router and its Redis, the load generator); None: any
PLACEMENTS: dict[str, tuple[set[int] | None, set[int] | None, set[int] | None]] = {
    "shared": (None, None, None),
    "split": ({0}, {1}, {1}),
    "router-alone": ({0}, {1}, {0}),
}
PLACEMENT_NOTES = {
    "shared": "every process on every core",
    "split": "shard on CPU 0, router + load generator on CPU 1",
    "router-alone": "shard + load generator on CPU 0, router alone on CPU 1",
}
# The router's pool per worker, as the bench starts it (SHARD_MAX_CONNECTIONS unset).
ROUTER_POOL_PER_WORKER: int = RouterSettings.model_fields["shard_max_connections"].default


@contextlib.contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """Processes started inside inherit this CPU affinity (None: leave it as it is)."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def can_place(placement: str) -> bool:
    wanted = set().union(*(cpus for cpus in PLACEMENTS[placement] if cpus is not None))
    return not wanted or (hasattr(os, "sched_getaffinity") and wanted <= os.sched_getaffinity(0))


def children_cpu_seconds() -> float:
    """CPU time of this process's finished children (wrk runs as one)."""
    times = os.times()
    return times.children_user + times.children_system


@dataclass
class PlacementResult:
    throughput: dict[str, dict[str, Any]] = field(default_factory=dict)
    latency: dict[str, dict[str, Any]] = field(default_factory=dict)
    ratio: float | None = None  # router rps / direct rps
    cost: float | None = None  # 1 - ratio
    added_p50_ms: float | None = None
    # CPU milliseconds per request (user + system, the processes' own accounting), heavy runs:
    # {"direct to the shard": {"shard": …, "load": …}, "through the router": {"router": …, "shard": …, "load": …}}
    # ("load": the load generator, when it runs as a child process: wrk)
    cpu_ms_per_request: dict[str, dict[str, float]] = field(default_factory=dict)
    # connections established on the shard's port after the runs (the router's pool) and their limit
    shard_connections: int | None = None
    shard_connections_limit: int | None = None


@dataclass
class RouterBenchReport:
    router_workers: int
    shard_workers: int
    connections: int
    seconds: float
    rounds: int
    users: int
    driver: str = ""
    placements: dict[str, PlacementResult] = field(default_factory=dict)


class Rig:
    """A shard (its own Redis) and a router (its own Redis) in front of it; ``close()`` stops all by pid."""

    def __init__(self, workdir: Path, *, router_workers: int, shard_workers: int, placement: str = "shared") -> None:
        self.redis = {"router": RedisServer(), "shard": RedisServer()}
        self.clusters: list[ClusterProcess] = []
        try:
            map_file = workdir / "shard_map.toml"
            map_file.write_text('[shards.shard-a]\ncountries = ["FR"]\n')
            common = {"SCALECUBE_RUN_DIR": str(workdir), "LOG_LEVEL": "warning"}
            shard_cpus, router_cpus, _ = PLACEMENTS[placement]
            with pinned(shard_cpus):
                self.redis["shard"].start()
                shard_env = {**common, "SHARD_NAME": "shard-a", "SHARD_REDIS_URL": self.redis["shard"].url}
                shard = ClusterProcess(SHARD, port=free_port(), workdir=workdir, workers=shard_workers, env=shard_env)
                self.clusters.append(shard)
            with pinned(router_cpus):
                self.redis["router"].start()
                router = ClusterProcess(
                    ROUTER,
                    port=free_port(),
                    workdir=workdir,
                    workers=router_workers,
                    env={
                        **common,
                        "ROUTER_REDIS_URL": self.redis["router"].url,
                        "SHARD_MAP": str(map_file),
                        "SHARD_URLS": f"shard-a={shard.url}",
                    },
                )
                self.clusters.append(router)
            for cluster in self.clusters:
                cluster.wait_ready(timeout=60)
            self.shard_url, self.router_url = shard.url, router.url
            self.shard_port = shard.port
            self.sides = {"shard": (shard, self.redis["shard"]), "router": (router, self.redis["router"])}
        except BaseException:
            self.close()
            raise

    def populate(self, users: int) -> str:
        """Create ``users`` users through the router; the id of one of them (the one every request reads)."""
        with httpx.Client(base_url=self.router_url, timeout=10) as client:
            ids = [
                client.post("/users", json={"name": f"user {n}", "country": "FR"}).json()["id"] for n in range(users)
            ]
            chosen = ids[len(ids) // 2]
            assert client.get(f"/users/{chosen}").json() == httpx.get(f"{self.shard_url}/users/{chosen}").json()
        return chosen

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time so far of each side: the cluster's master and workers, and its Redis."""
        totals: dict[str, float] = {}
        for side, (cluster, server) in self.sides.items():
            pids = {cluster.pid, server.pid, *(w["pid"] for w in cluster.status()["workers"])}
            total = 0.0
            for pid in pids - {None}:
                with contextlib.suppress(psutil.Error):
                    times = psutil.Process(pid).cpu_times()
                    total += times.user + times.system
            totals[side] = total
        return totals

    def shard_connections(self) -> int:
        """Connections established on the shard's port (run when no load generator is connected)."""
        return sum(
            1
            for conn in psutil.net_connections(kind="tcp")
            if conn.laddr and conn.laddr.port == self.shard_port and conn.status == psutil.CONN_ESTABLISHED
        )

    def close(self) -> None:
        for cluster in self.clusters:
            cluster.stop()
        for server in self.redis.values():
            server.stop()


def measure(rig: Rig, user_id: str, *, seconds: float, connections: int, rounds: int) -> PlacementResult:
    urls = dict(zip(TARGETS, (f"{rig.shard_url}/users/{user_id}", f"{rig.router_url}/users/{user_id}"), strict=True))
    for url in urls.values():
        run_load(url, seconds=1, connections=connections)  # warm-up: pools, caches
    heavy: dict[str, list[LoadSummary]] = {t: [] for t in TARGETS}
    light: dict[str, list[LoadSummary]] = {t: [] for t in TARGETS}
    cpu: dict[str, list[dict[str, float]]] = {t: [] for t in TARGETS}
    for _ in range(rounds):  # interleaved, so drift hits both alike
        for target, url in urls.items():
            before, load_before = rig.cpu_seconds(), children_cpu_seconds()
            summary = run_load(url, seconds=seconds, connections=connections)
            after, load_after = rig.cpu_seconds(), children_cpu_seconds()
            heavy[target].append(summary)
            after["load"], before["load"] = load_after, load_before
            cpu[target].append({side: (after[side] - before[side]) * 1000 / max(1, summary.requests) for side in after})
        for target, url in urls.items():
            light[target].append(run_load(url, seconds=max(2.0, seconds / 3), connections=1))
    result = PlacementResult(
        {t: summarise(runs) for t, runs in heavy.items()}, {t: summarise(runs) for t, runs in light.items()}
    )
    sides = {TARGETS[0]: ("shard", "load"), TARGETS[1]: ("router", "shard", "load")}
    result.cpu_ms_per_request = {
        t: {side: median([c[side] for c in cpu[t]]) or 0.0 for side in sides[t]} for t in TARGETS
    }
    direct, routed = (result.throughput[t]["rps"] for t in TARGETS)
    if direct and routed:
        result.ratio = round(routed / direct, 3)
        result.cost = round(1 - result.ratio, 3)
    p50s = [result.latency[t]["p50_ms"] for t in TARGETS]
    if None not in p50s:
        result.added_p50_ms = round(p50s[1] - p50s[0], 3)
    result.shard_connections = rig.shard_connections()
    return result


def run(
    *,
    seconds: float = 5.0,
    connections: int = 32,
    rounds: int = 3,
    router_workers: int = 1,
    shard_workers: int = 1,
    users: int = 1000,
    placements: tuple[str, ...] = tuple(PLACEMENTS),
) -> RouterBenchReport:
    report = RouterBenchReport(router_workers, shard_workers, connections, seconds, rounds, users)
    for placement in placements:
        if not can_place(placement):
            continue  # one CPU: nothing to place apart
        with tempfile.TemporaryDirectory(prefix="scalecube-bench-") as tmp:
            rig = Rig(Path(tmp), router_workers=router_workers, shard_workers=shard_workers, placement=placement)
            try:
                user_id = rig.populate(users)
                with pinned(PLACEMENTS[placement][2]):  # where the load generator runs
                    result = measure(rig, user_id, seconds=seconds, connections=connections, rounds=rounds)
                result.shard_connections_limit = router_workers * ROUTER_POOL_PER_WORKER
                report.placements[placement] = result
            finally:
                rig.close()
    first = next(iter(report.placements.values()), None)
    report.driver = "wrk" if first and _wrk() else "python threads (httpx)"
    return report


def _wrk() -> bool:
    from loadtests.drivers import wrk_available

    return wrk_available()


def as_dict(report: RouterBenchReport) -> dict[str, Any]:
    return asdict(report)


def render(report: RouterBenchReport, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for placement, result in report.placements.items():
        where = PLACEMENT_NOTES[placement]
        title = (
            f"GET /users/{{id}} — {placement}: {where}; router {report.router_workers} worker(s), shard "
            f"{report.shard_workers}, {report.connections} connections, {report.rounds} interleaved rounds of "
            f"{report.seconds:g}s — load: {report.driver}"
        )
        table = Table(title=title, title_justify="left")
        for column in ("path", "requests/s (median)", "p50 ms", "p99 ms", "errors", "per round", "p50 ms @1 conn"):
            table.add_column(column)
        for target, row in result.throughput.items():
            light = result.latency[target]
            table.add_row(
                target,
                f"{row['rps']:.0f}",
                f"{row['p50_ms']:.2f}",
                f"{row['p99_ms']:.2f}",
                str(row["errors"]),
                " / ".join(f"{r:.0f}" for r in row["runs"]),
                f"{light['p50_ms']:.2f}",
            )
        console.print(table)
        routed = result.cpu_ms_per_request.get(TARGETS[1], {})
        direct = result.cpu_ms_per_request.get(TARGETS[0], {})
        console.print(
            f"CPU per request: direct — shard {direct.get('shard', 0):.3f} ms; through the router — router "
            f"{routed.get('router', 0):.3f} ms + shard {routed.get('shard', 0):.3f} ms "
            f"(router / shard: {_ratio(routed.get('router'), routed.get('shard'))}×)"
            + (f"; load generator {direct['load']:.3f} / {routed['load']:.3f} ms" if direct.get("load") else "")
        )
        console.print(
            f"router cores needed per shard core for no throughput cost: about "
            f"{_ratio(routed.get('router'), direct.get('shard'))} (router CPU per request / shard's, direct); "
            f"connections open on the shard after the runs: {result.shard_connections} "
            f"(pool limit {result.shard_connections_limit})"
        )
        verdict = "met" if result.cost is not None and result.cost <= TARGET_COST else "NOT met"
        console.print(
            f"{placement}: router / direct throughput [bold]{result.ratio}×[/] (cost {result.cost:.1%}; "
            f"target ≤ {TARGET_COST:.0%}: {verdict}); added p50 at one connection: "
            f"{result.added_p50_ms} ms\n"
        )


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "?"


def main(argv: list[str] | None = None) -> None:
    """``python -m loadtests.benchmarks.router`` (``scalecube bench router`` runs the same)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--router-workers", type=int, default=1)
    parser.add_argument("--shard-workers", type=int, default=1)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--placement", choices=[*PLACEMENTS, "all"], default="all")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    placements = tuple(PLACEMENTS) if args.placement == "all" else (args.placement,)
    report = run(
        seconds=args.seconds,
        connections=args.connections,
        rounds=args.rounds,
        router_workers=args.router_workers,
        shard_workers=args.shard_workers,
        users=args.users,
        placements=placements,
    )
    if args.json:
        print(json.dumps(as_dict(report), indent=2))
    else:
        render(report)


if __name__ == "__main__":
    main()
