"""A minimal event emitter, so the Python API reads like Node's ``cluster``."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

log = logging.getLogger("scalecube.cluster")


class EventEmitter:
    def __init__(self) -> None:
        self._listeners: defaultdict[str, list[Callable[..., Any]]] = defaultdict(list)

    def on(self, event: str, listener: Callable[..., Any]) -> Callable[..., Any]:
        self._listeners[event].append(listener)
        return listener

    def off(self, event: str, listener: Callable[..., Any]) -> None:
        if listener in self._listeners[event]:
            self._listeners[event].remove(listener)

    def emit(self, event: str, *args: Any) -> None:
        # A listener's bug must not take the master down with it.
        for listener in list(self._listeners[event]):
            try:
                listener(*args)
            except Exception:
                log.exception("listener for %r failed", event)
