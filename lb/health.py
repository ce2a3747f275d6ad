"""Active health checks: every interval, ask each backend ``GET /readyz`` and tell the pool.

The pool turns the verdicts into state (``fall`` failures in a row eject,
``rise`` passes bring back, and too few healthy backends put it in panic). The
proxy ejects passively on a refused connection; only these checks bring such a
backend back.

Where the check goes is the group's business (``check_path``, ``check_port`` in
``[upstreams.NAME]``): by default the backend's own port, so a check waits behind
whatever the backend's workers are busy with; pointed at a port answered by a
cluster's master it would not.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from lb.pool import Backend, Pool

log = logging.getLogger("scalecube.lb.health")

DEFAULT_CHECK_PATH = "/readyz"


class HealthChecker:
    def __init__(
        self,
        pool: Pool,
        *,
        path: str = DEFAULT_CHECK_PATH,
        port: int | None = None,
        interval: float = 1.0,
        timeout: float = 1.0,
    ) -> None:
        if not path.startswith("/"):
            raise ValueError(f"health check path must start with '/', got {path!r}")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"health check port must be from 1 to 65535, got {port!r}")
        self.pool = pool
        self.path = path
        self.port = port  # None: each backend's own port
        self.interval = interval
        self.timeout = timeout
        self.rounds = 0

    def http_client(self) -> httpx.AsyncClient:
        """The client ``run`` uses. Rounds by hand (tests):
        ``async with checker.http_client() as client: await checker.check_all(client)``."""
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout),
            # A fresh connection per check: it proves the backend still accepts connections, and with the
            # cluster's rr hand-off it may land on any worker, not the one a pooled connection is pinned to.
            limits=httpx.Limits(max_keepalive_connections=0, max_connections=None),
            headers={"connection": "close", "user-agent": "scalecube-lb-health"},
            trust_env=False,  # an HTTP(S)_PROXY in the environment must not reroute checks
            follow_redirects=False,
        )

    def url(self, backend: Backend) -> str:
        host, port = backend.address
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port or port}{self.path}"

    async def check(self, client: httpx.AsyncClient, backend: Backend) -> tuple[bool, bool | None]:
        """(passed, connected): connected is False when no connection could be opened (refused: dead),
        True when the backend answered anything, None when it cannot be told (it timed out)."""
        try:
            async with asyncio.timeout(self.timeout):  # httpx's timeouts are per phase; this bounds the whole check
                response = await client.get(self.url(backend))
        except httpx.ConnectError:
            return False, False
        except (httpx.HTTPError, TimeoutError):  # timed out, reset mid-answer: unhealthy, maybe only busy
            return False, None
        return response.status_code == 200, True

    async def check_all(self, client: httpx.AsyncClient) -> None:
        """One round: every backend discovery still lists, concurrently."""
        backends = [b for b in self.pool.backends.values() if not b.removed]
        verdicts = await asyncio.gather(*(self.check(client, b) for b in backends))
        for backend, (ok, connected) in zip(backends, verdicts, strict=True):
            self.pool.report_check(backend, ok, connected=connected)
        self.rounds += 1

    async def run(self) -> None:
        async with self.http_client() as client:
            while True:
                started = time.monotonic()
                await self.check_all(client)
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def describe(self) -> dict[str, object]:
        return {
            "path": self.path,
            "port": self.port,
            "interval": self.interval,
            "timeout": self.timeout,
            "rise": self.pool.rise,
            "fall": self.pool.fall,
            "rounds": self.rounds,
        }
