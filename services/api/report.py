"""``GET /report``: something slow to compute, served through a read-through cache (``scalecube demo cache``).

**The source** (``ReportSource``) is a stand-in for an expensive query: each computation is counted
at the source, in the api's Redis (``REPORT_READS_KEY``, and ``REPORT_READERS_KEY``: computations per
reader, ``host/pid`` as in X-Served-By, so containers' pids never mix), and slowed by
``REPORT_SOURCE_DELAY``. Recording the count is best effort: with the memory cache the route must keep
answering while Redis is down (the demo counts nothing then anyway).

**The cache** is ``CACHE_BACKEND``: ``redis`` (``shared_cache.ReadThroughCache``: one copy for every worker
of every container, recomputed by exactly one caller per expiry) or ``memory``
(``shared_cache.MemoryReadThroughCache``: a copy per worker process, each recomputing its own: the
guides' broken case). A computed report is fresh for ``CACHE_TTL_SECONDS``.

With the Redis cache and Redis down, the route answers 503 naming ``redis`` (with Retry-After, as every
``DependencyUnavailable``); no other route depends on this one. Each answer says how its value was got
(``outcome``: hit, stale, waited, computed), and ``/metrics`` counts the lookups by backend and outcome
(``cache_lookups_total``; the ``computed`` ones are the recomputations).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from typing import Any

from fastapi import APIRouter, Query, Request
from prometheus_client import Counter

from kit.errors import DependencyUnavailable
from services.api.settings import ApiSettings
from services.common.errors import error_responses
from services.common.identity import current_identity
from shared_cache.cache import OUTCOMES, Lookup, MemoryReadThroughCache, ReadThroughCache
from shared_cache.connection import RedisConnector

log = logging.getLogger("scalecube.api.report")

REPORT_READS_KEY = "scalecube:report:source_reads"  # how many reports were computed
REPORT_READERS_KEY = "scalecube:report:source_readers"  # ... and by which process ("host/pid" -> computations)
CACHE_PREFIX = "scalecube:report:cache:"  # the Redis cache's keys: <prefix>data:<key>, <prefix>lock:<key>
DEFAULT_KEY = "daily"
KEY_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"  # a report's name: bounded, so the keys a client can make are too
# The lock must outlive the computation (past it, a second caller may start one); a caller with no value to
# serve waits for the winner's at most the computation plus this.
LOCK_MARGIN_SECONDS = 5.0
WAIT_MARGIN_SECONDS = 5.0
ROWS = 12  # the report's body: a few numbers that cost nothing but look computed


class ReportSource:
    """The slow "database": every computation counted at the source (by reader) and slowed."""

    def __init__(self, connector: RedisConnector, delay: float) -> None:
        self.connector = connector
        self.delay = delay

    async def compute(self, key: str) -> dict[str, Any]:
        reader = current_identity().served_by
        try:
            await self._record(reader)
        except DependencyUnavailable as exc:
            log.warning("report computation not recorded: %s", exc)
        await asyncio.sleep(self.delay)  # the cost of a real query, made visible
        digest = hashlib.sha256(key.encode()).digest()
        return {
            "rows": [int.from_bytes(digest[i : i + 2], "big") for i in range(0, 2 * ROWS, 2)],
            "computed_by": reader,
            "computed_at": time.time(),
        }

    async def _record(self, reader: str) -> None:
        async with self.connector.operation("record a report computation"):
            async with self.connector.client.pipeline(transaction=False) as pipe:
                await pipe.incr(REPORT_READS_KEY).hincrby(REPORT_READERS_KEY, reader, 1).execute()


@functools.cache
def lookups_counter() -> Counter:
    """Created on first use (after PROMETHEUS_MULTIPROC_DIR is known, as the request metrics)."""
    return Counter("cache_lookups_total", "Report cache lookups, by how the value was got.", ["backend", "outcome"])


class Reports:
    """The route's state: the source, the cache the settings chose, and the TTL."""

    def __init__(self, settings: ApiSettings, connector: RedisConnector) -> None:
        self.backend = settings.cache_backend
        self.ttl = settings.cache_ttl_seconds
        self.source = ReportSource(connector, settings.report_source_delay)
        wait = settings.report_source_delay + WAIT_MARGIN_SECONDS
        self.cache: ReadThroughCache | MemoryReadThroughCache = (
            ReadThroughCache(
                connector,
                prefix=CACHE_PREFIX,
                lock_ttl=settings.report_source_delay + LOCK_MARGIN_SECONDS,
                wait_timeout=wait,
            )
            if self.backend == "redis"
            else MemoryReadThroughCache(wait_timeout=wait)
        )
        counter = lookups_counter()
        self._counted = {outcome: counter.labels(self.backend, outcome) for outcome in OUTCOMES}

    async def lookup(self, key: str) -> Lookup:
        found = await self.cache.lookup(key, self.ttl, lambda: self.source.compute(key))
        self._counted[found.outcome].inc()
        return found


router = APIRouter(tags=["cache"])


@router.get(
    "/report",
    responses=error_responses(
        503,
        why={
            503: "the cache's Redis is down (`redis`, CACHE_BACKEND=redis), or no value came from another "
            "caller's computation in time (`cache`)"
        },
    ),
)
async def report(
    request: Request,
    key: str = Query(DEFAULT_KEY, pattern=KEY_PATTERN, description="the report's name: a-z, 0-9 and -, 1-32"),
) -> dict[str, Any]:
    reports: Reports = request.app.state.reports
    found = await reports.lookup(key)
    value = found.value
    return {
        "key": key,
        **value,
        "age_seconds": round(max(0.0, time.time() - value["computed_at"]), 3),
        "cache": reports.backend,
        "ttl_seconds": reports.ttl,
        "outcome": found.outcome,
        "served_by": current_identity().served_by,
    }
