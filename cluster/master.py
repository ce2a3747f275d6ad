"""The cluster master: Python's answer to Node's ``cluster`` module and PM2's cluster mode.

The master never serves HTTP. It owns the listening socket, starts workers
(``python -m cluster.worker``: a fresh interpreter each time, so code changed on
disk is picked up by the next worker, as with Node's ``cluster.fork()``), hands
them connections, replaces the ones that die, and rolls them over one at a time
on a reload. It reaps every child, so it is safe as a container's PID 1.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import inspect
import logging
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cluster.channel import Channel, ChannelClosed, Message, socketpair
from cluster.config import KILL_GRACE, WORKER_CONFIG_ENV, ClusterConfig
from cluster.control import ControlServer
from cluster.crashes import CrashPolicy
from cluster.events import EventEmitter
from cluster.handoff import DONE, TOOK
from cluster.health import HealthServer
from cluster.logfiles import worker_log
from cluster.metrics import metrics_text
from cluster.policies import listen, make_policy
from cluster.reaping import become_subreaper
from cluster.worker_handle import Worker, WorkerState

log = logging.getLogger("scalecube.cluster")

STARTUP_FAILURE = 3  # uvicorn's exit code when the app cannot be imported or its startup fails
RELOAD_SIGNALS = (signal.SIGUSR2, signal.SIGHUP)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Workers start with default dispositions for everything the master handles.
CHILD_DEFAULT_SIGNALS = (*RELOAD_SIGNALS, *STOP_SIGNALS, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD)


@dataclass
class ReloadOutcome:
    """What a rolling reload did: each worker replaced (old -> new), or why it stopped."""

    replaced: list[dict[str, int]] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.error is None, "replaced": self.replaced, **({"error": self.error} if self.error else {})}


class Cluster(EventEmitter):
    """Events: fork, online, listening, disconnect, exit(worker, code, signal), message(worker, msg)."""

    def __init__(self, config: ClusterConfig) -> None:
        super().__init__()
        self.config = config
        self.workers: dict[int, Worker] = {}
        self.port = config.port
        self.stopping = False
        self.exit_code = 0
        self._slots = set(range(config.workers))
        self._restarts: collections.Counter[int] = collections.Counter()
        self._next_id = 1
        self._ever_listening = False
        self._replacing: set[int] = set()
        self._reload: asyncio.Future[ReloadOutcome] | None = None  # the rolling reload under way
        self._reload_again = False
        self._pending_forks: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._crashes = CrashPolicy(
            max_crashes=config.max_crashes,
            window=config.crash_window,
            min_uptime=config.min_uptime,
            backoff_base=config.backoff_base,
            backoff_cap=config.backoff_cap,
        )
        self._started_at = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Event | None = None
        self._metrics_dir = ""
        self._policy: Any = None
        self._control: ControlServer | None = None
        self._health: HealthServer | None = None
        self.health_port: int | None = None

    # ------------------------------------------------------------------ running
    async def run(self) -> int:
        """Start everything, serve until stopped, return the process exit code."""
        self._loop = loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        if str(self.config.app_dir) not in sys.path:
            sys.path.insert(0, str(self.config.app_dir))
        listener = listen(self.config.host, self.config.port, self.config.backlog)
        self.port = listener.getsockname()[1]
        self._policy = make_policy(self.config.policy, listener, self.config.handoff)
        if self._policy.passes_listener:
            os.set_inheritable(listener.fileno(), True)
        self._metrics_dir = tempfile.mkdtemp(prefix="scalecube-metrics-")
        become_subreaper()
        self._install_signals()
        self._control = await ControlServer.start(self.config.control_socket(self.port), self._on_control)
        log.info(
            "master pid %d: %s (%s) on http://%s:%d, %d worker(s), policy %s",
            os.getpid(), self.config.name, self.config.app, self.config.host, self.port, len(self._slots),
            self.config.policy,
        )  # fmt: skip
        try:
            if self.config.health_port is not None:
                self._health = HealthServer(self.health_snapshot, metrics_text(self.status))
                self.health_port = await self._health.start(self.config.host, self.config.health_port)
            if not self._run_master_hook():
                self.exit_code = STARTUP_FAILURE
                return self.exit_code
            self._policy.start(loop, self.workers)
            for slot in sorted(self._slots):
                self.fork(slot)
            self.every(self.config.monitor_interval, self._monitor)
            await self._done.wait()
        finally:
            await self._cleanup()
        log.info("master pid %d: stopped (exit code %d)", os.getpid(), self.exit_code)
        return self.exit_code

    def _install_signals(self) -> None:
        loop = self._loop
        assert loop is not None
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        for sig in RELOAD_SIGNALS:
            loop.add_signal_handler(sig, self.spawn_task, self.reload)
        loop.add_signal_handler(signal.SIGTTIN, self.scale, 1)
        loop.add_signal_handler(signal.SIGTTOU, self.scale, -1)

    def _on_stop_signal(self, sig: int) -> None:
        log.info("master: %s received, stopping gracefully", signal.Signals(sig).name)
        self.stop()

    async def _cleanup(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for handle in self._pending_forks.values():
            handle.cancel()
        if self._control is not None:
            await self._control.close()
        if self._health is not None:
            await self._health.close()
        if self._loop is not None:
            for sig in (signal.SIGCHLD, *STOP_SIGNALS, *RELOAD_SIGNALS, signal.SIGTTIN, signal.SIGTTOU):
                self._loop.remove_signal_handler(sig)
        shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def spawn_task(self, fn: Callable[[], Awaitable[Any]]) -> asyncio.Task[Any]:
        """Run a coroutine in the background; the master cancels it when it stops."""
        assert self._loop is not None
        task = self._loop.create_task(fn())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def every(self, seconds: float, fn: Callable[[], Any]) -> asyncio.Task[Any]:
        """Call ``fn`` (sync or async) now and then every ``seconds``, until the master stops.

        A fixed cadence on a grid (not "sleep after the work"), so "once per interval"
        stays true however long ``fn`` takes or however late the loop wakes: a run
        that overruns, or a starved loop, skips the missed ticks and resumes on the
        next grid point. It never runs twice to catch up, so any window of W seconds
        holds at most W / seconds + 2 runs.
        """
        assert self._loop is not None
        loop = self._loop

        async def repeat() -> None:
            due = loop.time()
            while True:
                try:
                    result = fn()
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("periodic task %s failed", getattr(fn, "__name__", fn))
                missed = max(0.0, loop.time() - due) // seconds
                due += (missed + 1) * seconds
                await asyncio.sleep(max(0.0, due - loop.time()))

        return self.spawn_task(repeat)

    def _run_master_hook(self) -> bool:
        """An app module may define ``on_master(cluster)`` to run code in the master (e.g. broadcasts).

        Importing the module here also catches a broken app before any worker is
        forked. Workers import it afresh, so a reload still picks up new code;
        only the master hook itself stays as it was at start.
        """
        module_name, _, attribute = self.config.app.partition(":")
        try:
            module = importlib.import_module(module_name)
            getattr(module, attribute)
            hook = getattr(module, "on_master", None)
            if callable(hook):
                hook(self)
        except Exception as exc:
            log.error("cannot load %s: %s: %s", self.config.app, type(exc).__name__, exc)
            return False
        return True

    # ------------------------------------------------------------------ workers
    def fork(self, slot: int | None = None) -> Worker:
        """Start a new worker process (in ``slot``, or a new slot)."""
        assert self._loop is not None
        if slot is None:
            slot = self._free_slot()
            self._slots.add(slot)
        master_end, worker_end = socketpair()
        worker_id = self._next_id
        self._next_id += 1
        pid = self._spawn(worker_id, slot, worker_end)
        worker_end.close()
        channel = Channel(master_end)
        worker = Worker(self, worker_id, slot, channel, pid)
        self.workers[worker_id] = worker
        channel.attach(
            self._loop,
            lambda message, conn: self._on_message(worker, message, conn),
            lambda: self._on_channel_closed(worker),
        )
        self._loop.call_later(self.config.startup_timeout, self._check_started, worker)
        self.emit("fork", worker)
        return worker

    def _spawn(self, worker_id: int, slot: int, channel_end: socket.socket) -> int:
        cfg = self.config
        max_requests = cfg.max_requests + random.randint(0, cfg.max_requests_jitter) if cfg.max_requests else 0
        listen_fd = self._policy.listener.fileno() if self._policy.passes_listener else None
        worker_config = cfg.worker_config(worker_id, slot, channel_end.fileno(), listen_fd, max_requests)
        argv = [sys.executable, "-m", "cluster.worker"]
        env = {
            **os.environ,
            **cfg.env,
            "SCALECUBE_WORKER_ID": str(worker_id),
            "SCALECUBE_WORKER_SLOT": str(slot),
            "SCALECUBE_MASTER_PID": str(os.getpid()),
            "PROMETHEUS_MULTIPROC_DIR": self._metrics_dir,
            WORKER_CONFIG_ENV: worker_config.to_json(),
        }
        os.set_inheritable(channel_end.fileno(), True)
        output = None  # stdout and stderr: the master's, or the slot's log file (cluster.logfiles)
        if cfg.log_dir is not None:
            cfg.log_dir.mkdir(parents=True, exist_ok=True)  # again: someone may have removed it
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            output = [(os.POSIX_SPAWN_OPEN, 1, str(worker_log(cfg.log_dir, slot)), flags, 0o644),
                      (os.POSIX_SPAWN_DUP2, 1, 2)]  # fmt: skip
        return os.posix_spawn(sys.executable, argv, env, file_actions=output, setsigdef=CHILD_DEFAULT_SIGNALS)

    def _free_slot(self) -> int:
        slot = 0
        while slot in self._slots:
            slot += 1
        return slot

    def restarts_of(self, slot: int) -> int:
        return self._restarts[slot]

    def broadcast(self, message: Any) -> int:
        """Send ``message`` to every connected worker; returns how many got it."""
        return sum(worker.send(message) for worker in list(self.workers.values()))

    def disconnect(self, worker: Worker) -> None:
        if worker.state in (WorkerState.DRAINING, WorkerState.EXITED):
            return
        worker.exited_after_disconnect = True
        worker.state = WorkerState.DRAINING
        try:
            worker.channel.send({"t": "disconnect"})
        except ChannelClosed:
            worker.kill(signal.SIGTERM)
        assert self._loop is not None
        deadline = self.config.drain_timeout + self.config.settle + KILL_GRACE
        self._loop.call_later(deadline, self._kill_if_alive, worker, "did not finish draining in time")

    def _kill_if_alive(self, worker: Worker, why: str) -> None:
        if worker.state is not WorkerState.EXITED:
            log.warning("worker %d (pid %d) %s: SIGKILL", worker.id, worker.pid, why)
            worker.kill(signal.SIGKILL)

    def _check_started(self, worker: Worker) -> None:
        if worker.state in (WorkerState.STARTING, WorkerState.ONLINE):
            self._kill_if_alive(worker, f"not listening after {self.config.startup_timeout:g}s")

    # ------------------------------------------------------------ worker events
    def _on_message(self, worker: Worker, message: Message, conn: socket.socket | None) -> None:
        if conn is not None:  # workers never send descriptors
            conn.close()
        worker.last_heartbeat = time.monotonic()
        kind = message.get("t")
        if kind == DONE:  # the hot path: two small reports per handed connection
            worker.ledger.done(message["n"])
            self._policy.worker_freed(worker)
        elif kind == TOOK:
            worker.ledger.took(message["n"])
            self._policy.worker_freed(worker)
        elif kind == "stats":
            worker.requests = int(message.get("requests", 0))
            worker.inflight = int(message.get("inflight", 0))
        elif kind == "msg":
            self.emit("message", worker, message.get("data"))
            worker.emit("message", message.get("data"))
        elif kind == "online":
            if worker.state is WorkerState.STARTING:
                worker.state = WorkerState.ONLINE
            self.emit("online", worker)
            worker.emit("online")
        elif kind == "listening":
            self._on_listening(worker)
        elif kind in ("recycle", "leaving"):
            # Max requests reached, or someone sent the worker SIGTERM: swap it out without dropping anything.
            if worker.routable and not worker.recycle_requested:
                worker.recycle_requested = True
                log.info("worker %d (pid %d) asked to be replaced (%s)", worker.id, worker.pid, kind)
                self.spawn_task(lambda: self.replace(worker))
        else:
            log.warning("worker %d sent an unknown message type %r", worker.id, kind)

    def _on_listening(self, worker: Worker) -> None:
        if worker.state not in (WorkerState.STARTING, WorkerState.ONLINE):
            return  # a disconnect overtook it
        worker.state = WorkerState.LISTENING
        worker.listening_at = time.monotonic()
        self._ever_listening = True
        log.info("worker %d (pid %d, slot %d) listening", worker.id, worker.pid, worker.slot)
        self._policy.worker_ready(worker)
        self.emit("listening", worker)
        worker.emit("listening")

    def _on_channel_closed(self, worker: Worker) -> None:
        self._policy.worker_gone(worker)
        self.emit("disconnect", worker)
        worker.emit("disconnect")

    def _reap(self) -> None:
        """Collect every exited child — ours, and orphans re-parented to us when we are PID 1."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self.workers.values() if w.pid == pid), None)
            if worker is not None:
                self._on_exit(worker, os.waitstatus_to_exitcode(status))

    def _on_exit(self, worker: Worker, exitcode: int) -> None:
        worker.state = WorkerState.EXITED
        worker.exit_code = exitcode if exitcode >= 0 else None
        worker.exit_signal = signal.Signals(-exitcode).name if exitcode < 0 else None
        self.workers.pop(worker.id, None)
        # SIGCHLD can come before the channel's EOF: read what the worker said before it died
        # (which connections it took), then give the others what it never started.
        worker.channel.flush_incoming()
        worker.channel.close()
        self._policy.worker_gone(worker)
        self._forget_metrics(worker.pid)
        how = f"signal {worker.exit_signal}" if worker.exit_signal else f"code {worker.exit_code}"
        expected = worker.exited_after_disconnect or self.stopping
        (log.info if expected else log.warning)(
            "worker %d (pid %d, slot %d) exited with %s%s",
            worker.id, worker.pid, worker.slot, how, "" if expected else " — unexpectedly",
        )  # fmt: skip
        self.emit("exit", worker, worker.exit_code, worker.exit_signal)
        worker.emit("exit", worker.exit_code, worker.exit_signal)
        if self.stopping:
            if not self.workers and self._done is not None:
                self._done.set()
        elif not worker.exited_after_disconnect:
            self._on_crash(worker)

    def _on_crash(self, worker: Worker) -> None:
        if not self._ever_listening and worker.listening_at is None:
            log.error("the first workers cannot start %s: giving up (see the worker's error above)", self.config.app)
            self.stop(exit_code=STARTUP_FAILURE)
            return
        delay = self._crashes.record(worker.slot, worker.uptime, time.monotonic())
        if self._crashes.exhausted():
            log.error(
                "%d worker crashes within %gs: the master gives up so its supervisor can restart it",
                self._crashes.recent, self.config.crash_window,
            )  # fmt: skip
            self.stop(exit_code=1)
            return
        if worker.id in self._replacing:
            return  # a replacement that failed to start; the worker it was replacing still serves
        if self._slot_covered(worker.slot):
            return
        self._restarts[worker.slot] += 1
        if delay:
            log.warning("slot %d is crash-looping: restarting it in %.2fs", worker.slot, delay)
        assert self._loop is not None
        self._pending_forks[worker.slot] = self._loop.call_later(delay, self._restart_slot, worker.slot)

    def _slot_covered(self, slot: int) -> bool:
        return slot not in self._slots or any(
            w.slot == slot and w.state is not WorkerState.DRAINING for w in self.workers.values()
        )

    def _restart_slot(self, slot: int) -> None:
        self._pending_forks.pop(slot, None)
        if not self.stopping and not self._slot_covered(slot):
            self.fork(slot)

    def _forget_metrics(self, pid: int) -> None:
        try:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, self._metrics_dir)
        except Exception:  # metrics are best effort; never let them break supervision
            log.debug("could not mark pid %d dead in the metrics dir", pid, exc_info=True)

    # ------------------------------------------------------- zero-downtime swaps
    async def replace(self, worker: Worker) -> Worker | None:
        """Start a replacement, wait until it listens, then drain and stop ``worker``; returns the replacement."""
        if not worker.routable or worker.id in self._replacing:
            return None
        self._replacing.add(worker.id)
        try:
            successor = self.fork(worker.slot)
            self._replacing.add(successor.id)
            started = await self.wait_for(successor, "listening", self.config.startup_timeout + 1)
            self._replacing.discard(successor.id)
            if not started or successor.state is not WorkerState.LISTENING:
                log.error("replacement for worker %d failed to start: keeping the old one", worker.id)
                self._kill_if_alive(successor, "failed to start as a replacement")
                return None
            worker.disconnect()
            if worker.state is not WorkerState.EXITED:
                await self.wait_for(worker, "exit", None)
            return successor
        finally:
            self._replacing.discard(worker.id)

    async def wait_for(self, worker: Worker, event: str, timeout: float | None) -> bool:
        """Wait until ``worker`` emits ``event`` (or exits); False on timeout or exit first."""
        assert self._loop is not None
        future: asyncio.Future[bool] = self._loop.create_future()

        def settle(result: bool) -> Callable[..., None]:
            return lambda *_: future.done() or future.set_result(result)

        on_event, on_exit = settle(True), settle(event == "exit")
        worker.on(event, on_event)
        worker.on("exit", on_exit)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return False
        finally:
            worker.off(event, on_event)
            worker.off("exit", on_exit)

    async def reload(self) -> ReloadOutcome:
        """Rolling restart: every worker, one at a time, none dropped (SIGUSR2 / SIGHUP, ``scalecube reload``).

        Asked again mid-reload (a newer deploy arrived), it goes round once more, and
        both askers get the outcome of the whole run.
        """
        if self._reload is not None:
            self._reload_again = True
            return await asyncio.shield(self._reload)
        assert self._loop is not None
        self._reload = self._loop.create_future()
        outcome = ReloadOutcome()
        try:
            await self._roll(outcome)
        except asyncio.CancelledError:
            outcome.error = "the master stopped during the reload"
            raise
        finally:
            future, self._reload = self._reload, None
            future.set_result(outcome)
        return outcome

    async def _roll(self, outcome: ReloadOutcome) -> None:
        while True:
            self._reload_again = False
            current = sorted((w for w in self.workers.values() if w.routable), key=lambda w: w.slot)
            log.info("rolling reload of %d worker(s)", len(current))
            for worker in current:
                if self.stopping:
                    outcome.error = "the master is stopping"
                    return
                if not worker.routable:
                    continue
                successor = await self.replace(worker)
                if successor is None:
                    outcome.error = f"the replacement for worker {worker.id} (slot {worker.slot}) did not start"
                    log.error("rolling reload aborted at worker %d; the others keep serving", worker.id)
                    return
                outcome.replaced.append({"slot": worker.slot, "old_id": worker.id, "old_pid": worker.pid,
                                         "new_id": successor.id, "new_pid": successor.pid})  # fmt: skip
            log.info("rolling reload done")
            if not self._reload_again:
                return

    def scale(self, delta: int) -> None:
        """SIGTTIN adds a worker; SIGTTOU drains one away (never below one). ``delta`` is +1 or -1."""
        if self.stopping:
            return
        if delta > 0:
            self.fork()
            log.info("scaled up to %d worker(s)", len(self._slots))
        elif len(self._slots) > 1:
            slot = max(self._slots)
            self._slots.discard(slot)
            for worker in [w for w in self.workers.values() if w.slot == slot]:
                worker.disconnect()
            log.info("scaled down to %d worker(s)", len(self._slots))

    # ---------------------------------------------------------------- stopping
    def stop(self, exit_code: int = 0) -> None:
        """Stop accepting, drain every worker, exit. A second call kills the stragglers."""
        if self.stopping:
            log.warning("master: stopping immediately (SIGKILL to %d worker(s))", len(self.workers))
            for worker in self.workers.values():
                worker.kill(signal.SIGKILL)
            return
        self.stopping = True
        self.exit_code = exit_code
        if self._policy is not None:
            self._policy.stop()
        for handle in self._pending_forks.values():
            handle.cancel()
        self._pending_forks.clear()
        for worker in list(self.workers.values()):
            self.disconnect(worker)
        if not self.workers and self._done is not None:
            self._done.set()

    # -------------------------------------------------------------- monitoring
    def _monitor(self) -> None:
        now = time.monotonic()
        limit = self.config.max_rss_mb * 2**20
        for worker in list(self.workers.values()):
            worker.sample_resources()
            if not worker.routable:
                continue
            if now - worker.last_heartbeat > self.config.heartbeat_timeout:
                self._kill_if_alive(worker, f"silent for {self.config.heartbeat_timeout:g}s (hung)")
            elif limit and worker.rss_bytes > limit and not worker.recycle_requested:
                worker.recycle_requested = True
                log.info("worker %d uses %.0f MiB > %g MiB: recycling it", worker.id, worker.rss_bytes / 2**20,
                         self.config.max_rss_mb)  # fmt: skip
                self.spawn_task(lambda w=worker: self.replace(w))

    def health_snapshot(self) -> dict[str, Any]:
        """What the probes see (cluster.health): never blocked by a worker, computed on demand."""
        listening = [w for w in self.workers.values() if w.routable]
        return {
            "pid": os.getpid(),
            "uptime": round(time.monotonic() - self._started_at, 1),
            "stopping": self.stopping,
            "listening": len(listening),
            "target_workers": len(self._slots),
            "busy": sum(1 for w in listening if w.ledger.unanswered),  # working on at least one connection
            **{k: v for k, v in self._policy.stats().items() if k in ("queued", "shed")},
        }

    def status(self) -> dict[str, Any]:
        return {
            "master": {
                "pid": os.getpid(),
                "name": self.config.name,
                "app": self.config.app,
                "policy": self.config.policy,
                "address": f"http://{self.config.host}:{self.port}",
                "port": self.port,
                "logs": str(self.config.log_dir) if self.config.log_dir else None,
                "health": f"http://{self.config.host}:{self.health_port}" if self.health_port else None,
                "uptime": round(time.monotonic() - self._started_at, 1),
                "target_workers": len(self._slots),
                "recent_crashes": self._crashes.recent,
                "reloading": self._reload is not None,
                "stopping": self.stopping,
                **self._policy.stats(),
            },
            "workers": [w.describe() for w in sorted(self.workers.values(), key=lambda w: (w.slot, w.id))],
        }

    async def _on_control(self, request: dict[str, Any]) -> dict[str, Any]:
        """``status``; ``reload`` (``wait``: answer when it is done, with each worker replaced);
        ``scale`` by ``delta`` or ``to`` a count; ``stop`` (``force``: kill what still drains)."""
        command = request.get("cmd")
        if command == "status":
            return self.status()
        if command == "reload":
            task = self.spawn_task(self.reload)
            if not request.get("wait"):
                return {"ok": True, "message": "rolling reload started"}
            try:
                return (await task).as_dict()
            except asyncio.CancelledError:
                return {"ok": False, "replaced": [], "error": "the master stopped during the reload"}
        if command == "scale":
            delta = int(request["to"]) - len(self._slots) if "to" in request else int(request.get("delta", 0))
            if len(self._slots) + delta < 1:
                return {"ok": False, "error": "a cluster keeps at least 1 worker (stop it instead)"}
            for _ in range(abs(delta)):
                self.scale(1 if delta > 0 else -1)
            return {"ok": True, "workers": len(self._slots)}
        if command == "stop":
            if not self.stopping or request.get("force"):
                self.stop()  # a second stop kills the stragglers
            return {"ok": True, "pid": os.getpid(), "message": "stopping: every worker drains, then the master exits"}
        return {"ok": False, "error": f"unknown command {command!r}; try status, reload, scale or stop"}


def configure_master_logging(level: int = logging.INFO) -> None:
    """The master's lines go to stderr on their own handler: importing the app for its
    master hook may configure the root logger, and must not double or relabel them."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [master %(process)d] %(levelname)s %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


def run_cluster(config: ClusterConfig) -> int:
    """Run a master in this process until it stops; returns its exit code.

    The master runs on the stdlib loop, not uvloop: it must own SIGCHLD to reap
    every child (PID 1 duty), and libuv reserves that signal for itself. Workers,
    which do the serving, run on uvloop.
    """
    return asyncio.run(Cluster(config).run())
