"""The Python balancer as a running thing: listener, pools, background tasks, graceful stop.

``Balancer`` is handed its collaborators (pools, router, sticky cookie, discovery
and health tasks) so that each is built — and tested — on its own; ``BalancerApp``
in ``lb.app`` assembles them from the configuration file and the CLI.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
import time
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any

from lb.client import ClientConnection
from lb.config import Limits, Timeouts
from lb.pool import Pool
from lb.proxy import Refusals, RouteTable
from lb.stats import BalancerStats
from lb.sticky import StickyCookie
from lb.upstream import ConnectionPool

log = logging.getLogger("scalecube.lb")

# Stopping is bounded, whatever a piece of it does. After the drain the background tasks (discovery, health
# checks, the admin server) are cancelled and get STOP_GRACE to finish; one still running after that is named
# in the log and left behind, not waited for. And since a call that never returns would block the event loop
# itself, where no task can help, a watchdog thread (faulthandler) armed at the signal dumps every thread's
# stack into the log and ends the process if stopping outlasts the drain by HARD_STOP_MARGIN: HAProxy's
# hard-stop-after. Unbounded, a stuck balancer is SIGKILLed by whoever stops it after its own patience ran out
# (in CI a `scalecube down` once waited 35 s on one, its log silent after "stopping"), and nobody learns why.
STOP_GRACE = 1.0
HARD_STOP_MARGIN = STOP_GRACE + 2.0


class Balancer:
    """What ``lb.client.ClientConnection`` (its ``Door``) and ``lb.proxy.Exchange`` (its ``Gateway``) work in."""

    def __init__(
        self,
        *,
        pools: dict[str, Pool],
        router: RouteTable,
        timeouts: Timeouts,
        limits: Limits,
        stats: BalancerStats,
        sticky: StickyCookie | None = None,
        background: Iterable[Awaitable[Any]] = (),
        internal: Refusals | None = None,
    ) -> None:
        self.pools = pools
        self.router = router
        self.internal = internal  # requests the public port refuses (lb.config.InternalPaths); None: none
        self.timeouts = timeouts
        self.limits = limits
        self.stats = stats
        self.sticky = sticky
        self.connections = ConnectionPool()
        self.clients: set[ClientConnection] = set()
        self.connections_by_client: dict[bytes, int] = {}  # client address -> its open connections
        self.draining = False
        self.started_at = time.time()
        self._background = list(background)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.AbstractServer | None = None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(self, host: str, port: int, backlog: int = 2048) -> int:
        """Start listening and the background work; returns the bound port."""
        for work in self._background:
            self.spawn(work)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ClientConnection(self), host, port, backlog=backlog, reuse_address=True
        )
        bound = self._server.sockets[0].getsockname()[1]
        log.info(
            "balancer listening on http://%s:%d (%s)",
            host,
            bound,
            ", ".join(f"{p.name}: {p.policy}" for p in self.pools.values()),
        )
        return bound

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (bounded), close the rest."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        for client in list(self.clients):
            client.drain()
        deadline = time.monotonic() + self.timeouts.drain
        while self.clients and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for client in list(self.clients):
            client.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=STOP_GRACE)
            for task in stuck:
                log.warning(
                    "balancer: %r is still running %gs after it was cancelled; stopping without it", task, STOP_GRACE
                )
        self.connections.close_all()
        log.info("balancer stopped")

    async def run_until_signalled(self, host: str, port: int, extra: Iterable[Awaitable[Any]] = ()) -> None:
        """Serve until SIGTERM/SIGINT, then stop gracefully."""
        loop = asyncio.get_running_loop()
        stopped = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopped.set)
        await self.start(host, port)
        for work in extra:
            self.spawn(work)  # type: ignore[arg-type]
        await stopped.wait()
        log.info("balancer: stopping (draining up to %gs)", self.timeouts.drain)
        # Armed until the process exits: asyncio.run's own teardown waits for any task stop() left behind.
        faulthandler.dump_traceback_later(self.timeouts.drain + HARD_STOP_MARGIN, exit=True)
        await self.stop()
