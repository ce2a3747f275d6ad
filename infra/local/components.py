"""The parts of the local stack: each one real process with a name, pid, address and log file.

A component only knows how to run itself. Ordering, readiness timeouts and
rolling back a half-started stack are ``LocalStack``'s job (``infra.local.stack``).
"""

from __future__ import annotations

import csv
import io
import os
import re
import secrets
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import httpx

from cluster.config import KILL_GRACE, ClusterConfig
from infra.local import dns, redis_server, sentinel
from infra.local.errors import PortInUse, StackError
from infra.local.pids import ProcessRef
from infra.local.ports import free_port, port_is_free
from infra.local.processes import ManagedProcess, serve_argv
from infra.local.redis_server import APPENDFSYNC, LOG_NAME, RedisServer
from lb.admin import write_password_file
from lb.config import load_config
from lb.haproxy import runner

# How long each graceful stop may take, from its owner's own bound; past it, the stack kills. (`scalecube down`
# waits for their sum.) A component that stops by itself at its bound gets STOP_MARGIN more to exit.
STOP_MARGIN = 5.0
# A cluster master drains its workers for up to drain_timeout (after settle), then gives stragglers
# KILL_GRACE before it SIGKILLs them and exits.
CLUSTER_STOP_TIMEOUT = ClusterConfig.drain_timeout + ClusterConfig.settle + KILL_GRACE
REDIS_START_TIMEOUT = redis_server.START_TIMEOUT
REDIS_STOP_TIMEOUT = redis_server.STOP_TIMEOUT


def _hard_stop_after(config: Path = runner.CONFIG) -> float:
    """haproxy.cfg's ``hard-stop-after`` in seconds: past it, a soft-stopping HAProxy closes what is left."""
    match = re.search(r"^\s*hard-stop-after\s+(\d+)s\s*$", config.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{config}: no `hard-stop-after <N>s` in its global section")
    return float(match.group(1))


HAPROXY_STOP_TIMEOUT = _hard_stop_after() + STOP_MARGIN
# The Python balancer drains for up to timeouts.drain of its shipped configuration (lb/balancer.toml) on SIGTERM.
PYTHON_LB_STOP_TIMEOUT = load_config().timeouts.drain + STOP_MARGIN
DNS_STOP_TIMEOUT = 5.0
RERUN_SENTINEL = "`scalecube up` again (the Sentinels' ports are picked free)"
MAX_UNIX_SOCKET_PATH = 107  # sun_path is 108 bytes on Linux, with the terminating NUL


class Component(Protocol):
    """One process of the stack. ``LocalStack`` drives it: start → ready()… → stop()."""

    name: str
    log_path: Path

    def start(self) -> None:
        """Launch the process. Raise ``OSError``/``RuntimeError`` with a clear message if it cannot."""

    def ready(self) -> bool:
        """Does it serve yet? Polled until True; must not block for long."""

    def poll(self) -> int | None:
        """Its exit code once it has exited (negative: killed by that signal); None while it runs."""

    def stop(self) -> None:
        """Graceful first, SIGKILL after a bounded wait; safe to call twice or before start()."""

    def check(self) -> None:
        """Raise a ``StackError`` (e.g. ``PortInUse``) if it cannot start: run before anything starts."""

    def describe(self) -> dict[str, Any]:
        """What the state file records: name, kind, pid, started, url, log, stop_timeout (the longest a graceful
        stop may take; `scalecube down` waits for the sum), and control (clusters) or stats (balancers)."""

    # Optional: a component with ``start_with_previous = True`` is launched without waiting for the ones
    # launched before it to be ready (it needs none of them to start); ``LocalStack`` still waits for it
    # before the next component without the flag, and at the end. Absent means False.


class _OwnProcess:
    """A component that is one process the stack launches: its current ``ManagedProcess`` (a new one on
    every start; a restart appends to the log), which runs in a session of its own (``detached``):
    Ctrl-C in the terminal reaches only the supervisor, which stops the stack in order."""

    log_path: Path
    _process: ManagedProcess | None = None

    def _launch(
        self, argv: list[str], *, env: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None
    ) -> None:
        self._process = ManagedProcess(
            argv, env=env, environ=environ, log_path=self.log_path, detached=True, append=self._process is not None
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def poll(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    def _stop(self, steps: tuple[tuple[signal.Signals, float], ...]) -> None:
        """Each signal of ``steps`` in turn, waiting a bounded time after each, then SIGKILL to the tree."""
        if self._process is not None:
            self._process.stop(steps=steps)

    def _pid(self) -> dict[str, Any]:
        return _pid(self._process.ref if self._process is not None else None)


class RedisComponent:
    """A ``redis-server`` with its append-only file in its data dir (``state_dir/NAME``).

    The AOF lets a Redis the supervisor restarts come back with its keys — sessions,
    credentials, the shards' users — as a compose container keeps its volume. Each
    ``up`` still starts empty (the first ``start()`` clears what a previous stack left):
    a stack is a fresh demo, and its ``SESSION_SECRET`` is new anyway.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        name: str = "redis",
        port_option: str = "--redis-port",
    ) -> None:
        self.name = name
        self.start_with_previous = True  # start() returns once it answers PING: nothing to overlap with
        self.server = RedisServer(port, host=host, data_dir=data_dir, appendonly=True, new_session=True)
        self.host = host
        self.log_path = data_dir / LOG_NAME
        self._port_option = port_option
        self._ref: ProcessRef | None = None
        self._started_before = False

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        if not self._started_before:
            self.server.clear_data()  # a previous stack's, not ours: restarts keep it from here on
            self._started_before = True
        self.server.start(REDIS_START_TIMEOUT)  # returns once it answers PING
        assert self.server.pid is not None
        self._ref = ProcessRef.of(self.server.pid)

    def ready(self) -> bool:
        return self.server.running

    def poll(self) -> int | None:
        return self.server.returncode

    def stop(self) -> None:
        self.server.stop(REDIS_STOP_TIMEOUT)

    def check(self) -> None:
        ensure_port_free(self.name, self.host, self.server.port, self._port_option)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "redis",
            "url": self.url,
            "log": str(self.log_path),
            "persistence": f"aof appendfsync {APPENDFSYNC}",
            "data": str(self.server.data_dir),
            "stop_timeout": REDIS_STOP_TIMEOUT,
            **_pid(self._ref),
        }


class SentinelNodeComponent(RedisComponent):
    """A data node of the sentinel topology (``scalecube up --redis sentinel``): the first primary (``replicaof``
    None) or its replica. Started again after a death the Sentinel-managed way: once the Sentinels name a
    primary other than this node (``sentinel.primary_for_restart``, bounded), as its replica — so an old
    primary never comes back as a second primary."""

    def __init__(
        self,
        data_dir: Path,
        *,
        sentinels: list[tuple[str, int]],
        replicaof: tuple[str, int] | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        name: str = "redis",
        port_option: str = "--redis-port",
    ) -> None:
        super().__init__(data_dir, port=port, host=host, name=name, port_option=port_option)
        self.start_with_previous = replicaof is None  # a replica waits for its primary to answer first
        self.sentinels = sentinels
        self.server.replicaof = replicaof

    def start(self) -> None:
        if self._started_before:
            me = (self.host, self.server.port)
            self.server.replicaof = sentinel.primary_for_restart(me, self.sentinels)
        super().start()

    def ready(self) -> bool:
        """A primary once it answers; a replica once its link to the primary is up (it holds the data)."""
        if not self.server.running:
            return False
        if self.server.replicaof is None:
            return True
        info = sentinel.role_of((self.host, self.server.port), timeout=0.5) or {}
        return info.get("role") == "master" or info.get("master_link_status") == "up"

    def describe(self) -> dict[str, Any]:
        info = sentinel.role_of((self.host, self.server.port), timeout=0.2) if self.server.running else None
        return {**super().describe(), "kind": "redis", "role": (info or {}).get("role")}


class SentinelComponent(RedisComponent):
    """One of the three Sentinels watching the sessions Redis (``redis-server sentinel.conf --sentinel``)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        master: tuple[str, int],
        port: int = 0,
        host: str = "127.0.0.1",
        name: str = "redis-sentinel",
    ) -> None:
        self.name = name
        self.start_with_previous = True
        self.server = sentinel.SentinelServer(master, port, host=host, data_dir=data_dir, new_session=True)
        self.host = host
        self.log_path = data_dir / LOG_NAME
        self._port_option = RERUN_SENTINEL
        self._ref = None
        self._started_before = False

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.server.port)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.server.port}"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "sentinel",
            "url": self.url,
            "log": str(self.log_path),
            "monitors": f"{sentinel.MASTER_NAME} quorum {sentinel.QUORUM}",
            "data": str(self.server.data_dir),
            "stop_timeout": REDIS_STOP_TIMEOUT,
            **_pid(self._ref),
        }


class DnsComponent(_OwnProcess):
    """The loopback DNS server (``python -m infra.local.dns``), standing in for Docker's: it names the replicas.

    It answers from ``zone.json`` in ``state_dir``, which this component writes from
    ``records`` ({"api": ["127.0.0.2", ...]}) at start and on ``write_zone()`` — the
    server re-reads the file when it changes, so publishing a replica is a file write.
    """

    def __init__(
        self,
        state_dir: Path,
        records: dict[str, list[str]] | None = None,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        name: str = "dns",
        port_option: str = "--dns-port",
    ) -> None:
        self.name = name
        self.start_with_previous = True  # it needs nothing else running
        self.host = host
        self.port = port or free_port(host, udp=True)
        self.address = f"{host}:{self.port}"  # what a balancer is given as its nameserver
        self.url = f"udp://{self.address}"
        self.records = records if records is not None else {}  # the caller may keep and change this dict
        self.zone_path = state_dir / "zone.json"
        self.log_path = state_dir / f"{name}.log"
        self._port_option = port_option

    def write_zone(self) -> None:
        dns.write_zone(self.zone_path, self.records)

    def start(self) -> None:
        self.write_zone()
        self._launch(dns.server_argv(self.zone_path, self.port, self.host))

    def ready(self) -> bool:
        return dns.answers(self.port, self.host)

    def stop(self) -> None:
        self._stop(((signal.SIGTERM, DNS_STOP_TIMEOUT),))

    def check(self) -> None:
        if not port_is_free(self.port, self.host, udp=True):
            raise PortInUse(self.name, self.host, self.port, self._port_option)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "dns",
            "url": self.url,
            "zone": str(self.zone_path),
            "records": self.records,
            "log": str(self.log_path),
            "stop_timeout": DNS_STOP_TIMEOUT,
            **self._pid(),
        }


class ClusterComponent(_OwnProcess):
    """``scalecube serve APP``: a master and its workers behind one port, the master's health on another
    (``health_port``: what the balancers check); ready when the master says a worker listens."""

    def __init__(
        self,
        name: str,
        app: str,
        *,
        port: int,
        workers: str,
        policy: str,
        state_dir: Path,
        env: dict[str, str],
        host: str = "127.0.0.1",
        port_option: str = "--port",
        start_with_previous: bool = False,
        health_port: int | None = None,
    ) -> None:
        self.name = name
        self.start_with_previous = start_with_previous  # True when what it needs (its Redis) is ready already
        self.app = app
        self.host = host
        self.port = port
        self.workers = workers
        self.policy = policy
        self.env = env
        self.url = f"http://{host}:{port}"
        self.health_port = health_port
        self.health_url = f"http://{host}:{health_port}" if health_port else None
        self.control = state_dir / f"{name}.sock"
        self.log_path = state_dir / f"{name}.log"
        self._port_option = port_option

    def start(self) -> None:
        extra = ["--health-port", str(self.health_port)] if self.health_port else []
        argv = serve_argv(
            self.app,
            workers=self.workers,
            policy=self.policy,
            host=self.host,
            port=self.port,
            control=self.control,
            extra=extra,
        )
        self._launch(argv, env=self.env)

    def ready(self) -> bool:
        try:
            return httpx.get((self.health_url or self.url) + "/readyz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self._stop(((signal.SIGTERM, CLUSTER_STOP_TIMEOUT),))  # the master drains its workers, then exits

    def check(self) -> None:
        ensure_port_free(self.name, self.host, self.port, self._port_option)
        if len(str(self.control).encode()) > MAX_UNIX_SOCKET_PATH:
            raise StackError(
                f"the state dir path is too long for {self.name}'s control socket {self.control} "
                f"(unix sockets allow {MAX_UNIX_SOCKET_PATH} bytes): use a shorter --state-dir"
            )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "cluster",
            "app": self.app,
            "url": self.url,
            "log": str(self.log_path),
            "health": self.health_url,
            "control": str(self.control),
            "workers": self.workers,
            "policy": self.policy,
            "stop_timeout": CLUSTER_STOP_TIMEOUT,
            **self._pid(),
        }


# -- balancers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendState:
    """One server of a balancer's api backend, as the balancer sees it."""

    address: str  # host:port
    up: bool


# Both balancers' admin/stats ports ask for HTTP basic auth: user admin, password LB_ADMIN_PASSWORD.
ADMIN_USER = runner.STATS_USER
ADMIN_PASSWORD_ENV = "LB_ADMIN_PASSWORD"


def admin_password() -> str:
    """LB_ADMIN_PASSWORD from the environment, else a fresh random one (the stack writes it to its state dir)."""
    return os.environ.get(ADMIN_PASSWORD_ENV) or secrets.token_urlsafe(24)


def admin_auth(password: str) -> httpx.BasicAuth:
    return httpx.BasicAuth(ADMIN_USER, password)


def read_admin_password(path: str | Path) -> str:
    return Path(path).read_text().strip()


def haproxy_backends(
    stats_url: str, backend: str = "api", timeout: float = 1.0, *, auth: httpx.Auth | None = None
) -> list[BackendState]:
    """The servers of ``backend`` that have an address, from HAProxy's stats CSV (``/;csv``)."""
    text = httpx.get(stats_url + "/;csv", timeout=timeout, auth=auth).raise_for_status().text.removeprefix("# ")
    return [
        BackendState(row["addr"], row["status"].startswith("UP"))
        for row in csv.DictReader(io.StringIO(text))
        if row["pxname"] == backend and row["svname"] not in ("FRONTEND", "BACKEND") and row.get("addr")
    ]


def python_lb_backends(
    stats_url: str, backend: str = "api", timeout: float = 1.0, *, auth: httpx.Auth | None = None
) -> list[BackendState]:
    """The backends of upstream ``backend``, from the Python balancer's admin ``/status.json``."""
    pools = httpx.get(stats_url + "/status.json", timeout=timeout, auth=auth).raise_for_status().json()["pools"]
    pool = next((p for p in pools if p["name"] == backend), {"backends": []})
    return [BackendState(b["address"], bool(b["healthy"]) and not b["removed"]) for b in pool["backends"]]


# How to ask each kind of balancer (``describe()["kind"]``) which backends it sees: `scalecube status` uses it.
BACKEND_READERS = {"haproxy": haproxy_backends, "python-lb": python_lb_backends}


class _Balancer(_OwnProcess):
    """What both balancers share: a front door and a stats port; ready once both answer and it sees
    ``backends`` servers up (0: replicas may come later, found by DNS)."""

    kind = ""
    stop_steps: tuple[tuple[signal.Signals, float], ...] = ()
    port_option: str | tuple[str, str] = ""  # what to change when a port is taken: one for both, or (front, stats)

    def __init__(self, name: str, url: str, stats_url: str, state_dir: Path, backends: int, password: str) -> None:
        self.name = name
        self.url = url
        self.stats_url = stats_url
        self.backends = backends
        self.log_path = state_dir / f"{name}.log"
        # The stats/admin port's password (user admin), where `scalecube status` and its user read it.
        self.admin_password = password
        self.password_path = state_dir / f"{name}.admin-password"

    @property
    def admin_auth(self) -> httpx.BasicAuth:
        return admin_auth(self.admin_password)

    def _write_password(self) -> None:
        """Into the state dir, readable by this user only (written before the process starts, every start)."""
        write_password_file(self.password_path, self.admin_password)

    def ready(self) -> bool:
        host, _, port = self.url.removeprefix("http://").rpartition(":")
        try:
            seen = BACKEND_READERS[self.kind](self.stats_url, auth=self.admin_auth)
            socket.create_connection((host, int(port)), timeout=1.0).close()
        except (httpx.HTTPError, OSError, ValueError, KeyError):
            return False
        return sum(backend.up for backend in seen) >= self.backends

    def stop(self) -> None:
        self._stop(self.stop_steps)

    def _check_ports(self, binds: tuple[str, str]) -> None:
        options = self.port_option if isinstance(self.port_option, tuple) else (self.port_option,) * 2
        for bind, option in zip(binds, options, strict=True):
            host, _, port = bind.rpartition(":")
            ensure_port_free(self.name, host or "0.0.0.0", int(port), option)

    def _describe(self, **extra: Any) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "url": self.url,
            "stats": self.stats_url,
            "admin_user": ADMIN_USER,
            "admin_password_file": str(self.password_path),
            **extra,
            "log": str(self.log_path),
            "stop_timeout": sum(t for _, t in self.stop_steps),
            **self._pid(),
        }


class HaproxyComponent(_Balancer):
    """HAProxy running ``lb/haproxy/haproxy.cfg`` (master-worker); ready when its stats page and frontend answer
    (and, with ``backends``, that many api servers are UP in its stats).

    ``settings`` fills the file's environment variables (where to listen, which DNS
    server names the replicas, sticky or not); the file itself is the one compose uses.
    """

    kind = "haproxy"
    # SIGUSR1 is HAProxy's soft stop: stop listening, finish the requests in flight, then exit.
    stop_steps = ((signal.SIGUSR1, HAPROXY_STOP_TIMEOUT), (signal.SIGTERM, 5.0))

    def __init__(
        self,
        settings: runner.HaproxySettings,
        state_dir: Path,
        *,
        name: str = "lb",
        port_option: str | tuple[str, str] = "LB_BIND / LB_STATS_BIND",
        backends: int = 0,
    ) -> None:
        if not settings.admin_password:  # haproxy.cfg refuses to start without one
            settings = replace(settings, admin_password=admin_password())
        assert settings.admin_password is not None
        super().__init__(name, settings.url(), settings.stats_url(), state_dir, backends, settings.admin_password)
        self.settings = settings
        self.port_option = port_option

    def start(self) -> None:
        self._write_password()
        # HaproxyNotFound (a RuntimeError) says how to install it.
        self._launch(runner.argv(), environ=self.settings.environment())

    def check(self) -> None:
        self._check_ports(self.settings.binds())
        try:
            runner.check_config(self.settings.environment())
        except (runner.HaproxyNotFound, runner.HaproxyConfigError) as exc:
            raise StackError(f"{self.name}: {exc}") from None

    def describe(self) -> dict[str, Any]:
        return self._describe(config=str(runner.CONFIG))


class PythonLbComponent(_Balancer):
    """The Python balancer (``scalecube lb``) with ``lb/balancer.toml``, its api upstream given on the
    command line (``dns:api:PORT@NAMESERVER``, as in compose but for the nameserver); ready when its
    front door and admin port answer and ``/status.json`` shows ``backends`` api backends up."""

    kind = "python-lb"
    stop_steps = ((signal.SIGTERM, PYTHON_LB_STOP_TIMEOUT),)  # it stops accepting and drains

    def __init__(
        self,
        state_dir: Path,
        *,
        listen: str,
        admin: str,
        upstream: str,
        sticky: bool = False,
        env: Mapping[str, str] | None = None,
        name: str = "lb",
        backends: int = 0,
        port_option: str | tuple[str, str] = ("--listen", "--admin"),
        upstreams: Mapping[str, str] | None = None,
        routes: Mapping[str, str] | None = None,
        check_ports: Mapping[str, int] | None = None,
    ) -> None:
        self.env = dict(env or {})
        password = self.env.get(ADMIN_PASSWORD_ENV) or admin_password()
        self.env[ADMIN_PASSWORD_ENV] = password
        super().__init__(name, http_url(listen), http_url(admin), state_dir, backends, password)
        self.listen = listen
        self.admin = admin
        self.upstream = upstream  # e.g. dns:api:8000@127.0.0.1:5353
        self.sticky = sticky
        self.port_option = port_option
        self.upstreams = dict(upstreams or {})  # more upstreams, NAME -> SPEC (e.g. auth -> dns:auth:8000@NS)
        self.routes = dict(routes or {})  # and their routes, PREFIX -> NAME (e.g. /auth/ -> auth)
        self.check_ports = dict(check_ports or {})  # NAME -> the backends' health port (their masters')

    def argv(self) -> list[str]:
        more = [arg for name, spec in self.upstreams.items() for arg in ("--upstream", f"{name}={spec}")]
        more += [arg for prefix, name in self.routes.items() for arg in ("--route", f"{prefix}={name}")]
        more += [arg for name, port in self.check_ports.items() for arg in ("--check-port", f"{name}={port}")]
        return [
            sys.executable,
            "-m",
            "scalecube",
            "lb",
            "--listen",
            self.listen,
            "--admin",
            self.admin,
            "--upstream",
            f"api={self.upstream}",
            *more,
            "--sticky" if self.sticky else "--no-sticky",
        ]

    def start(self) -> None:
        self._write_password()
        self._launch(self.argv(), env=self.env)

    def check(self) -> None:
        self._check_ports((self.listen, self.admin))

    def describe(self) -> dict[str, Any]:
        return self._describe(
            upstream=self.upstream,
            sticky=self.sticky,
            **({"upstreams": self.upstreams, "routes": self.routes} if self.routes else {}),
        )


def http_url(bind: str) -> str:
    """``host:port`` a server binds -> the URL to reach it here (every address: on loopback)."""
    host, _, port = bind.rpartition(":")
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def ensure_port_free(component: str, host: str, port: int, option: str) -> None:
    if not port_is_free(port, host):
        raise PortInUse(component, host, port, option)


def _pid(ref: ProcessRef | None) -> dict[str, Any]:
    return {"pid": ref.pid if ref else None, "started": ref.started if ref else None}
