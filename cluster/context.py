"""The worker's side of the channel, for app code (Node's ``process.send`` / ``process.on('message')``).

from cluster import current_worker

worker = current_worker()          # None when the app runs outside a cluster
if worker:
    worker.on_message(handle)      # called with whatever the master sent / broadcast
    worker.send({"hello": "master"})
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from cluster.channel import Channel, ChannelClosed
from cluster.protocol import Msg, encode

log = logging.getLogger("scalecube.cluster")

_current: WorkerContext | None = None


class WorkerContext:
    def __init__(self, worker_id: int, slot: int, channel: Channel) -> None:
        self.id = worker_id
        self.slot = slot
        self._channel = channel
        self._handlers: list[Callable[[Any], Any]] = []
        self._background: set[asyncio.Task[Any]] = set()

    def send(self, message: Any) -> bool:
        """Send a JSON-serialisable message to the master; False if the master is gone."""
        try:
            self._channel.send_raw(encode(Msg(message)))
        except ChannelClosed:
            return False
        return True

    def on_message(self, handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
        self._handlers.append(handler)
        return handler

    def dispatch(self, message: Any) -> None:
        for handler in list(self._handlers):
            try:
                result = handler(message)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
            except Exception:
                log.exception("message handler %r failed", handler)


def current_worker() -> WorkerContext | None:
    return _current


def set_current_worker(context: WorkerContext | None) -> None:
    global _current
    _current = context
