"""The on-page event timeline: each action as asked, then its measured effect (or why it did not come).

In memory, in the console's one process (it runs one worker: the timeline and the running actions are
its state), newest last, bounded.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Literal

log = logging.getLogger("scalecube.console")

MAX_EVENTS = 500
Kind = Literal["action", "effect", "failed", "info"]


@dataclass(frozen=True)
class Event:
    id: int
    at: float  # Unix time
    kind: Kind
    action: str  # the action's id (``scale-3``), shared by the action and its effect
    text: str


class Timeline:
    def __init__(self, limit: int = MAX_EVENTS) -> None:
        self._events: deque[Event] = deque(maxlen=limit)
        self._ids = itertools.count(1)

    def add(self, kind: Kind, action: str, text: str) -> Event:
        event = Event(next(self._ids), time.time(), kind, action, text)
        self._events.append(event)
        log.info("timeline %s %s: %s", kind, action, text)
        return event

    def since(self, after: int = 0) -> list[dict[str, Any]]:
        return [asdict(e) for e in self._events if e.id > after]
