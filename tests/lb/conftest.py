"""Balancer-agnostic pieces for the balancer scenarios: start a balancer of some kind in front of a
loopback topology (``infra.local.topology``) and ask it which backends it considers up.

The scenarios (``tests/lb/scenarios``: spread, scaling, failover, stickiness, HTTP
hygiene) are the same for HAProxy and the Python balancer; only
``start_balancer(kind, ...)`` and the ``Balancer`` it returns know the difference.
Register another kind in ``STARTERS``.
"""

from __future__ import annotations

import csv
import io
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.local.components import HaproxyComponent
from infra.local.ports import free_port
from infra.local.processes import ManagedProcess, wait_until
from infra.local.stack import SERVICE_ROUTES
from infra.local.topology import LoopbackTopology
from lb.haproxy import runner
from tests.support.haproxy import HAPROXY_CUT_RESPONSE, require_haproxy

API = "services.api.app:app"
SESSION_SECRET = "test-secret-long-enough-123"
ADMIN_PASSWORD = "test-admin-password"  # both balancers' admin/stats port (user admin)
ADMIN_AUTH = httpx.BasicAuth("admin", ADMIN_PASSWORD)
BALANCER_START_TIMEOUT = 20.0
STICKY_COOKIE = "SCALECUBE_LB"  # both balancers' cookie name


def api_env(redis_url: str, session_backend: str = "redis") -> dict[str, str]:
    return {"REDIS_URL": redis_url, "SESSION_BACKEND": session_backend, "SESSION_SECRET": SESSION_SECRET}


@contextmanager
def loopback_topology(workdir: Path) -> Iterator[LoopbackTopology]:
    """A DNS server on loopback, and whatever clusters the caller adds; all stopped (by pid) on exit."""
    topology = LoopbackTopology(workdir)
    try:
        topology.start_dns()
        yield topology
    finally:
        topology.stop()


# -- balancers -------------------------------------------------------------------


@dataclass(frozen=True)
class ServerState:
    name: str
    host: str  # the replica's address ("" while it has none)
    up: bool


class Balancer(Protocol):
    kind: str
    url: str
    stats_url: str  # asks for admin_auth (HTTP basic auth)
    admin_auth: httpx.BasicAuth

    @property
    def pid(self) -> int: ...

    def ready(self) -> bool:
        """Listening (backends may come later); raises if the process exited."""

    def servers(self, backend: str = "api") -> list[ServerState]: ...

    def retries(self, backend: str = "api") -> int:
        """Requests that went to another backend (or again) after a try failed."""

    def panic(self, backend: str = "api") -> bool:
        """No server of ``backend`` passes its checks, and the balancer routes to them anyway."""

    def panic_requests(self, backend: str = "api") -> int:
        """Requests routed to ``backend`` while it was in panic."""

    def cut_responses(self) -> list[str]:
        """Log lines of responses a backend cut off mid-body: already begun, so nobody can replay them."""

    def log(self) -> str: ...

    def stop(self) -> None: ...


class HaproxyBalancer:
    kind = "haproxy"

    def __init__(self, settings: runner.HaproxySettings, workdir: Path) -> None:
        self.settings = settings
        port = settings.binds()[0].rsplit(":", 1)[-1]
        self.component = HaproxyComponent(settings, workdir, name=f"haproxy-{port}")
        self.url = self.component.url
        self.stats_url = self.component.stats_url
        self.admin_auth = self.component.admin_auth

    def start(self) -> None:
        self.component.check()  # ports free and `haproxy -c` happy, with HAProxy's message if not
        self.component.start()

    def ready(self) -> bool:
        """Listening (replicas may come later, by DNS). Raises if it exited: no point waiting then."""
        if self.component.poll() is not None:
            raise AssertionError(f"haproxy exited with {self.component.poll()}:\n{self.log()}")
        return self.component.ready()

    @property
    def pid(self) -> int:
        assert self.component.pid is not None
        return self.component.pid

    def stats(self) -> list[dict[str, str]]:
        """The stats CSV: one row per frontend, backend and server (pxname, svname, status, addr, wretr...)."""
        text = httpx.get(self.stats_url + "/;csv", timeout=5, auth=self.admin_auth).text.removeprefix("# ")
        return list(csv.DictReader(io.StringIO(text)))

    def servers(self, backend: str = "api") -> list[ServerState]:
        return [
            ServerState(row["svname"], row["addr"].rsplit(":", 1)[0], row["status"].startswith("UP"))
            for row in self.stats()
            if row["pxname"] == backend and row["svname"] not in ("FRONTEND", "BACKEND")
        ]

    def backend_stat(self, field: str, backend: str = "api") -> int:
        row = next(row for row in self.stats() if row["pxname"] == backend and row["svname"] == "BACKEND")
        return int(row[field] or 0)

    def retries(self, backend: str = "api") -> int:
        return self.backend_stat("wretr", backend) + self.backend_stat("wredis", backend)

    def panic(self, backend: str = "api") -> bool:
        # haproxy.cfg's panic: no usable server in X, so the frontend sends X's requests to X_panic.
        return self.backend_stat("act", backend) == 0

    def panic_requests(self, backend: str = "api") -> int:
        return self.backend_stat("stot", f"{backend}_panic")

    def cut_responses(self) -> list[str]:
        return [line for line in self.log().splitlines() if HAPROXY_CUT_RESPONSE.search(line)]

    def log(self) -> str:
        path = self.component.log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self.component.stop()


def _start_haproxy(
    topology: LoopbackTopology,
    workdir: Path,
    *,
    service: str,
    sticky: bool,
    balance: str | None,
    routes: dict[str, str],
    client_cap: int | None = None,
) -> HaproxyBalancer:
    require_haproxy()
    # The checks go to each replica's service port, as the Python balancer's do by default: the topology's
    # clusters have no master health port, and the scenarios steer readiness through the app's own /readyz.
    port = topology.port
    settings = runner.HaproxySettings(
        bind=f"127.0.0.1:{free_port()}",
        stats_bind=f"127.0.0.1:{free_port()}",
        dns=topology.dns_address,
        api_service=service,
        api_port=port,
        api_health_port=port,
        sticky=sticky,
        balance=balance,
        cookie_key="test-cookie-key-0123456",
        admin_password=ADMIN_PASSWORD,
        auth_service=routes.get("auth"),
        auth_port=port if "auth" in routes else None,
        auth_health_port=port if "auth" in routes else None,
        router_service=routes.get("router"),
        router_port=port if "router" in routes else None,
        router_health_port=port if "router" in routes else None,
        max_connections_per_client=client_cap,
    )
    balancer = HaproxyBalancer(settings, workdir)
    balancer.start()
    return balancer


# An access log line (option httplog) of a response that started (200) and was cut by the server ("SD").

# haproxy.cfg's timings, given to the Python balancer, so both are held to the same clock: connect 1 s,
# server 10 s, keep-alive 10 s, whole request head 5 s, 3 retries, health checks and DNS every second.
PYTHON_LIKE_HAPROXY = (
    "--connect-timeout",
    "1",
    "--read-timeout",
    "10",
    "--idle-timeout",
    "10",
    "--header-timeout",
    "5",
    "--retries",
    "3",
    "--health-interval",
    "1",
    "--discovery-interval",
    "1",
)
PYTHON_POLICIES = {"roundrobin": "rr", "leastconn": "leastconn"}  # balance=None: each balancer's default


class PythonBalancer:
    """``scalecube lb`` as its own process; the same questions answered from its admin port and log."""

    kind = "python"

    def __init__(self, args: list[str], workdir: Path) -> None:
        port, admin_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.stats_url = f"http://127.0.0.1:{admin_port}"
        self.admin_auth = ADMIN_AUTH
        argv = [
            sys.executable,
            "-m",
            "scalecube",
            "lb",
            "--listen",
            f"127.0.0.1:{port}",
            "--admin",
            f"127.0.0.1:{admin_port}",
            *PYTHON_LIKE_HAPROXY,
            *args,
        ]
        # The secret set, like HAProxy's cookie key: no warning, and nothing leaks in from the caller's shell.
        self.process = ManagedProcess(
            argv,
            env={"LB_STICKY_SECRET": "test-cookie-key-0123456", "LB_ADMIN_PASSWORD": ADMIN_PASSWORD},
            log_path=workdir / f"python-lb-{port}.log",
        )

    def ready(self) -> bool:
        """Admin port and front door both answer. Raises if it exited: no point waiting then."""
        if self.process.proc.poll() is not None:
            raise AssertionError(f"scalecube lb exited with {self.process.proc.returncode}:\n{self.log()}")
        host, _, port = self.url.removeprefix("http://").rpartition(":")
        try:
            if httpx.get(self.stats_url + "/healthz", timeout=1.0).status_code != 200:
                return False
            socket.create_connection((host, int(port)), timeout=1.0).close()
        except (httpx.HTTPError, OSError):
            return False
        return True

    @property
    def pid(self) -> int:
        return self.process.pid

    def status(self) -> dict[str, Any]:
        return httpx.get(self.stats_url + "/status.json", timeout=5, auth=self.admin_auth).raise_for_status().json()

    def servers(self, backend: str = "api") -> list[ServerState]:
        pool = next(pool for pool in self.status()["pools"] if pool["name"] == backend)
        return [
            ServerState(b["id"], b["address"].rsplit(":", 1)[0], b["healthy"] and not b["removed"])
            for b in pool["backends"]
        ]

    def retries(self, backend: str = "api") -> int:
        # Counted for all upstreams together (per backend too, but a backend DNS dropped is forgotten).
        return self.status()["stats"]["retries"]

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the admin port's /metrics (what Prometheus scrapes)."""
        text = httpx.get(self.stats_url + "/metrics", timeout=5, auth=self.admin_auth).raise_for_status().text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        raise AssertionError(f"no sample {name}{labels} in /metrics")

    def panic(self, backend: str = "api") -> bool:
        return self.metric("scalecube_lb_upstream_panic", upstream=backend) == 1

    def panic_requests(self, backend: str = "api") -> int:
        return int(self.metric("scalecube_lb_upstream_panic_requests_total", upstream=backend))

    def cut_responses(self) -> list[str]:
        return [line for line in self.log().splitlines() if "died mid-response" in line]

    def log(self) -> str:
        return self.process.log()

    def stop(self) -> None:
        self.process.stop()


def _start_python(
    topology: LoopbackTopology,
    workdir: Path,
    *,
    service: str,
    sticky: bool,
    balance: str | None,
    routes: dict[str, str],
    client_cap: int | None = None,
) -> PythonBalancer:
    def dns(name: str) -> str:
        return f"dns:{name}:{topology.port}@{topology.dns_address}"

    args = ["--upstream", f"api={dns(service)}"]
    if balance is not None:
        args += ["--policy", PYTHON_POLICIES[balance]]
    for upstream, name in routes.items():
        args += ["--upstream", f"{upstream}={dns(name)}"]
    # haproxy.cfg's routes, for the upstreams this balancer has (/users/count stays the api's).
    args += [
        arg
        for prefix, upstream in SERVICE_ROUTES
        if upstream in routes or (upstream == "api" and routes)
        for arg in ("--route", f"{prefix}={upstream}")
    ]
    if sticky:
        args.append("--sticky")
    if client_cap is not None:
        args += ["--max-connections-per-client", str(client_cap)]
    return PythonBalancer(args, workdir)


STARTERS: dict[str, Callable[..., Any]] = {"haproxy": _start_haproxy, "python": _start_python}


def up_hosts(balancer: Balancer, backend: str = "api") -> set[str]:
    return {server.host for server in balancer.servers(backend) if server.up and server.host}


def wait_up(balancer: Balancer, hosts: set[str], backend: str = "api", timeout: float = 15.0) -> None:
    """Until exactly ``hosts`` are up in ``backend``, as the balancer sees it."""
    try:
        wait_until(
            lambda: up_hosts(balancer, backend) == hosts,
            timeout,
            interval=0.1,
            what=f"{backend} servers up to be {sorted(hosts)}",
        )
    except TimeoutError as exc:
        raise AssertionError(
            f"{exc}; they are {sorted(up_hosts(balancer, backend))}\n{balancer.log()[-3000:]}"
        ) from None


@pytest.fixture
def start_balancer(tmp_path: Path) -> Iterator[Callable[..., Balancer]]:
    """``start_balancer(kind, topology, sticky=, balance=, service="api", routes={"auth": name, "router": name},
    client_cap=N)``: a balancer whose api backend is ``topology``'s ``service``, once it sees every published
    replica up (``client_cap``: connections one client address may hold; None, the balancer's default)."""
    started: list[Balancer] = []

    def start(
        kind: str,
        topology: LoopbackTopology,
        *,
        sticky: bool = False,
        balance: str | None = None,
        service: str = "api",
        routes: dict[str, str] | None = None,
        wait: bool = True,
        client_cap: int | None = None,
    ) -> Balancer:
        if kind not in STARTERS:
            raise ValueError(f"unknown balancer kind {kind!r}: one of {sorted(STARTERS)}")
        balancer = STARTERS[kind](
            topology,
            tmp_path,
            service=service,
            sticky=sticky,
            balance=balance,
            routes=routes or {},
            client_cap=client_cap,
        )
        started.append(balancer)  # launched: stopped at teardown even if it never gets ready
        deadline = time.monotonic() + BALANCER_START_TIMEOUT
        while not balancer.ready():  # not wait_until: it would swallow ready()'s "it exited"
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the {kind} balancer did not listen within {BALANCER_START_TIMEOUT:g}s:\n{balancer.log()[-3000:]}"
                )
            time.sleep(0.05)
        if wait:
            for backend, name in [("api", service), *(routes or {}).items()]:
                wait_up(balancer, set(topology.records.get(name, [])), backend)
        return balancer

    yield start
    for balancer in started:
        balancer.stop()


# -- traffic ---------------------------------------------------------------------


def fresh_client() -> httpx.Client:
    """Cookies persist, connections do not: every request is balanced anew."""
    return httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


def get_many(url: str, count: int) -> list[httpx.Response]:
    """``count`` sequential GETs, each on a new connection and without cookies."""
    responses = []
    with fresh_client() as client:
        for _ in range(count):
            client.cookies.clear()
            responses.append(client.get(url))
    return responses


def raw(url: str, payload: bytes, *, timeout: float = 5.0) -> bytes:
    """Send raw bytes to a balancer's front door; read until it closes (or the timeout)."""
    host, _, port = url.removeprefix("http://").rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            pass
    return data


def replicas_serving(topology: LoopbackTopology, responses: list[httpx.Response]) -> list[str | None]:
    """The replica address behind each response, from its X-Served-By (host/pid)."""
    return topology.hosts_of([response.headers["x-served-by"] for response in responses])
