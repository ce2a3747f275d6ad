"""infra/prometheus, offline: the scrape configuration and the recording rules are valid for Debian's Prometheus
(2.42, the air-gapped stand-in's), the rules compute what their names say (``promtool test rules`` on series shaped
like the services'), and every service of docker-compose.yml that exports metrics is scraped on its ports.

promtool comes with Debian's ``prometheus`` package: skipped without it, but a failure under CI (which installs it).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml
from typer.testing import CliRunner

from cluster import metrics as cluster_metrics
from infra.paths import REPO
from infra.prometheus import CONFIG, RULES, RULES_TEST
from infra.prometheus.local import local_config
from scalecube import cli as scalecube_cli
from services.common import metrics as service_metrics
from tests.support.prometheus import require_prometheus_binary

SCRAPED_PORTS = {8000, 8001}  # the app's /metrics and the cluster master's (health port)


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_prometheus_binary("promtool"), *map(str, args)], capture_output=True, text=True, timeout=60
    )


def test_promtool_accepts_the_config_and_the_rules():
    for args in (("check", "config", CONFIG), ("check", "rules", RULES)):
        done = run_promtool(*args)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_recording_rules_compute_what_their_names_say():
    done = run_promtool("test", "rules", RULES_TEST)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_rule_counting_prometheus_scrapes_as_traffic_fails_the_rules_test(tmp_path):
    """The rules test can fail: with the scrapes (route="/metrics") counted, the rates and quantiles it expects differ."""
    (tmp_path / "rules.yml").write_text(RULES.read_text().replace('route!="/metrics"', 'route!="/nothing"'))
    (tmp_path / "rules_test.yml").write_text(RULES_TEST.read_text())
    done = run_promtool("test", "rules", tmp_path / "rules_test.yml")
    assert done.returncode != 0 and "service:http_requests:rate1m" in done.stdout + done.stderr, done.stdout


def test_the_rules_use_the_metric_names_the_services_export():
    rules = RULES.read_text()
    metrics = service_metrics.http_metrics()
    # prometheus_client names a counter without its _total, and a histogram's buckets are NAME_bucket.
    assert f"{metrics.requests._name}_total" in rules
    assert f"{metrics.duration._name}_bucket" in rules
    assert "worker" in metrics.requests._labelnames  # the per-worker rules group by it
    assert {"route", "status"} <= set(metrics.requests._labelnames)
    assert f"{cluster_metrics.PREFIX}shed_total" in rules and "shed" in cluster_metrics.HANDOFF_COUNTERS
    assert "/metrics" in service_metrics.metrics_router().routes[0].path  # what the rules leave out


def compose_services() -> dict[str, dict]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]


def scrape_jobs() -> dict[str, dict]:
    return {job["job_name"]: job for job in yaml.safe_load(CONFIG.read_text())["scrape_configs"]}


def test_every_cluster_in_compose_is_scraped_by_dns_on_both_ports_with_its_service_label():
    clusters = [
        name
        for name, service in compose_services().items()
        if service.get("command", [None])[:2] == ["scalecube", "serve"]
    ]
    assert {"api", "auth", "router", "shard-a", "shard-b"} <= set(clusters)
    jobs = scrape_jobs()
    for name in clusters:
        assert name in jobs, f"compose runs {name} but Prometheus has no job for it"
        job = jobs[name]
        sd = job["dns_sd_configs"]
        assert all(c["names"] == [name] and c["type"] == "A" for c in sd), sd
        assert {c["port"] for c in sd} == SCRAPED_PORTS, sd
        assert {"target_label": "service", "replacement": name} in job["relabel_configs"]


def test_both_balancers_are_scraped_on_their_admin_port_with_the_password_file():
    jobs = scrape_jobs()
    services = compose_services()
    for name in ("lb", "lb-python"):
        assert name in services
        job = jobs[name]
        assert job["dns_sd_configs"] == [{"names": [name], "type": "A", "port": 8404, "refresh_interval": "5s"}]
        assert job["basic_auth"] == {"username": "admin", "password_file": "/run/secrets/scalecube/LB_ADMIN_PASSWORD"}
        # The file the balancers themselves are given.
        assert services[name]["environment"]["LB_ADMIN_PASSWORD_FILE"] == job["basic_auth"]["password_file"]


# -- Kubernetes (infra/k8s/prometheus.yaml): the same jobs, each service's pods through a headless Service --------

K8S_DIR = REPO / "infra" / "k8s"
K8S_CONFIG = K8S_DIR / "files" / "prometheus" / "prometheus.yml"


def test_promtool_accepts_the_kubernetes_config_and_its_copy_of_the_rules():
    done = run_promtool("check", "config", K8S_CONFIG)  # checks rule_files too: the copy beside it
    assert done.returncode == 0, done.stdout + done.stderr
    assert (K8S_CONFIG.parent / "rules.yml").read_text() == RULES.read_text()


def test_kubernetes_prometheus_scrapes_every_cluster_and_the_balancer_through_a_headless_service():
    objects = [doc for path in sorted(K8S_DIR.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]
    pods = {
        o["metadata"]["name"]: o["spec"]["template"]["spec"]["containers"][0]
        for o in objects
        if o["kind"] == "Deployment"
    }
    clusters = [name for name, container in pods.items() if container.get("command", [])[:2] == ["scalecube", "serve"]]
    assert {"api", "auth", "router", "shard-a", "shard-b"} <= set(clusters)
    headless = {  # Service name -> the pods it names
        o["metadata"]["name"]: o["spec"]["selector"]["app.kubernetes.io/name"]
        for o in objects
        if o["kind"] == "Service" and o["spec"].get("clusterIP") == "None"
    }
    jobs = {job["job_name"]: job for job in yaml.safe_load(K8S_CONFIG.read_text())["scrape_configs"]}
    for name in [*clusters, "lb"]:
        assert name in jobs, f"k8s runs {name} but its Prometheus has no job for it"
        sd = jobs[name]["dns_sd_configs"]
        assert all(len(c["names"]) == 1 and headless.get(c["names"][0]) == name for c in sd), (name, sd, headless)
        assert {c["port"] for c in sd} == (SCRAPED_PORTS if name != "lb" else {8404})
        assert {"target_label": "service", "replacement": name} in jobs[name]["relabel_configs"]


# -- the local stack (`scalecube prometheus-config`): static targets from stack.json ---------------------------------

LOCAL_COMPONENTS = [  # Component.describe() as `scalecube up --api 2 --lb haproxy` records them (the fields used)
    {"name": "redis", "kind": "redis", "url": "redis://127.0.0.1:6390/0"},
    {"name": "auth", "kind": "cluster", "url": "http://127.0.0.10:8000", "health": "http://127.0.0.10:8001"},
    {"name": "dns", "kind": "dns", "url": "udp://127.0.0.1:5353"},
    {"name": "api-1", "kind": "cluster", "url": "http://127.0.0.2:8080", "health": "http://127.0.0.2:8081"},
    {"name": "api-2", "kind": "cluster", "url": "http://127.0.0.3:8080", "health": "http://127.0.0.3:8081"},
    {
        "name": "lb",
        "kind": "haproxy",
        "url": "http://127.0.0.1:8080",
        "stats": "http://127.0.0.1:8404",
        "admin_user": "admin",
        "admin_password_file": "/state/lb.admin-password",
    },
]


def test_the_local_config_scrapes_every_cluster_on_both_ports_and_the_balancer_with_its_password():
    config = local_config(LOCAL_COMPONENTS)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"auth", "api", "lb"}  # no Redis, no DNS: nothing to scrape there
    api = {(c["labels"]["instance"], c["labels"]["endpoint"], c["targets"][0]) for c in jobs["api"]["static_configs"]}
    assert api == {
        ("api-1", "app", "127.0.0.2:8080"),
        ("api-1", "master", "127.0.0.2:8081"),
        ("api-2", "app", "127.0.0.3:8080"),
        ("api-2", "master", "127.0.0.3:8081"),
    }
    assert all(c["labels"]["service"] == "api" for c in jobs["api"]["static_configs"])
    assert jobs["lb"]["basic_auth"] == {"username": "admin", "password_file": "/state/lb.admin-password"}
    assert jobs["lb"]["static_configs"] == [
        {"targets": ["127.0.0.1:8404"], "labels": {"service": "lb", "instance": "lb"}}
    ]
    assert config["rule_files"] == [str(RULES)]


def test_scalecube_prometheus_config_writes_a_config_promtool_accepts(tmp_path):
    state = {"supervisor": {"pid": 1, "started": 0.0}, "phase": "up", "started_at": "", "components": LOCAL_COMPONENTS}
    (tmp_path / "stack.json").write_text(json.dumps(state))
    result = CliRunner().invoke(scalecube_cli.app, ["prometheus-config", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = tmp_path / "prometheus.yml"
    assert f"wrote {written}" in result.output and f"--config.file {written}" in result.output
    done = run_promtool("check", "config", written)
    assert done.returncode == 0, done.stdout + done.stderr


def test_scalecube_prometheus_config_without_a_stack_says_so(tmp_path):
    result = CliRunner().invoke(scalecube_cli.app, ["prometheus-config", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1 and "no local stack" in result.output
    assert not (tmp_path / "prometheus.yml").exists()


# -- the console's live charts (services/console/panels.py): its own PromQL over the raw counters --------------------


def _live_rules_test() -> dict:
    """A ``promtool test rules`` file for the console's live queries, on series scraped every second as in compose:
    api 10.0.0.2 worker 0 answers 4/s since 10 s ago (1/s before), worker 1 2/s and 2/s 5xx (plus 10/s scrapes that
    are not traffic); HAProxy
    sends 8/s to the api backend; latency per second: 5 under 5 ms, 4 more under 10 ms, 1 more under 25 ms. One
    series (auth's) was last scraped 2 s before the others: the errors chart's data is that old."""
    from services.console.panels import LIVE_QUERIES, SAMPLED_AT

    api = 'job="api",service="api",endpoint="app",instance="10.0.0.2",method="GET"'
    series = [
        (f'http_requests_total{{{api},worker="0",route="/",status="200"}}', "0+1x50 54+4x9"),
        (f'http_requests_total{{{api},worker="1",route="/",status="200"}}', "0+2x60"),
        (f'http_requests_total{{{api},worker="1",route="/cpu",status="500"}}', "0+2x60"),
        (f'http_requests_total{{{api},worker="0",route="/metrics",status="200"}}', "0+10x60"),
        ('http_requests_total{service="auth",instance="10.0.0.4",worker="0",route="/",status="200"}', "0+1x58"),
        ('haproxy_backend_http_requests_total{job="lb",proxy="api"}', "0+8x60"),
        (f'http_request_duration_seconds_count{{{api},worker="0",route="/"}}', "0+10x60"),
    ]
    for le, per_second in (("0.001", 0), ("0.005", 5), ("0.01", 9), ("0.025", 10), ("+Inf", 10)):
        series.append(
            (f'http_request_duration_seconds_bucket{{{api},worker="0",route="/",le="{le}"}}', f"0+{per_second}x60")
        )
        series.append(
            (f'http_request_duration_seconds_bucket{{{api},worker="0",route="/metrics",le="{le}"}}', "0+100x60")
        )

    def close_to(expr: str, want: float) -> dict:
        return {
            "expr": f"abs(({expr}) - {want}) < bool 1e-9",
            "eval_time": "60s",
            "exp_samples": [{"labels": "{}", "value": 1}],
        }

    def exact(expr: str, *samples: tuple[str, float]) -> dict:
        return {
            "expr": expr,
            "eval_time": "60s",
            "exp_samples": [{"labels": labels, "value": v} for labels, v in samples],
        }

    tests = [
        exact(LIVE_QUERIES["instance_rate"], ('{service="api",instance="10.0.0.2"}', 8)),
        exact(
            LIVE_QUERIES["worker_rate"],
            ('{service="api",instance="10.0.0.2",worker="0"}', 4),
            ('{service="api",instance="10.0.0.2",worker="1"}', 4),
        ),
        exact(LIVE_QUERIES["balancer_rate"], ('{proxy="api"}', 8)),
        exact(LIVE_QUERIES["errors"], ('{service="api"}', 0.25), ('{service="auth"}', 0)),
        close_to(LIVE_QUERIES["p50"], 0.005),
        close_to(LIVE_QUERIES["p95"], 0.0175),
        close_to(LIVE_QUERIES["p99"], 0.0235),
        *(exact(SAMPLED_AT[chart], ("{}", 60)) for chart in ("rates", "workers", "latency")),
        exact(SAMPLED_AT["errors"], ("{}", 58)),  # the stalest series it reads
    ]
    return {
        "rule_files": [],
        "evaluation_interval": "1s",
        "tests": [
            {
                "interval": "1s",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "promql_expr_test": tests,
            }
        ],
    }


def test_the_consoles_live_queries_compute_what_their_charts_say(tmp_path):
    (tmp_path / "live_test.yml").write_text(yaml.safe_dump(_live_rules_test(), sort_keys=False))
    done = run_promtool("test", "rules", tmp_path / "live_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_live_queries_test_fails_on_a_one_minute_window(tmp_path, monkeypatch):
    """The test above can fail: over a 1 m window (what the charts used before) worker 0's step from 1/s to 4/s
    10 s ago has not shown in full."""
    from services.console import panels

    for name, expr in list(panels.LIVE_QUERIES.items()):
        monkeypatch.setitem(panels.LIVE_QUERIES, name, expr.replace(f"[{panels.LIVE_WINDOW}]", "[1m]"))
    (tmp_path / "live_test.yml").write_text(yaml.safe_dump(_live_rules_test(), sort_keys=False))
    done = run_promtool("test", "rules", tmp_path / "live_test.yml")
    assert done.returncode != 0 and 'service="auth"' in done.stdout + done.stderr, done.stdout


def test_prometheus_scrapes_often_enough_for_the_live_charts():
    """Every job at the global interval, 1 s: a chart's data is at most that old plus the query when drawn."""
    config = yaml.safe_load(CONFIG.read_text())
    assert config["global"]["scrape_interval"] == "1s"
    assert all("scrape_interval" not in job for job in config["scrape_configs"])
    assert local_config(LOCAL_COMPONENTS)["global"] == config["global"]
