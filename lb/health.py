"""Active health checks: every interval, ask each backend ``GET /readyz`` and tell the pool.

The pool turns the verdicts into state (``fall`` failures in a row eject,
``rise`` passes bring back). The proxy ejects passively on a refused
connection; only these checks bring such a backend back.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from lb.pool import Backend, Pool

log = logging.getLogger("scalecube.lb.health")


class HealthChecker:
    def __init__(self, pool: Pool, *, path: str = "/readyz", interval: float = 1.0, timeout: float = 1.0) -> None:
        if not path.startswith("/"):
            raise ValueError(f"health check path must start with '/', got {path!r}")
        self.pool = pool
        self.path = path
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

    async def check(self, client: httpx.AsyncClient, backend: Backend) -> bool:
        host, port = backend.address
        host = f"[{host}]" if ":" in host else host
        try:
            async with asyncio.timeout(self.timeout):  # httpx's timeouts are per phase; this bounds the whole check
                response = await client.get(f"http://{host}:{port}{self.path}")
        except (httpx.HTTPError, TimeoutError):  # refused, reset, timed out: all the same verdict
            return False
        return response.status_code == 200

    async def check_all(self, client: httpx.AsyncClient) -> None:
        """One round: every backend discovery still lists, concurrently."""
        backends = [b for b in self.pool.backends.values() if not b.removed]
        verdicts = await asyncio.gather(*(self.check(client, b) for b in backends))
        for backend, ok in zip(backends, verdicts, strict=True):
            self.pool.report_check(backend, ok)
        self.rounds += 1

    async def run(self) -> None:
        async with self.http_client() as client:
            while True:
                started = time.monotonic()
                await self.check_all(client)
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def describe(self) -> dict[str, object]:
        return {"path": self.path, "interval": self.interval, "timeout": self.timeout, "rise": self.pool.rise,
                "fall": self.pool.fall, "rounds": self.rounds}  # fmt: skip
