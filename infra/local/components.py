"""The parts of the local stack: each one real process with a name, pid, address and log file.

A component only knows how to run itself. Ordering, readiness timeouts and
rolling back a half-started stack are ``LocalStack``'s job (``infra.local.stack``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any, Protocol

import httpx

from infra.local.errors import PortInUse, StackError
from infra.local.pids import ProcessRef
from infra.local.ports import port_is_free
from infra.local.processes import serve_argv
from infra.local.redis_server import LOG_NAME, RedisServer
from lb.haproxy import runner

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # where `-m scalecube` and the apps import from
# A cluster master drains for up to 30 s, then gives stragglers 5 s before SIGKILL; wait that out.
CLUSTER_STOP_TIMEOUT = 35.0
REDIS_START_TIMEOUT = 10.0
REDIS_STOP_TIMEOUT = 5.0
# haproxy.cfg's hard-stop-after (30 s) bounds a graceful stop; past it, and a little more, kill.
HAPROXY_STOP_TIMEOUT = 35.0
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
        """What the state file records: name, pid, started, url, log (and control for clusters)."""


class RedisComponent:
    """A ``redis-server`` (AOF off: the stack's Redis is a cache and session store, not a database)."""

    def __init__(self, data_dir: Path, *, port: int = 0, host: str = "127.0.0.1", name: str = "redis",
                 port_option: str = "--redis-port") -> None:  # fmt: skip
        self.name = name
        self.server = RedisServer(port, host=host, data_dir=data_dir, appendonly=False, new_session=True)
        self.host = host
        self.log_path = data_dir / LOG_NAME
        self._port_option = port_option
        self._ref: ProcessRef | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
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
        return {"name": self.name, "kind": "redis", "url": self.url, "log": str(self.log_path), **_pid(self._ref)}


class ClusterComponent:
    """``scalecube serve APP``: a master and its workers behind one port; ready when ``/readyz`` says 200."""

    def __init__(self, name: str, app: str, *, port: int, workers: str, policy: str, state_dir: Path,
                 env: dict[str, str], host: str = "127.0.0.1", port_option: str = "--port") -> None:  # fmt: skip
        self.name = name
        self.app = app
        self.host = host
        self.port = port
        self.workers = workers
        self.policy = policy
        self.env = env
        self.url = f"http://{host}:{port}"
        self.control = state_dir / f"{name}.sock"
        self.log_path = state_dir / f"{name}.log"
        self._port_option = port_option
        self._process: subprocess.Popen[bytes] | None = None
        self._ref: ProcessRef | None = None

    def start(self) -> None:
        argv = serve_argv(self.app, workers=self.workers, policy=self.policy, host=self.host, port=self.port,
                          control=self.control)  # fmt: skip
        with open(self.log_path, "wb") as log:
            # Own session: Ctrl-C reaches only the supervisor, which stops the stack in order.
            self._process = subprocess.Popen(
                argv, cwd=PROJECT_ROOT, env={**os.environ, **self.env}, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self._ref = ProcessRef.of(self._process.pid)

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def poll(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the master drains its workers, then exits
            try:
                process.wait(CLUSTER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                if self._ref is not None:
                    self._ref.kill_tree()
                process.kill()
        process.wait()

    def check(self) -> None:
        ensure_port_free(self.name, self.host, self.port, self._port_option)
        if len(str(self.control).encode()) > MAX_UNIX_SOCKET_PATH:
            raise StackError(f"the state dir path is too long for {self.name}'s control socket {self.control} "
                             f"(unix sockets allow {MAX_UNIX_SOCKET_PATH} bytes): use a shorter --state-dir")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "cluster", "app": self.app, "url": self.url, "log": str(self.log_path),
                "control": str(self.control), "workers": self.workers, "policy": self.policy,
                **_pid(self._ref)}  # fmt: skip


class HaproxyComponent:
    """HAProxy running ``lb/haproxy/haproxy.cfg`` (master-worker); ready when its stats page and frontend answer.

    ``settings`` fills the file's environment variables (where to listen, which DNS
    server names the replicas, sticky or not); the file itself is the one compose uses.
    """

    def __init__(self, settings: runner.HaproxySettings, state_dir: Path, *, name: str = "lb",
                 port_option: str = "LB_BIND / LB_STATS_BIND") -> None:  # fmt: skip
        self.name = name
        self.settings = settings
        self.url = settings.url()
        self.stats_url = settings.stats_url()
        self.log_path = state_dir / f"{name}.log"
        self._port_option = port_option
        self._process: subprocess.Popen[bytes] | None = None
        self._ref: ProcessRef | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        argv = runner.argv()  # HaproxyNotFound (a RuntimeError) says how to install it
        with open(self.log_path, "wb") as log:
            # Own session, like the clusters: Ctrl-C reaches only the supervisor, which stops the stack in order.
            self._process = subprocess.Popen(
                argv, cwd=PROJECT_ROOT, env=self.settings.environment(), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self._ref = ProcessRef.of(self._process.pid)

    def ready(self) -> bool:
        """Its stats page answers and its frontend accepts connections (replicas may come later, by DNS)."""
        host, _, port = self.url.removeprefix("http://").rpartition(":")
        try:
            if httpx.get(self.stats_url + "/;csv", timeout=1.0).status_code != 200:
                return False
            socket.create_connection((host, int(port)), timeout=1.0).close()
        except (httpx.HTTPError, OSError):
            return False
        return True

    def poll(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        # SIGUSR1 is HAProxy's soft stop: stop listening, finish the requests in flight, then exit.
        for sig, timeout in ((signal.SIGUSR1, HAPROXY_STOP_TIMEOUT), (signal.SIGTERM, 5.0)):
            if process.poll() is not None:
                break
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                continue
        if process.poll() is None:
            if self._ref is not None:
                self._ref.kill_tree()
            process.kill()
        process.wait()

    def check(self) -> None:
        for bind in self.settings.binds():
            host, _, port = bind.rpartition(":")
            ensure_port_free(self.name, host or "0.0.0.0", int(port), self._port_option)
        try:
            runner.check_config(self.settings.environment())
        except (runner.HaproxyNotFound, runner.HaproxyConfigError) as exc:
            raise StackError(f"{self.name}: {exc}") from None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": "haproxy", "url": self.url, "stats": self.stats_url,
                "config": str(runner.CONFIG), "log": str(self.log_path), **_pid(self._ref)}  # fmt: skip


def ensure_port_free(component: str, host: str, port: int, option: str) -> None:
    if not port_is_free(port, host):
        raise PortInUse(component, host, port, option)


def _pid(ref: ProcessRef | None) -> dict[str, Any]:
    return {"pid": ref.pid if ref else None, "started": ref.started if ref else None}
