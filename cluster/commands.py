"""What a master's control-socket commands do: ``status``, ``reload``, ``scale``, ``stop``.

``cluster.control`` carries one JSON request and one JSON answer per line; this module turns a
request into calls on the master and shapes the answer; the master (``cluster.master``) does the
work. The commands do what the signals do (SIGUSR2/SIGHUP, SIGTTIN/SIGTTOU, SIGTERM), with an
answer: ``reload`` can wait until every worker is replaced, ``scale`` goes ``to`` a count as well as
by a ``delta``, a second ``stop`` (or ``force``) kills what still drains.

The master is reached through ``Controlled`` only, so this module imports nothing of it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

Answer = dict[str, Any]
Request = dict[str, Any]


class Outcome(Protocol):
    def as_dict(self) -> Answer: ...


class Controlled(Protocol):
    """What the commands need of a master."""

    @property
    def stopping(self) -> bool: ...

    @property
    def worker_count(self) -> int: ...

    def status(self) -> Answer: ...

    def spawn_task(self, fn: Callable[[], Awaitable[Any]]) -> asyncio.Task[Any]: ...

    async def reload(self) -> Outcome: ...

    def scale(self, delta: int) -> None: ...

    def stop(self, exit_code: int = 0) -> None: ...


class Commands:
    """The control socket's handler: ``await Commands(master)(request)``."""

    def __init__(self, master: Controlled) -> None:
        self._master = master
        self._table: dict[str, Callable[[Request], Awaitable[Answer]]] = {
            "status": self._status,
            "reload": self._reload,
            "scale": self._scale,
            "stop": self._stop,
        }

    async def __call__(self, request: Request) -> Answer:
        command = self._table.get(request.get("cmd"))  # type: ignore[arg-type]
        if command is None:
            known = ", ".join(self._table)
            return {"ok": False, "error": f"unknown command {request.get('cmd')!r}; try {known}"}
        return await command(request)

    async def _status(self, request: Request) -> Answer:
        return self._master.status()

    async def _reload(self, request: Request) -> Answer:
        """Start a rolling reload; with ``wait``, answer when it is done, naming each worker replaced."""
        task = self._master.spawn_task(self._master.reload)
        if not request.get("wait"):
            return {"ok": True, "message": "rolling reload started"}
        try:
            return (await task).as_dict()
        except asyncio.CancelledError:
            return {"ok": False, "replaced": [], "error": "the master stopped during the reload"}

    async def _scale(self, request: Request) -> Answer:
        """By ``delta`` workers, or ``to`` a count; never below one."""
        count = self._master.worker_count
        try:
            delta = int(request["to"]) - count if "to" in request else int(request.get("delta", 0))
        except (TypeError, ValueError):
            return {"ok": False, "error": "scale needs an integer 'delta' or 'to'"}
        if count + delta < 1:
            return {"ok": False, "error": "a cluster keeps at least 1 worker (stop it instead)"}
        for _ in range(abs(delta)):
            self._master.scale(1 if delta > 0 else -1)
        return {"ok": True, "workers": self._master.worker_count}

    async def _stop(self, request: Request) -> Answer:
        if not self._master.stopping or request.get("force"):
            self._master.stop()  # a second stop kills the stragglers
        return {"ok": True, "pid": os.getpid(), "message": "stopping: every worker drains, then the master exits"}
