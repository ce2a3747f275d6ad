"""Balancer-agnostic pieces for the balancer scenarios: start a balancer of some kind in front of a
loopback topology (``infra.local.topology``) and ask it which backends it considers up.

The scenarios (spread, scaling, failover, stickiness) are the same for HAProxy and
the Python balancer; only ``start_balancer(kind, ...)`` knows the difference.
Register another kind in ``STARTERS``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest

from infra.local.components import HaproxyComponent
from infra.local.ports import free_port
from infra.local.processes import wait_until
from lb.haproxy import runner
from infra.local.topology import LoopbackTopology

API = "services.api.app:app"
SESSION_SECRET = "test-secret-long-enough-123"
BALANCER_START_TIMEOUT = 20.0


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


def require_haproxy() -> str:
    """The haproxy binary; skip (saying why) without one — but fail under CI, which installs it."""
    try:
        return runner.find_haproxy()
    except runner.HaproxyNotFound as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {exc}", pytrace=False)
        pytest.skip(str(exc))


# -- balancers -------------------------------------------------------------------


@dataclass(frozen=True)
class ServerState:
    name: str
    host: str  # the replica's address ("" while it has none)
    up: bool


class Balancer(Protocol):
    kind: str
    url: str
    stats_url: str

    @property
    def pid(self) -> int: ...

    def servers(self, backend: str = "api") -> list[ServerState]: ...

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

    def start(self) -> None:
        self.component.check()  # ports free and `haproxy -c` happy, with HAProxy's message if not
        self.component.start()

    def ready(self) -> bool:
        if self.component.poll() is not None:
            raise AssertionError(f"haproxy exited with {self.component.poll()}:\n{self.log()}")
        return self.component.ready()

    @property
    def pid(self) -> int:
        assert self.component.pid is not None
        return self.component.pid

    def stats(self) -> list[dict[str, str]]:
        """The stats CSV: one row per frontend, backend and server (pxname, svname, status, addr, wretr...)."""
        text = httpx.get(self.stats_url + "/;csv", timeout=5).text.removeprefix("# ")
        return list(csv.DictReader(io.StringIO(text)))

    def servers(self, backend: str = "api") -> list[ServerState]:
        return [ServerState(row["svname"], row["addr"].rsplit(":", 1)[0], row["status"].startswith("UP"))
                for row in self.stats()
                if row["pxname"] == backend and row["svname"] not in ("FRONTEND", "BACKEND")]  # fmt: skip

    def backend_stat(self, field: str, backend: str = "api") -> int:
        row = next(row for row in self.stats() if row["pxname"] == backend and row["svname"] == "BACKEND")
        return int(row[field] or 0)

    def log(self) -> str:
        path = self.component.log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self.component.stop()


def _start_haproxy(topology: LoopbackTopology, workdir: Path, *, service: str, sticky: bool, balance: str | None,
                   routes: dict[str, str]) -> HaproxyBalancer:  # fmt: skip
    require_haproxy()
    settings = runner.HaproxySettings(
        bind=f"127.0.0.1:{free_port()}", stats_bind=f"127.0.0.1:{free_port()}", dns=topology.dns_address,
        api_service=service, api_port=topology.port, sticky=sticky, balance=balance, cookie_key="test-cookie-key",
        auth_service=routes.get("auth"), auth_port=topology.port if "auth" in routes else None,
        router_service=routes.get("router"), router_port=topology.port if "router" in routes else None,
    )  # fmt: skip
    balancer = HaproxyBalancer(settings, workdir)
    balancer.start()
    wait_until(balancer.ready, BALANCER_START_TIMEOUT, what="haproxy to listen")
    return balancer


STARTERS: dict[str, Callable[..., Any]] = {"haproxy": _start_haproxy}


def up_hosts(balancer: Balancer, backend: str = "api") -> set[str]:
    return {server.host for server in balancer.servers(backend) if server.up and server.host}


def wait_up(balancer: Balancer, hosts: set[str], backend: str = "api", timeout: float = 15.0) -> None:
    """Until exactly ``hosts`` are up in ``backend``, as the balancer sees it."""
    try:
        wait_until(lambda: up_hosts(balancer, backend) == hosts, timeout, interval=0.1,
                   what=f"{backend} servers up to be {sorted(hosts)}")  # fmt: skip
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; they are {sorted(up_hosts(balancer, backend))}\n{balancer.log()[-3000:]}") \
            from None


@pytest.fixture
def start_balancer(tmp_path: Path) -> Iterator[Callable[..., Balancer]]:
    """``start_balancer(kind, topology, sticky=, balance=, service="api", routes={"auth": name, "router": name})``:
    a balancer whose api backend is ``topology``'s ``service``, once it sees every published replica up."""
    started: list[Balancer] = []

    def start(kind: str, topology: LoopbackTopology, *, sticky: bool = False, balance: str | None = None,
              service: str = "api", routes: dict[str, str] | None = None, wait: bool = True) -> Balancer:  # fmt: skip
        if kind not in STARTERS:
            raise ValueError(f"unknown balancer kind {kind!r}: one of {sorted(STARTERS)}")
        balancer = STARTERS[kind](topology, tmp_path, service=service, sticky=sticky, balance=balance,
                                  routes=routes or {})  # fmt: skip
        started.append(balancer)
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


def replicas_serving(topology: LoopbackTopology, responses: list[httpx.Response]) -> list[str | None]:
    """The replica address behind each response, from its X-Served-By (host/pid)."""
    return topology.hosts_of([response.headers["x-served-by"] for response in responses])
