"""What the console's panels show, from Prometheus: the recording rules (infra/prometheus/rules.yml) and the
cluster masters' own series, shaped per service, per container (``instance``: its address) and per worker.

One ``snapshot()`` is one round of instant queries, run together and evaluated at one instant, so that the
numbers of one draw agree with each other (a container's workers add up to the container, whatever scrape lands
while the queries run). The page polls it every second and keeps the history for its charts itself. The topology's
numbers are the rules' (1 m windows); the live charts read the raw counters over LIVE_WINDOW (Prometheus scrapes
every second: infra/prometheus/prometheus.yml), and each chart comes with its data's timestamp (``sampled_at``: the
oldest of the newest samples it is drawn from), so the page shows how far behind it is.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from services.console.prometheus import Labels, Prometheus

# name -> PromQL. Rates in requests/s, latencies in seconds, error ratios 0..1.
QUERIES: dict[str, str] = {
    "service_rate": "service:http_requests:rate1m",
    "service_errors": "service:http_requests_errors:ratio_rate1m",
    "service_p50": "service:http_request_duration_seconds:p50_1m",
    "service_p95": "service:http_request_duration_seconds:p95_1m",
    "service_p99": "service:http_request_duration_seconds:p99_1m",
    "instance_rate": "instance:http_requests:rate1m",
    "instance_errors": "instance:http_requests_errors:ratio_rate1m",
    "instance_p50": "instance:http_request_duration_seconds:p50_1m",
    "instance_p95": "instance:http_request_duration_seconds:p95_1m",
    "instance_p99": "instance:http_request_duration_seconds:p99_1m",
    "instance_shed": "instance:scalecube_cluster_shed:rate1m",
    "worker_rate": "worker:http_requests:rate1m",
    "worker_p95": "worker:http_request_duration_seconds:p95_1m",
    # Every worker a master keeps (not only the ones that answered): its slot, in-flight and crash restarts.
    "worker_inflight": 'scalecube_cluster_worker_inflight{endpoint="master"}',
    "worker_restarts": 'scalecube_cluster_worker_restarts{endpoint="master"}',
    # The balancer: requests per second it sent to each backend (HAProxy's exporter), and its 5xx.
    "balancer_rate": "sum by (proxy) (rate(haproxy_backend_http_requests_total[1m]))",
    "balancer_5xx": 'sum by (proxy) (rate(haproxy_backend_http_responses_total{code="5xx"}[1m]))',
    # GET /report's cache: lookups per second and since start, by outcome (hit, stale, waited, computed).
    "cache_rate": "sum by (outcome) (rate(cache_lookups_total[1m]))",
    "cache_total": "sum by (outcome) (max by (instance, outcome) (cache_lookups_total))",
    "up": "up",
}

# The live charts' rate window: five 1 s scrapes, so a step in the load shows in full within 5 s (a 1 m rule
# would take the minute).
LIVE_WINDOW = "5s"
_REQUESTS = 'http_requests_total{route!="/metrics"}'
_API_REQUESTS = 'http_requests_total{service="api", route!="/metrics"}'
_API_BUCKETS = 'http_request_duration_seconds_bucket{service="api", route!="/metrics"}'
LIVE_QUERIES: dict[str, str] = {
    "instance_rate": f"sum by (service, instance) (rate({_API_REQUESTS}[{LIVE_WINDOW}]))",
    "worker_rate": f"sum by (service, instance, worker) (rate({_API_REQUESTS}[{LIVE_WINDOW}]))",
    "balancer_rate": f'sum by (proxy) (rate(haproxy_backend_http_requests_total{{proxy="api"}}[{LIVE_WINDOW}]))',
    **{
        f"p{q}": f"histogram_quantile(0.{q}, sum by (le) (rate({_API_BUCKETS}[{LIVE_WINDOW}])))"
        for q in ("50", "95", "99")
    },
    # 5xx share per service; 0, not absent, where its requests had no 5xx.
    "errors": (
        f'(sum by (service) (rate(http_requests_total{{route!="/metrics", status=~"5.."}}[{LIVE_WINDOW}]))'
        f" or 0 * sum by (service) (rate({_REQUESTS}[{LIVE_WINDOW}])))"
        f" / sum by (service) (rate({_REQUESTS}[{LIVE_WINDOW}]))"
    ),
}
# Each chart's data timestamp: the scrape time of the stalest series it is drawn from (seconds since the epoch).
SAMPLED_AT: dict[str, str] = {
    "rates": 'min(timestamp(http_requests_total{service="api"}) or timestamp(haproxy_backend_http_requests_total))',
    "workers": 'min(timestamp(http_requests_total{service="api"}))',
    "latency": 'min(timestamp(http_request_duration_seconds_count{service="api"}))',
    "errors": "min(timestamp(http_requests_total))",
}


def _by(series: list[tuple[Labels, float]], *keys: str) -> dict[str, float]:
    return {"/".join(labels.get(k, "") for k in keys): value for labels, value in series}


async def snapshot(prometheus: Prometheus) -> dict[str, Any]:
    """Every panel's numbers now; keys joined with "/" (``service/instance/worker``)."""
    queries = {**QUERIES, **{f"live_{k}": v for k, v in LIVE_QUERIES.items()}}
    queries |= {f"sampled_{k}": v for k, v in SAMPLED_AT.items()}
    at = time.time()
    results = await asyncio.gather(*(prometheus.query(expr, at) for expr in queries.values()))
    raw = dict(zip(queries, results, strict=True))
    return {
        "services": {
            metric: _by(raw[f"service_{metric}"], "service") for metric in ("rate", "errors", "p50", "p95", "p99")
        },
        "instances": {
            metric: _by(raw[f"instance_{metric}"], "service", "instance")
            for metric in ("rate", "errors", "p50", "p95", "p99", "shed")
        },
        "workers": {
            "rate": _by(raw["worker_rate"], "service", "instance", "worker"),
            "p95": _by(raw["worker_p95"], "service", "instance", "worker"),
            "inflight": _by(raw["worker_inflight"], "service", "instance", "worker"),
            "restarts": _by(raw["worker_restarts"], "service", "instance", "worker"),
        },
        "balancer": {"rate": _by(raw["balancer_rate"], "proxy"), "5xx": _by(raw["balancer_5xx"], "proxy")},
        "cache": {"rate": _by(raw["cache_rate"], "outcome"), "total": _by(raw["cache_total"], "outcome")},
        "targets_up": _by(raw["up"], "job", "instance", "endpoint"),
        "live": {
            "window": LIVE_WINDOW,
            "instances": _by(raw["live_instance_rate"], "service", "instance"),
            "workers": _by(raw["live_worker_rate"], "service", "instance", "worker"),
            "balancer": _by(raw["live_balancer_rate"], "proxy"),
            "latency": {f"p{q}": next((v for _, v in raw[f"live_p{q}"]), None) for q in ("50", "95", "99")},
            "errors": _by(raw["live_errors"], "service"),
            "sampled_at": {chart: next((v for _, v in raw[f"sampled_{chart}"]), None) for chart in SAMPLED_AT},
        },
    }
