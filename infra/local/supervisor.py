"""The process that owns a running stack: ``scalecube up`` itself, or its detached copy (``-d``).

It claims the state dir, starts the components in order, records them, then
watches them. Ctrl-C / SIGTERM / SIGHUP (terminal closed, ``scalecube down``)
stop the stack in reverse order and exit 0. A component that dies before the
stack is ready fails ``up`` (exit 1, its log's tail, the rest stopped). Once the
stack is up, a component that dies on its own is restarted, and one that
crash-loops is given up on while the rest keeps serving (``infra.local.restarts``
says why); each restart and each failure is recorded in the state file for
``scalecube status``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from infra.local.errors import AlreadyRunning, StackError, StartAborted, StartFailed
from infra.local.pids import ProcessRef, log_tail
from infra.local.restarts import STARTING, Keeper, RestartPolicy, RestartReporter
from infra.local.shutdown import DOWN_TIMEOUT, clean_stale
from infra.local.stack import LocalStack, StackOptions, describe_exit
from infra.local.state import READY, StackState, StateFile, prepare_state_dir
from infra.paths import REPO

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
WATCH_INTERVAL = 0.25
SUPERVISOR_LOG = "supervisor.log"
DETACHED_GRACE = 30.0


class Reporter(RestartReporter, Protocol):
    """Tells the user what the supervisor does (the CLI prints it with rich); restarts included."""

    def ready(self, state: StackState, state_dir: Path, detached: bool) -> None: ...
    def stopping(self, reason: str) -> None: ...
    def stopped(self, names: list[str]) -> None: ...


def ensure_not_running(state_file: StateFile) -> None:
    """Raise ``AlreadyRunning`` if a live supervisor owns the dir; clean up after a dead one."""
    if not state_file.exists():
        return
    state = state_file.read()
    if state is not None and state.supervisor.alive():
        raise AlreadyRunning(state.supervisor.pid, state_file.dir)
    clean_stale(state_file, state)


def claim(state_file: StateFile, state: StackState) -> None:
    """Make ``state`` the dir's owner, atomically: of two concurrent `up`s, one wins."""
    prepare_state_dir(state_file.dir)
    for _ in range(3):
        ensure_not_running(state_file)
        try:
            state_file.create(state)
            return
        except FileExistsError:
            continue  # someone claimed it between our check and our create: check again
    ensure_not_running(state_file)
    raise StackError(f"cannot claim {state_file.path}: it keeps reappearing")


class Supervisor:
    def __init__(
        self,
        stack: LocalStack,
        state_file: StateFile,
        reporter: Reporter,
        *,
        detached: bool = False,
        restart_policy: RestartPolicy | None = None,
    ) -> None:
        self.stack = stack
        self.state_file = state_file
        self.reporter = reporter
        self.detached = detached  # only changes what is printed: a detached copy runs the same code
        self.restart_policy = restart_policy or RestartPolicy()
        self._stop = threading.Event()
        self._stop_reason = ""
        self._state: StackState | None = None
        self._keepers: dict[str, Keeper] = {}  # by component name, once the stack is ready

    def run(self) -> int:
        """Run the stack until asked to stop (0); a start that fails raises ``StackError``."""
        with self._stop_signals():
            me = ProcessRef.of(os.getpid())
            assert me is not None
            self._state = StackState(me)
            claim(self.state_file, self._state)
            try:
                return self._supervise()
            finally:
                self.stack.stop()  # no-op when already stopped; covers errors and aborted starts
                self.state_file.remove(owner=me)

    def _supervise(self) -> int:
        assert self._state is not None
        self.stack.check()
        self.stack.start(on_launched=lambda _: self._record(), should_stop=self._stop.is_set)
        self._keepers = {c.name: Keeper(c, self.reporter, self.restart_policy) for c in self.stack.components}
        self._state.phase = READY
        self._record()
        self.reporter.ready(self._state, self.state_file.dir, self.detached)
        while not self._stop.wait(WATCH_INTERVAL):
            changed = False
            for keeper in self._keepers.values():
                if self._stop.is_set():
                    break  # a restart (Redis's start waits for PING) may have taken a while: stop first
                changed |= keeper.tick()
            if changed:
                self._record()
        self.reporter.stopping(self._stop_reason)
        self.reporter.stopped([c.name for c in self.stack.stop()])
        return 0

    def _record(self) -> None:
        assert self._state is not None
        self._state.components = [{**record, **self._supervision(record["name"])} for record in self.stack.describe()]
        self.state_file.write(self._state)

    def _supervision(self, name: str) -> dict[str, Any]:
        keeper = self._keepers.get(name)
        if keeper is None:  # still starting the stack: nothing has been restarted
            return {"state": STARTING, "restarts": 0, "last_exit": None, "failure": None}
        return keeper.describe()

    @contextlib.contextmanager
    def _stop_signals(self) -> Iterator[None]:
        def on_signal(signum: int, frame: FrameType | None) -> None:
            if not self._stop.is_set():
                self._stop_reason = f"{signal.Signals(signum).name} received"
            self._stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def supervisor_argv(options: StackOptions) -> list[str]:
    """The foreground `scalecube up` that a detached start runs in the background."""
    return [
        sys.executable,
        "-m",
        "scalecube",
        "up",
        "--port",
        str(options.port),
        "--workers",
        options.workers,
        "--policy",
        options.policy,
        "--session-backend",
        options.session_backend,
        "--redis-port",
        str(options.redis_port),
        "--api",
        str(options.api),
        "--lb",
        options.lb,
        "--sticky" if options.sticky else "--no-sticky",
        "--stats-port",
        str(options.stats_port),
        "--api-port",
        str(options.api_port),
        "--dns-port",
        str(options.dns_port),
        "--services",
        options.services,
        "--redis",
        options.redis,
        "--state-dir",
        str(options.state_dir),
        "--detached-child",
    ]


def start_detached(options: StackOptions) -> StackState:
    """Start a supervisor in the background and return its state once the stack is ready."""
    state_file = StateFile(options.state_dir)
    ensure_not_running(state_file)
    stack = LocalStack.from_options(options)
    stack.check()  # a taken port fails here, with nothing started
    prepare_state_dir(options.state_dir)
    log_path = options.state_dir / SUPERVISOR_LOG
    with open(log_path, "wb") as log:
        # A new session: the supervisor outlives this command and the terminal it ran in.
        process = subprocess.Popen(
            supervisor_argv(options),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # Only a safety net: the supervisor times out each component itself, and says why.
    timeout = stack.ready_timeout * len(stack.components) + DETACHED_GRACE
    try:
        return _wait_until_ready(process, state_file, log_path, timeout)
    except KeyboardInterrupt:
        _stop_supervisor(process)
        raise StartAborted() from None
    except BaseException:
        _stop_supervisor(process)
        raise


def _stop_supervisor(process: subprocess.Popen[bytes]) -> None:
    """A detached start that is given up: the supervisor stops its components in order."""
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(DOWN_TIMEOUT)


def _wait_until_ready(
    process: subprocess.Popen[bytes], state_file: StateFile, log_path: Path, timeout: float
) -> StackState:
    deadline = time.monotonic() + timeout
    while True:
        state = state_file.read()
        if state is not None and state.supervisor.pid == process.pid and state.phase == READY:
            return state
        code = process.poll()
        if code is not None:
            raise SupervisorExited(code, log_path)
        if time.monotonic() >= deadline:
            raise StartFailed("the stack", f"not ready after {timeout:g}s", log_tail(log_path), log_path)
        time.sleep(0.1)


class SupervisorExited(StackError):
    def __init__(self, code: int, log_path: Path) -> None:
        self.exit_code = code if code > 0 else 1  # 2 (port taken) stays 2
        super().__init__(
            f"the stack's supervisor exited ({describe_exit(code)}) before the stack was ready\n"
            f"--- last lines of {log_path} ---\n{log_tail(log_path)}"
        )
