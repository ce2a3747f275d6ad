"""The cluster master: Python's answer to Node's ``cluster`` module and PM2's cluster mode.

The master never serves HTTP. It owns the listening socket, starts workers
(``python -m cluster.worker``: a fresh interpreter each time, so code changed on
disk is picked up by the next worker, as with Node's ``cluster.fork()``), hands
them connections, replaces the ones that die, and rolls them over one at a time
on a reload. It reaps every child, so it is safe as a container's PID 1.

This module is the plumbing: processes, signals, sockets, channels, timers.
What should exist and what to do when a worker goes is decided in
``cluster.supervision`` (no processes there, so it is unit-tested with a fake clock);
the master reports each event to its ``Supervisor`` and carries out the actions.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import random
import shutil
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cluster import protocol
from cluster.channel import Channel, ChannelClosed, socketpair
from cluster.commands import Commands
from cluster.config import KILL_GRACE, WORKER_CONFIG_ENV, ClusterConfig
from cluster.control import ControlServer
from cluster.crashes import CrashPolicy
from cluster.events import EventEmitter
from cluster.health import HealthServer
from cluster.hooks import load_master_hook
from cluster.logfiles import worker_log
from cluster.metrics import make_metrics_dir, metrics_text
from cluster.policies import HandoffPolicy, SharedSocketPolicy, listen, make_policy
from cluster.protocol import Done, Leaving, Listening, Msg, Online, Recycle, Stats, Took
from cluster.reaping import become_subreaper
from cluster.supervision import STARTUP_FAILURE, Action, Drain, Finished, Fork, GiveUp, Restart, Supervisor
from cluster.worker_handle import Worker, WorkerState

log = logging.getLogger("scalecube.cluster")

__all__ = ["KILL_GRACE", "STARTUP_FAILURE", "Cluster", "ReloadOutcome", "run_cluster"]

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
    """Events: fork, online, listening, disconnect, exit(worker, code, signal), message(worker, msg).

    Made inside a running loop, with its listening socket already bound (``run_cluster``):
    everything loop- or socket-bound exists from construction on.
    """

    def __init__(self, config: ClusterConfig, loop: asyncio.AbstractEventLoop, listener: socket.socket) -> None:
        super().__init__()
        self.config = config
        self.workers: dict[int, Worker] = {}
        self.port: int = listener.getsockname()[1]
        self.exit_code = 0
        self._loop = loop
        self._done = asyncio.Event()
        self._crashes = CrashPolicy(
            max_crashes=config.max_crashes,
            window=config.crash_window,
            min_uptime=config.min_uptime,
            backoff_base=config.backoff_base,
            backoff_cap=config.backoff_cap,
        )
        self.supervisor = Supervisor(config.workers, self._crashes)
        self._policy: SharedSocketPolicy | HandoffPolicy = make_policy(config.policy, listener, config.handoff)
        self._next_id = 1
        self._intake_stopped = False
        self._reload: asyncio.Future[ReloadOutcome] | None = None  # the rolling reload under way
        self._reload_again = False
        self._pending_forks: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started_at = time.monotonic()
        self._metrics_dir = ""
        self._control: ControlServer | None = None
        self._health: HealthServer | None = None
        self.health_port: int | None = None

    @property
    def stopping(self) -> bool:
        return self.supervisor.stopping

    @property
    def worker_count(self) -> int:
        """How many workers the master keeps (its slots), whatever their state right now."""
        return len(self.supervisor.slots)

    # ------------------------------------------------------------------ running
    async def run(self) -> int:
        """Start everything, serve until stopped, return the process exit code."""
        if str(self.config.app_dir) not in sys.path:
            sys.path.insert(0, str(self.config.app_dir))
        if self._policy.passes_listener:
            os.set_inheritable(self._policy.listener.fileno(), True)
        self._metrics_dir = make_metrics_dir()
        become_subreaper()
        self._install_signals()
        self._control = await ControlServer.start(self.config.control_socket(self.port), Commands(self))
        log.info(
            "master pid %d: %s (%s) on http://%s:%d, %d worker(s), policy %s",
            os.getpid(),
            self.config.name,
            self.config.app,
            self.config.host,
            self.port,
            self.worker_count,
            self.config.policy,
        )
        try:
            if self.config.health_port is not None:
                self._health = HealthServer(self.health_snapshot, metrics_text(self.status))
                self.health_port = await self._health.start(self.config.host, self.config.health_port)
            if not self._run_master_hook():
                self.exit_code = STARTUP_FAILURE
                return self.exit_code
            self._policy.start(self._loop, self.workers)
            self._apply(self.supervisor.start())
            self.every(self.config.monitor_interval, self._monitor)
            await self._done.wait()
            self.exit_code = self.supervisor.exit_code
        finally:
            await self._cleanup()
        log.info("master pid %d: stopped (exit code %d)", os.getpid(), self.exit_code)
        return self.exit_code

    def _signal_handlers(self) -> dict[int, Callable[[], Any]]:
        """Every signal the master handles, and what it does (the control socket's commands do the same)."""
        stop = {sig: (lambda sig=sig: self._on_stop_signal(sig)) for sig in STOP_SIGNALS}
        reload = {sig: (lambda: self.spawn_task(self.reload)) for sig in RELOAD_SIGNALS}
        scale = {signal.SIGTTIN: lambda: self.scale(1), signal.SIGTTOU: lambda: self.scale(-1)}
        return {signal.SIGCHLD: self._reap, **stop, **reload, **scale}

    def _install_signals(self) -> None:
        # The loop runs each handler as a callback of its own, never inside the signal: they may do real work.
        for sig, handler in self._signal_handlers().items():
            self._loop.add_signal_handler(sig, handler)

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
        for sig in self._signal_handlers():
            self._loop.remove_signal_handler(sig)
        shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def spawn_task(self, fn: Callable[[], Awaitable[Any]]) -> asyncio.Task[Any]:
        """Run a coroutine in the background; the master cancels it when it stops."""
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
        """Run the app's master hook, if it has one (``cluster.hooks``: found without importing the app)."""
        try:
            hook = load_master_hook(self.config.app, self.config.master_hook)
            if hook is not None:
                hook(self)
        except Exception as exc:
            log.error("cannot load %s: %s: %s", self.config.app, type(exc).__name__, exc)
            return False
        return True

    # ------------------------------------------------------- supervisor actions
    def _apply(self, actions: list[Action]) -> None:
        """Carry out what the supervisor decided."""
        if self.supervisor.stopping and not self._intake_stopped:
            self._stop_intake()
        for action in actions:
            match action:
                case Restart(slot, delay):
                    if delay:
                        log.warning("slot %d is crash-looping: restarting it in %.2fs", slot, delay)
                    self._pending_forks[slot] = self._loop.call_later(delay, self._restart_due, slot)
                case Fork(slot):
                    self.fork(slot)
                case Drain(worker_id) if worker_id in self.workers:
                    self.disconnect(self.workers[worker_id])
                case GiveUp(code, reason):
                    log.error(
                        "%s (%s): the master gives up, exit code %d, so its supervisor can restart it",
                        reason,
                        self.config.app,
                        code,
                    )
                case Finished():
                    self._done.set()

    def _stop_intake(self) -> None:
        self._intake_stopped = True
        self._policy.stop()
        for handle in self._pending_forks.values():
            handle.cancel()
        self._pending_forks.clear()

    def _restart_due(self, slot: int) -> None:
        self._pending_forks.pop(slot, None)
        self._apply(self.supervisor.restart_due(slot))

    # ------------------------------------------------------------------ workers
    def fork(self, slot: int | None = None, *, replacing: bool = False) -> Worker:
        """Start a new worker process (in ``slot``, or a new slot)."""
        if slot is None:
            slot = self.supervisor.new_slot()
        master_end, worker_end = socketpair()
        worker_id = self._next_id
        self._next_id += 1
        pid = self._spawn(worker_id, slot, worker_end)
        worker_end.close()
        channel = Channel(master_end, protocol.decode)
        worker = Worker(self, worker_id, slot, channel, pid)
        self.workers[worker_id] = worker
        self.supervisor.forked(worker_id, slot, replacing=replacing)
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
            output = [
                (os.POSIX_SPAWN_OPEN, 1, str(worker_log(cfg.log_dir, slot)), flags, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ]
        return os.posix_spawn(sys.executable, argv, env, file_actions=output, setsigdef=CHILD_DEFAULT_SIGNALS)

    def restarts_of(self, slot: int) -> int:
        return self.supervisor.restarts[slot]

    def broadcast(self, message: Any) -> int:
        """Send ``message`` to every connected worker; returns how many got it."""
        return sum(worker.send(message) for worker in list(self.workers.values()))

    def disconnect(self, worker: Worker) -> None:
        if worker.state in (WorkerState.DRAINING, WorkerState.EXITED):
            return
        worker.exited_after_disconnect = True
        worker.state = WorkerState.DRAINING
        self.supervisor.leaving(worker.id)
        try:
            worker.channel.send_raw(protocol.DISCONNECT)
        except ChannelClosed:
            worker.kill(signal.SIGTERM)
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
    def _on_message(self, worker: Worker, message: protocol.Message, conn: socket.socket | None) -> None:
        if conn is not None:  # workers never send descriptors
            conn.close()
        worker.last_heartbeat = time.monotonic()
        match message:
            case Done(n):  # the hot path: two small reports per handed connection
                worker.ledger.done(n)
                self._policy.worker_freed(worker)
            case Took(n):
                worker.ledger.took(n)
                self._policy.worker_freed(worker)
            case Stats(requests, inflight):
                worker.requests, worker.inflight = int(requests), int(inflight)
            case Msg(data):
                self.emit("message", worker, data)
                worker.emit("message", data)
            case Online():
                if worker.state is WorkerState.STARTING:
                    worker.state = WorkerState.ONLINE
                self.emit("online", worker)
                worker.emit("online")
            case Listening():
                self._on_listening(worker)
            case Recycle() | Leaving():
                # Max requests reached, or someone sent the worker SIGTERM: swap it out without dropping anything.
                if worker.routable and not worker.recycle_requested:
                    worker.recycle_requested = True
                    log.info("worker %d (pid %d) asked to be replaced (%s)", worker.id, worker.pid, message.kind)
                    self.spawn_task(lambda: self.replace(worker))
            case _:
                log.warning("worker %d sent a message only the master sends: %r", worker.id, message)

    def _on_listening(self, worker: Worker) -> None:
        if worker.state not in (WorkerState.STARTING, WorkerState.ONLINE):
            return  # a disconnect overtook it
        worker.state = WorkerState.LISTENING
        worker.listening_at = time.monotonic()
        self.supervisor.listening(worker.id)
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
            worker.id,
            worker.pid,
            worker.slot,
            how,
            "" if expected else " — unexpectedly",
        )
        self.emit("exit", worker, worker.exit_code, worker.exit_signal)
        worker.emit("exit", worker.exit_code, worker.exit_signal)
        self._apply(self.supervisor.exited(worker.id))

    def _forget_metrics(self, pid: int) -> None:
        try:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, self._metrics_dir)
        except Exception:  # metrics are best effort; never let them break supervision
            log.debug("could not mark pid %d dead in the metrics dir", pid, exc_info=True)

    # ------------------------------------------------------- zero-downtime swaps
    async def replace(self, worker: Worker) -> Worker | None:
        """Start a replacement, wait until it listens, then drain and stop ``worker``; returns the replacement."""
        member = self.supervisor.members.get(worker.id)
        if not worker.routable or member is None or member.replacing:
            return None
        self.supervisor.swapping(worker.id, True)
        try:
            successor = self.fork(worker.slot, replacing=True)
            started = await self.wait_for(successor, "listening", self.config.startup_timeout + 1)
            self.supervisor.swapping(successor.id, False)
            if not started or successor.state is not WorkerState.LISTENING:
                log.error("replacement for worker %d failed to start: keeping the old one", worker.id)
                self._kill_if_alive(successor, "failed to start as a replacement")
                return None
            worker.disconnect()
            if worker.state is not WorkerState.EXITED:
                await self.wait_for(worker, "exit", None)
            return successor
        finally:
            self.supervisor.swapping(worker.id, False)

    async def wait_for(self, worker: Worker, event: str, timeout: float | None) -> bool:
        """Wait until ``worker`` emits ``event`` (or exits); False on timeout or exit first."""
        future: asyncio.Future[bool] = self._loop.create_future()

        def settle(result: bool) -> Callable[..., None]:
            return lambda *_: future.done() or future.set_result(result)

        on_event, on_exit = settle(True), settle(event == "exit")
        worker.on(event, on_event)
        worker.on("exit", on_exit)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
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
            current = [self.workers[i] for i in self.supervisor.reload_order() if i in self.workers]
            current = [w for w in current if w.routable]
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
                outcome.replaced.append(
                    {
                        "slot": worker.slot,
                        "old_id": worker.id,
                        "old_pid": worker.pid,
                        "new_id": successor.id,
                        "new_pid": successor.pid,
                    }
                )
            log.info("rolling reload done")
            if not self._reload_again:
                return

    def scale(self, delta: int) -> None:
        """SIGTTIN adds a worker; SIGTTOU drains one away (never below one). ``delta`` is +1 or -1."""
        before = self.worker_count
        self._apply(self.supervisor.scale(delta))
        if self.worker_count != before:
            log.info("scaled %s to %d worker(s)", "up" if delta > 0 else "down", self.worker_count)

    # ---------------------------------------------------------------- stopping
    def stop(self, exit_code: int = 0) -> None:
        """Stop accepting, drain every worker, exit. A second call kills the stragglers."""
        if self.stopping:
            log.warning("master: stopping immediately (SIGKILL to %d worker(s))", len(self.workers))
            for worker in self.workers.values():
                worker.kill(signal.SIGKILL)
            return
        self._apply(self.supervisor.stop(exit_code))

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
                log.info(
                    "worker %d uses %.0f MiB > %g MiB: recycling it",
                    worker.id,
                    worker.rss_bytes / 2**20,
                    self.config.max_rss_mb,
                )
                self.spawn_task(lambda w=worker: self.replace(w))

    def health_snapshot(self) -> dict[str, Any]:
        """What the probes see (cluster.health): never blocked by a worker, computed on demand."""
        listening = [w for w in self.workers.values() if w.routable]
        return {
            "pid": os.getpid(),
            "uptime": round(time.monotonic() - self._started_at, 1),
            "stopping": self.stopping,
            "listening": len(listening),
            "target_workers": self.worker_count,
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
                "target_workers": self.worker_count,
                "recent_crashes": self._crashes.recent,
                "reloading": self._reload is not None,
                "stopping": self.stopping,
                **self._policy.stats(),
            },
            "workers": [w.describe() for w in sorted(self.workers.values(), key=lambda w: (w.slot, w.id))],
        }


def configure_master_logging(level: int = logging.INFO) -> None:
    """The master's lines go to stderr, labelled as the master's, on a handler of their own
    (a master hook that sets up the root logger cannot double or relabel them)."""
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
    return asyncio.run(_serve(config))


async def _serve(config: ClusterConfig) -> int:
    listener = listen(config.host, config.port, config.backlog)  # an OSError (port taken) is the caller's
    return await Cluster(config, asyncio.get_running_loop(), listener).run()
