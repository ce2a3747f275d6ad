"""The foundation's figures, measured side by side in one run (``scalecube bench foundation``).

1. Spread of N new connections over 2 workers: ``rr`` vs ``os``.
2. Failed requests during a rolling reload (SIGUSR2) under load: clients opening a
   new connection per request (like ``ab``), and keep-alive clients.
3. ``/cpu`` throughput: one worker vs one worker per core — the guides' ×N claim.

Everything targets 127.0.0.1, is bounded in time, and stops what it started.
"""

from __future__ import annotations

import collections
import json
import signal
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cluster.cpus import available_cpus
from infra.local.ports import free_port
from infra.local.processes import ClusterProcess, wait_until
from infra.local.redis_server import RedisServer
from kit import secrets as secret_values
from loadtests.drivers import LoadSummary, run_load, run_threads

API = "services.api.app:app"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"


@dataclass
class FoundationReport:
    cpus: int
    spread: dict[str, Any] = field(default_factory=dict)
    reload: dict[str, Any] = field(default_factory=dict)
    cpu_scaling: dict[str, Any] = field(default_factory=dict)


class Bench:
    def __init__(self, workdir: Path, redis_url: str) -> None:
        self.workdir = workdir
        self.env = {
            "REDIS_URL": redis_url,
            "SESSION_SECRET": secret_values.generate(),
            "SCALECUBE_RUN_DIR": str(workdir),
            "LOG_LEVEL": "warning",
        }

    def cluster(self, workers: int, policy: str = "rr") -> ClusterProcess:
        cluster = ClusterProcess(
            API, port=free_port(), workdir=self.workdir, workers=workers, policy=policy, env=self.env
        )
        cluster.wait_ready(timeout=60)
        return cluster


def one_request(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(REQUEST)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1])["pid"]


def spread(cluster: ClusterProcess, connections: int, concurrency: int) -> dict[str, Any]:
    with ThreadPoolExecutor(concurrency) as pool:
        counts = collections.Counter(pool.map(lambda _: one_request(cluster.port), range(connections)))
    per_worker = sorted(counts.values(), reverse=True) + [0] * (cluster.workers - len(counts))
    return {
        "per_worker": per_worker,
        "max_minus_min": per_worker[0] - per_worker[-1],
        "busiest_share": round(per_worker[0] / connections, 3),
    }


def reload_under_load(bench: Bench, seconds: float, connections: int, keepalive: bool) -> dict[str, Any]:
    cluster = bench.cluster(2)
    try:
        before = cluster.listening_pids()
        result: dict[str, LoadSummary] = {}
        load = threading.Thread(
            target=lambda: result.setdefault("load", _load(cluster.url, seconds, connections, keepalive))
        )
        load.start()
        time.sleep(seconds / 4)
        cluster.signal(signal.SIGUSR2)
        # Bounded on its own: a reload takes about a second whatever the load's length.
        wait_until(
            lambda: not (cluster.listening_pids() & before) and len(cluster.listening_pids()) == 2,
            max(30.0, seconds),
            what="the rolling reload",
        )
        load.join()
        summary = result["load"]
        return {
            "clients": "keep-alive" if keepalive else "new connection per request",
            "driver": summary.driver,
            "requests": summary.requests,
            "failed": summary.errors,
            "workers_replaced": len(before),
        }
    finally:
        cluster.stop()


def _load(url: str, seconds: float, connections: int, keepalive: bool) -> LoadSummary:
    if keepalive:
        return run_load(url, seconds=seconds, connections=connections)
    return run_threads(url, seconds=seconds, connections=connections, keepalive=False)


def cpu_scaling(bench: Bench, seconds: float, connections: int, cores: int) -> dict[str, Any]:
    rows = {}
    for workers in (1, cores):
        cluster = bench.cluster(workers)
        try:
            run_load(cluster.url + "/cpu", seconds=1, connections=connections)  # warm-up
            summary = run_load(cluster.url + "/cpu", seconds=seconds, connections=connections)
        finally:
            cluster.stop()
        rows[f"{workers} worker(s)"] = {
            "rps": round(summary.rps, 1),
            "p50_ms": summary.p50_ms,
            "p99_ms": summary.p99_ms,
            "errors": summary.errors,
            "driver": summary.driver,
        }
    single, many = rows["1 worker(s)"]["rps"], rows[f"{cores} worker(s)"]["rps"]
    return {"rows": rows, "ratio": round(many / single, 2) if single else None}


def run(connections: int = 1000, seconds: float = 10.0, concurrency: int = 16) -> FoundationReport:
    cores = max(2, available_cpus())
    report = FoundationReport(cpus=available_cpus())
    with tempfile.TemporaryDirectory(prefix="scalecube-bench-") as tmp, RedisServer() as redis:
        bench = Bench(Path(tmp), redis.url)
        for policy in ("rr", "os"):
            cluster = bench.cluster(2, policy)
            try:
                report.spread[policy] = {
                    "sequential": spread(cluster, connections, 1),
                    "concurrent": spread(cluster, connections, concurrency),
                }
            finally:
                cluster.stop()
        report.reload["new_connections"] = reload_under_load(bench, seconds, concurrency, keepalive=False)
        report.reload["keepalive"] = reload_under_load(bench, seconds, concurrency, keepalive=True)
        report.cpu_scaling = cpu_scaling(bench, seconds, concurrency, cores)
    return report


def as_dict(report: FoundationReport) -> dict[str, Any]:
    return asdict(report)
