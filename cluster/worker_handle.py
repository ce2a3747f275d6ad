"""The master's view of one worker process (Node's ``cluster.Worker``)."""

from __future__ import annotations

import enum
import os
import signal
import time
from typing import Any, Protocol

import psutil

from cluster.channel import Channel, ChannelClosed
from cluster.events import EventEmitter
from cluster.handoff import Ledger
from cluster.protocol import Msg, encode


class Owner(Protocol):
    """What a worker handle asks of whoever runs it (the master), without importing it."""

    def disconnect(self, worker: Worker) -> None: ...

    def restarts_of(self, slot: int) -> int: ...


class WorkerState(str, enum.Enum):
    STARTING = "starting"  # forked, interpreter not up yet
    ONLINE = "online"  # running, importing the app
    LISTENING = "listening"  # serving: the only state that gets connections
    DRAINING = "draining"  # disconnect() called: finishing in-flight requests
    EXITED = "exited"


class Worker(EventEmitter):
    """Events: online, listening, message(msg), disconnect, exit(code, signal)."""

    def __init__(self, owner: Owner, worker_id: int, slot: int, channel: Channel, pid: int) -> None:
        super().__init__()
        self._owner = owner
        self.id = worker_id
        self.slot = slot
        self.channel = channel
        self.pid = pid
        self.state = WorkerState.STARTING
        self.started_at = time.monotonic()
        self.listening_at: float | None = None
        self.last_heartbeat = time.monotonic()
        self.requests = 0
        self.inflight = 0
        self.ledger = Ledger()  # connections handed to it and not answered yet (rr, least)
        self.exited_after_disconnect = False
        self.exit_code: int | None = None
        self.exit_signal: str | None = None
        self.recycle_requested = False
        self.rss_bytes = 0
        self.cpu_percent = 0.0
        try:
            self._process: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:
            self._process = None

    @property
    def routable(self) -> bool:
        return self.state is WorkerState.LISTENING and not self.channel.closed

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started_at

    def send(self, message: Any) -> bool:
        """Send a JSON-serialisable message to the worker (``process.on('message')`` there)."""
        try:
            self.channel.send_raw(encode(Msg(message)))
        except ChannelClosed:
            return False
        return True

    def disconnect(self) -> None:
        """Stop routing to this worker, let it finish in-flight work, then it exits."""
        self._owner.disconnect(self)

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.state is not WorkerState.EXITED:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def sample_resources(self) -> None:
        """RSS and CPU% since the previous sample (psutil keeps the previous reading)."""
        if self._process is None:
            return
        try:
            with self._process.oneshot():
                self.rss_bytes = self._process.memory_info().rss
                self.cpu_percent = self._process.cpu_percent(interval=None)
        except psutil.Error:
            pass

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "slot": self.slot,
            "pid": self.pid,
            "state": self.state.value,
            "uptime": round(self.uptime, 1),
            "requests": self.requests,
            "inflight": self.inflight,
            "unanswered": self.ledger.unanswered,
            "untaken": self.ledger.untaken,
            "restarts": self._owner.restarts_of(self.slot),
            "rss_mb": round(self.rss_bytes / 2**20, 1),
            "cpu_percent": round(self.cpu_percent, 1),
        }

    def __repr__(self) -> str:
        return f"<Worker id={self.id} slot={self.slot} pid={self.pid} {self.state.value}>"
