"""Health answered by the master, on a port of its own (``--health-port``).

Why the master: a probe answered by a worker waits behind whatever that worker is
doing. Eight heavy requests made every worker of every replica busy for ~2 s; the
balancers' 1-s checks timed out everywhere and every replica was ejected, so cheap
requests got 503 for 13 s — a probe that confuses *busy* with *dead* turns load into
an outage. The master never serves requests: it answers at once, and it knows what a
probe wants to know — which workers are listening (ready for connections), which
have answered their last hand-off, and what waits.

What it answers (and ``/metrics``: the master's own, see ``cluster.metrics``):

* ``GET /healthz`` (liveness): 200 while the master's loop runs. A master that cannot
  answer this is wedged and should be restarted; a busy or crashing worker is the
  master's business, not the probe's.
* ``GET /readyz`` (readiness): 200 while at least one worker is listening — busy or
  not, it will serve what waits for it — else 503 (starting, or every worker gone).
  Shared dependencies (Redis, auth, ...) are deliberately not part of it: every
  replica shares them, so failing readiness on them ejects every replica at once and
  turns a partial outage into a total one. Each service reports its dependencies in
  its own ``/readyz`` body and ``/metrics`` instead, and answers 503 naming the
  dependency only on the routes that need it.

aiohttp serves it (a well-kept server that runs on the master's own asyncio loop and
leaves its signal handlers alone); the master's loop is never blocked, so the probe
is answered in microseconds.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("scalecube.cluster")


class HealthServer:
    """``/healthz`` and ``/readyz`` for probes, from a ``snapshot()`` of the master's state."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]], metrics: Callable[[], bytes]) -> None:
        self._snapshot = snapshot
        self._metrics = metrics
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> int:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_page)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family)  # port 0: any free one (tests)
        await web.SockSite(self._runner, sock).start()
        bound = int(sock.getsockname()[1])
        log.info("master health on http://%s:%d (/healthz, /readyz)", host, bound)
        return bound

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._metrics(),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        snapshot = self._snapshot()
        return web.json_response({"status": "alive", "pid": snapshot["pid"], "uptime": snapshot["uptime"]})

    async def _readyz(self, request: web.Request) -> web.Response:
        snapshot = self._snapshot()
        ready = snapshot["listening"] > 0 and not snapshot["stopping"]
        body = {"status": "ready" if ready else "not ready", **snapshot}
        if not ready:
            body["message"] = "stopping" if snapshot["stopping"] else "no worker is listening yet (or any more)"
        return web.json_response(body, status=200 if ready else 503)
