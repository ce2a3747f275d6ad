"""Processes we start (tests, benchmarks, the local stack): wait until ready, stop by pid — never by name."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from cluster import control
from infra.local.pids import ProcessRef
from infra.paths import REPO  # the checkout: where `-m scalecube` and the apps import from

KILL_WAIT = 5.0  # seconds for a SIGKILLed process to be reaped


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class ManagedProcess:
    """A child process we started and own: ``argv`` run from the checkout, its output in ``log_path``.

    The one harness of the tests, the benchmarks, the demos and the local stack. ``stop()`` is bounded, safe to
    call twice, and always reaps. ``detached``: in a session of its own with no stdin, so Ctrl-C in the terminal
    reaches only whoever started it (the stack's supervisor, which stops its components in order), and a stop
    that runs out of time kills its descendants too (a cluster master's workers). ``append``: a relaunch (a
    restart) adds to the log, so it still says why the last one died.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        cwd: Path = REPO,
        log_path: Path | None = None,
        detached: bool = False,
        append: bool = False,
    ) -> None:
        """``env`` is added to ``environ`` (default: this process's environment, as it is now)."""
        self.argv = argv
        self.log_path = log_path
        self.detached = detached
        full_env = {**(os.environ if environ is None else environ), **(env or {})}
        log = open(log_path, "ab" if append else "wb") if log_path else contextlib.nullcontext(subprocess.DEVNULL)
        with log as stdout:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=full_env,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL if detached else None,
                start_new_session=detached,
            )
        self.ref = ProcessRef.of(self.proc.pid)  # its pid and start time: what the stack's state file records

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self, timeout: float = 15.0, *, steps: Sequence[tuple[int, float]] | None = None) -> int | None:
        """Each signal of ``steps`` in turn (default: SIGTERM), waiting its time (default ``timeout``) for the
        process to exit; then SIGKILL (the tree, if detached). Returns its exit code (0 after a tree kill:
        the tree's reaper collects it before Popen can see how it died)."""
        for sig, wait in steps or ((signal.SIGTERM, timeout),):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        if self.proc.poll() is None:
            if self.detached and self.ref is not None:
                self.ref.kill_tree()
            self.proc.kill()
            self.proc.wait(KILL_WAIT)
        return self.proc.returncode


def serve_argv(
    app: str, *, workers: int | str, policy: str, host: str, port: int, control: Path, extra: list[str] | None = None
) -> list[str]:
    """The command line of one cluster (``scalecube serve``), for whoever starts one."""
    return [
        sys.executable,
        "-m",
        "scalecube",
        "serve",
        app,
        "--workers",
        str(workers),
        "--policy",
        policy,
        "--host",
        host,
        "--port",
        str(port),
        "--control",
        str(control),
        *(extra or []),
    ]


class ClusterProcess(ManagedProcess):
    """``scalecube serve`` on a given port, with its own control socket and log in ``workdir``."""

    def __init__(
        self,
        app: str,
        *,
        port: int,
        workdir: Path,
        workers: int = 2,
        policy: str = "rr",
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        cwd: Path = REPO,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host  # another loopback address (127.0.0.2, ...) stands for another machine
        self.port = port
        self.url = f"http://{host}:{port}"
        self.control_path = workdir / f"cluster-{port}.sock"
        self.workers = workers
        argv = serve_argv(
            app, workers=workers, policy=policy, host=host, port=port, control=self.control_path, extra=args
        )
        super().__init__(argv, env=env, cwd=cwd, log_path=workdir / f"cluster-{port}.log")

    def status(self) -> dict[str, Any]:
        return control.request(self.control_path, "status")

    def listening_pids(self) -> set[int]:
        return {w["pid"] for w in self.status()["workers"] if w["state"] == "listening"}

    def wait_ready(self, count: int | None = None, timeout: float = 30.0) -> set[int]:
        count = count or self.workers

        def ready() -> set[int] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"cluster exited with {self.proc.returncode}:\n{self.log()}")
            status = self.status()
            pids = {w["pid"] for w in status["workers"] if w["state"] == "listening"}
            return pids if len(pids) == count and len(status["workers"]) == count else None

        try:
            return wait_until(ready, timeout, what=f"{count} listening workers")
        except AssertionError:
            raise
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log()}") from None

    def get(self, path: str = "/", **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kwargs)


def dump(data: Any) -> str:
    return json.dumps(data, indent=1)
