"""Prometheus metrics of the balancer, read from its live objects at scrape time.

A custom collector instead of Counter/Gauge objects: the request path only
bumps plain ints (``Backend.served``, ``BalancerStats.requests``...), and the
cost of formatting is paid by the scraper, once per scrape.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lb.stats import BalancerState, stat_fields

PREFIX = "scalecube_lb_"
BACKEND_LABELS = ["upstream", "backend"]
BACKEND_COUNTERS = {  # Backend attribute -> help
    "served": "Requests a backend answered.",
    "failed": "Requests that got no response from a backend (connection failed, closed or reset).",
    "timeouts": "Requests a backend accepted but did not answer within the read timeout (504, not retried).",
    "retried_away": "Requests moved to another backend after failing on this one.",
    "ejections": "Times a backend was ejected passively (connection refused or reset).",
}


class BalancerCollector(Collector):
    def __init__(self, state: BalancerState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        yield from self._backends()
        yield from self._balancer()

    def _backends(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            PREFIX + "backend_up",
            "1 if the backend takes new requests (healthy and discovered).",
            labels=BACKEND_LABELS,
        )
        inflight = GaugeMetricFamily(
            PREFIX + "backend_inflight", "Requests in flight to the backend.", labels=BACKEND_LABELS
        )
        counters = {
            attr: CounterMetricFamily(PREFIX + f"backend_{attr}", help_text, labels=BACKEND_LABELS)
            for attr, help_text in BACKEND_COUNTERS.items()
        }
        counts = GaugeMetricFamily(
            PREFIX + "upstream_backends", "Backends of an upstream, by state.", labels=["upstream", "state"]
        )
        panic = GaugeMetricFamily(
            PREFIX + "upstream_panic",
            "1 while too few of an upstream's backends are healthy and it routes to all of them.",
            labels=["upstream"],
        )
        panic_requests = CounterMetricFamily(
            PREFIX + "upstream_panic_requests",
            "Requests routed while their upstream was in panic.",
            labels=["upstream"],
        )
        for name, pool in self.state.pools.items():
            by_state = {"available": 0, "ejected": 0, "removed": 0}
            for backend in pool.backends.values():
                labels = [name, backend.label]
                up.add_metric(labels, 1 if backend.available else 0)
                inflight.add_metric(labels, backend.inflight)
                for attr, family in counters.items():
                    family.add_metric(labels, getattr(backend, attr))
                by_state["removed" if backend.removed else "available" if backend.healthy else "ejected"] += 1
            for state, count in by_state.items():
                counts.add_metric([name, state], count)
            panic.add_metric([name], 1 if pool.panic else 0)
            panic_requests.add_metric([name], pool.panic_requests)
        yield from (up, inflight, *counters.values(), counts, panic, panic_requests)

    def _balancer(self) -> Iterator[Metric]:
        stats = self.state.stats
        for name, kind, help_text in stat_fields():
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(PREFIX + name, help_text, value=getattr(stats, name))
        discovery_ok = GaugeMetricFamily(
            PREFIX + "discovery_ok",
            "0 while an upstream's discovery fails (its last backend list is kept).",
            labels=["upstream", "kind"],
        )
        for name, discovery in getattr(self.state, "discoveries", {}).items():
            discovery_ok.add_metric([name, discovery.kind], 0 if discovery.error else 1)
        yield discovery_ok
        yield GaugeMetricFamily(
            PREFIX + "start_time_seconds", "When the balancer started (Unix time).", value=self.state.started_at
        )


def balancer_registry(state: BalancerState) -> CollectorRegistry:
    """A registry of its own: none of the process-global default registry's collectors, no name clashes."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BalancerCollector(state))
    return registry
