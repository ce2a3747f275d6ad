"""The local processes a demo measures: one process, one cluster, replicas behind a balancer.

Built from the local stack's own parts (``infra.local``): ``RedisServer``, ``LoopbackTopology``
(replicas on 127.0.0.2.. sharing one port, named by a loopback DNS server, as compose's
``--scale``), ``HaproxyComponent`` / ``PythonLbComponent``. Everything a ``Rig`` starts it
stops in ``close()``, by pid; use it as a context manager.
"""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from infra.local.components import BACKEND_READERS, HaproxyComponent, PythonLbComponent
from infra.local.ports import free_port, shared_free_port
from infra.local.processes import ClusterProcess, ManagedProcess, wait_until
from infra.local.redis_server import RedisServer
from infra.local.stack import haproxy_installed
from infra.local.topology import HOSTS, LoopbackTopology
from kit import secrets as secret_values
from lb.haproxy.runner import HaproxySettings

API = "services.api.app:app"
READY_TIMEOUT = 60.0  # a replica's workers on a busy 2-core machine
DEMO_SECRET = secret_values.generate()  # one per process: every replica a rig starts shares it
GUIDES_CLUSTER = Path(__file__).with_name("guides_cluster.js")  # the guides' Node cluster, for comparison

Balancer = HaproxyComponent | PythonLbComponent


class Rig:
    """Redis plus whatever the demo adds; ``close()`` stops it all in reverse order."""

    def __init__(self, workdir: Path, *, redis: bool = True, keep_logs: Path | None = None) -> None:
        self.workdir = workdir
        self.keep_logs = keep_logs  # where close() copies every log (the workdir is temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        self.redis: RedisServer | None = RedisServer() if redis else None
        self.extra_redis: list[RedisServer] = []  # a service's own Redis (a shard's, the router's, auth's)
        self.processes: list[ManagedProcess] = []
        self.balancers: list[Balancer] = []
        self._topology: LoopbackTopology | None = None
        self.watcher = PidWatcher()
        self._health_port: int | None = None
        if self.redis is not None:
            self.redis.start()

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def api_env(self, **extra: str) -> dict[str, str]:
        env = {"SESSION_SECRET": DEMO_SECRET, "LOG_LEVEL": "warning", "ACCESS_LOG": "0"}
        if self.redis is not None:
            env["REDIS_URL"] = self.redis.url
        return {**env, **extra}

    # -- one process, one cluster ---------------------------------------------------------------

    def single_process(self, env: dict[str, str] | None = None, *, workers: int = 1) -> str:
        """The api as one plain uvicorn process (no master, no workers): the guides' ``node server.js``;
        with ``workers`` > 1, ``uvicorn --workers N`` (its own supervisor; the kernel hands out connections)."""
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            API,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        if workers > 1:
            argv += ["--workers", str(workers)]
        process = ManagedProcess(argv, env=self.api_env(**(env or {})), log_path=self.workdir / f"uvicorn-{port}.log")
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if process.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {process.proc.returncode}:\n{process.log()}")
            import httpx

            return httpx.get(url + "/healthz", timeout=1.0).status_code == 200

        wait_until(ready, READY_TIMEOUT, what="the single api process")
        self.watcher.add_static(process.pid, "127.0.0.1")
        return url

    def guides_node_cluster(self, workers: int, crash_after: str, work_ms: float) -> str | None:
        """The guides' own Node cluster (``guides_cluster.js``), workers crashing after ``crash_after``
        seconds, each /cpu costing ``work_ms``; None when ``node`` is not installed."""
        node = shutil.which("node")
        if node is None:
            return None
        port = free_port()
        env = {"PORT": str(port), "WORKERS": str(workers), "CRASH_AFTER": crash_after, "WORK_MS": f"{work_ms:.3f}"}
        process = ManagedProcess([node, str(GUIDES_CLUSTER)], env=env, log_path=self.workdir / f"node-{port}.log")
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if process.proc.poll() is not None:
                raise RuntimeError(f"node exited with {process.proc.returncode}:\n{process.log()}")
            import httpx

            try:
                return httpx.get(url + "/cpu", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, READY_TIMEOUT, what="the guides' Node cluster")
        return url

    def another_redis(self) -> RedisServer:
        """One more Redis, started; stopped by ``close()`` after every process that uses it."""
        server = RedisServer()
        self.extra_redis.append(server)
        server.start()
        return server

    def cluster(
        self,
        workers: int,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        *,
        app: str = API,
        wait: bool = True,
    ) -> ClusterProcess:
        """``scalecube serve APP`` (the api unless told) on 127.0.0.1 with ``workers`` workers, ready
        (unless ``wait`` is False: several start together, the caller waits for each)."""
        cluster = ClusterProcess(
            app,
            port=free_port(),
            workdir=self.workdir,
            workers=workers,
            args=args,
            env={"SCALECUBE_RUN_DIR": str(self.workdir), **self.api_env(**(env or {}))},
        )
        self.processes.append(cluster)
        if wait:
            cluster.wait_ready(timeout=READY_TIMEOUT)
        self.watcher.watch(cluster, "127.0.0.1")
        return cluster

    # -- replicas behind a balancer -------------------------------------------------------------

    @property
    def health_port(self) -> int:
        """Where every replica's master answers the balancers' checks (shared, as their service port is)."""
        if self._health_port is None:
            self._health_port = shared_free_port(HOSTS)
        return self._health_port

    @property
    def topology(self) -> LoopbackTopology:
        if self._topology is None:
            self._topology = LoopbackTopology(self.workdir / "replicas")
            self._topology.workdir.mkdir(exist_ok=True)
            self._topology.start_dns()
        return self._topology

    def replica(
        self,
        service: str,
        host: str,
        workers: int,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        *,
        publish: bool = True,
        app: str = API,
    ) -> ClusterProcess:
        """A cluster on ``host``:topology port, named ``service`` in the loopback DNS (not waited for).

        ``LoopbackTopology.start`` without its fixed command line: the availability demo needs
        ``--max-crashes 0`` (its workers crash on purpose, faster than the default give-up rate).
        """
        topology = self.topology
        workdir = topology.workdir / f"{service}-{host.rsplit('.', 1)[-1]}"  # short: it holds a unix socket
        workdir.mkdir(exist_ok=True)
        args = [*(args or []), "--health-port", str(self.health_port)]
        cluster = ClusterProcess(
            app,
            host=host,
            port=topology.port,
            workdir=workdir,
            workers=workers,
            args=args,
            env={"SCALECUBE_RUN_DIR": str(workdir), **self.api_env(**(env or {}))},
        )
        topology.clusters[(service, host)] = cluster
        if publish:
            topology.publish(service, host)
        self.watcher.watch(cluster, host)
        return cluster

    def replicas(
        self,
        service: str,
        hosts: Iterable[str],
        workers: int,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        *,
        app: str = API,
    ) -> list[ClusterProcess]:
        clusters = [self.replica(service, host, workers, env, args, app=app) for host in hosts]
        for cluster in clusters:
            cluster.wait_ready(timeout=READY_TIMEOUT)
        return clusters

    def balancer(self, service: str, replicas: int, *, sticky: bool = False, kind: str | None = None) -> Balancer:
        """HAProxy (if installed, else the Python balancer) in front of ``service``; ready with every replica up."""
        kind = kind or ("haproxy" if haproxy_installed() else "python-lb")
        topology = self.topology
        name = f"{kind}-{service}{'-sticky' if sticky else ''}"
        balancer: Balancer
        if kind == "haproxy":
            settings = HaproxySettings(
                bind=f"127.0.0.1:{free_port()}",
                stats_bind=f"127.0.0.1:{free_port()}",
                dns=topology.dns_address,
                api_service=service,
                api_port=topology.port,
                api_health_port=self.health_port,
                sticky=sticky,
                cookie_key=secret_values.generate(),
            )
            balancer = HaproxyComponent(settings, self.workdir, name=name, backends=replicas)
        else:
            balancer = PythonLbComponent(
                self.workdir,
                listen=f"127.0.0.1:{free_port()}",
                admin=f"127.0.0.1:{free_port()}",
                name=name,
                backends=replicas,
                upstream=f"dns:{service}:{topology.port}@{topology.dns_address}",
                sticky=sticky,
                env={"LOG_LEVEL": "warning"},
                check_ports={"api": self.health_port},
            )
        self.balancers.append(balancer)
        balancer.start()
        wait_until(
            lambda: balancer.poll() is None and balancer.ready(),
            READY_TIMEOUT,
            what=f"{name} to see {replicas} replica(s) up",
        )
        return balancer

    def close(self) -> None:
        self.watcher.stop()
        for balancer in reversed(self.balancers):
            balancer.stop()
        if self._topology is not None:
            self._topology.stop()
        for process in reversed(self.processes):
            process.stop()
        for server in reversed(self.extra_redis):
            server.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.keep_logs is not None:
            self._copy_logs(self.keep_logs)

    def _copy_logs(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for log in self.workdir.rglob("*.log"):
            name = "-".join(log.relative_to(self.workdir).parts)
            shutil.copyfile(log, dest / name)


def backend_up(balancer: Balancer, address: str) -> bool:
    """Does ``balancer`` see ``address`` (host:port) as an up backend?"""
    try:
        seen = BACKEND_READERS[balancer.kind](balancer.stats_url, auth=balancer.admin_auth)
        return any(b.address == address and b.up for b in seen)
    except Exception:
        return False


class PidWatcher:
    """Which replica each worker pid belongs to, polled from the clusters' status while a phase runs.

    Workers come and go (crashes, reloads), so a map taken at the end would miss the ones
    that served and died; this polls twice a second from a thread until ``stop()``.
    """

    INTERVAL = 0.5

    def __init__(self) -> None:
        self._owners: dict[int, str] = {}
        self._clusters: list[tuple[ClusterProcess, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add_static(self, pid: int, label: str) -> None:
        with self._lock:
            self._owners[pid] = label

    def watch(self, cluster: ClusterProcess, label: str) -> None:
        with self._lock:
            self._clusters.append((cluster, label))
            self._owners[cluster.pid] = label
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pid-watcher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            self.poll()

    def poll(self) -> None:
        with self._lock:
            clusters = list(self._clusters)
        for cluster, label in clusters:
            if cluster.proc.poll() is not None:
                continue
            try:
                pids = [worker["pid"] for worker in cluster.status()["workers"]]
            except (OSError, ValueError, KeyError):
                continue
            with self._lock:
                self._owners.update({pid: label for pid in pids})

    def replica_of(self, served_by: Iterable[str]) -> dict[str, str]:
        """``host/pid`` values -> their replica's label, for the pids seen."""
        self.poll()
        with self._lock:
            owners = dict(self._owners)
        mapping = {}
        for value in served_by:
            pid = value.rsplit("/", 1)[-1]
            if pid.isdigit() and int(pid) in owners:
                mapping[value] = owners[int(pid)]
        return mapping

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


__all__ = ["API", "HOSTS", "Rig", "backend_up", "haproxy_installed", "restarts"]


def restarts(clusters: Iterable[ClusterProcess]) -> int:
    """Workers the masters have replaced after a crash so far (per slot, summed over the clusters)."""
    total = 0
    for cluster in clusters:
        try:
            workers = cluster.status()["workers"]
        except (OSError, ValueError, KeyError):
            continue
        per_slot: dict[int, int] = {}
        for worker in workers:
            per_slot[worker["slot"]] = max(per_slot.get(worker["slot"], 0), int(worker["restarts"]))
        total += sum(per_slot.values())
    return total
