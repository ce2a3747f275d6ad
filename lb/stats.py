"""The balancer's own counters (plain ints the proxy bumps on its event loop), and the
``BalancerState`` bundle the admin port reads.

No locks (one loop) and no Prometheus objects on the request path: the admin
port's collector reads these fields when it is scraped. Each field says in its
metadata whether it is a counter or a gauge and what it means, so a new field
shows up in ``/status.json`` and ``/metrics`` without touching the admin code.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lb.config import Route
    from lb.discovery import Discovery
    from lb.health import HealthChecker
    from lb.pool import Pool


def _counter(help_text: str) -> int:
    return field(default=0, metadata={"kind": "counter", "help": help_text})


def _gauge(help_text: str) -> int:
    return field(default=0, metadata={"kind": "gauge", "help": help_text})


@dataclass(slots=True)
class BalancerStats:
    requests: int = _counter("Requests received from clients (any outcome).")
    responses: int = _counter("Responses sent to clients (any status).")
    retries: int = _counter("Requests sent again to another backend after one failed.")
    rejected_400: int = _counter("Requests refused as malformed, or breaking the Host rules (400).")
    rejected_431: int = _counter("Requests refused for too large or too many headers (431).")
    rejected_417: int = _counter("Requests refused for an expectation other than 100-continue (417).")
    rejected_timeout: int = _counter("Connections answered 408: the request head took longer than the header timeout.")
    no_backend_503: int = _counter("Requests answered 503: their upstream has no backend at all.")
    unreachable_503: int = _counter("Requests answered 503: no backend tried accepted a connection.")
    upstream_failed_502: int = _counter("Requests answered 502: every try failed to get a response.")
    upstream_timeout_504: int = _counter(
        "Requests answered 504: the backend took longer than the read timeout "
        "(never retried: a slow request sent again only doubles the load)."
    )
    client_body_timeout_408: int = _counter("Requests answered 408: the client's request body stalled.")
    client_aborts: int = _counter("Requests whose client went away before their response was complete.")
    responses_cut: int = _counter("Responses a backend broke off mid-body (it died): begun, so not replayable.")
    shed_retries: int = _counter("Requests a replica's cluster master shed (503, nothing run) sent to another backend.")
    unrouted_404: int = _counter("Requests that matched no route (404).")
    internal_404: int = _counter("Requests for an internal path (the config's internal list), refused with a 404.")
    connections_total: int = _counter("Client connections accepted.")
    connections_rejected: int = _counter("Client connections closed at once: max connections reached.")
    connections_rejected_per_client: int = _counter(
        "Client connections answered 429 and closed: their address already had max_connections_per_client open."
    )
    connections_open: int = _gauge("Client connections open now.")

    def snapshot(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def stat_fields() -> list[tuple[str, str, str]]:
    """(name, kind, help) of every counter and gauge, in declaration order."""
    return [(f.name, f.metadata["kind"], f.metadata["help"]) for f in fields(BalancerStats)]


@dataclass
class BalancerState:
    """What the admin port shows: the live objects, read at request/scrape time (by upstream name)."""

    pools: dict[str, Pool]
    stats: BalancerStats = field(default_factory=BalancerStats)
    discoveries: dict[str, Discovery] = field(default_factory=dict)
    health_checks: dict[str, HealthChecker] = field(default_factory=dict)
    routes: Sequence[Route] = ()
    started_at: float = field(default_factory=time.time)  # wall clock, for humans and process_start_time-style metrics
