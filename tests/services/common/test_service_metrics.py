"""Request metrics: route templates, bounded labels, and one scrape covering every worker."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.common.settings import ServiceSettings
from tests.services.common.service_under_test import build_app

ITEM_ROUTE = "/items/{item_id}"


def samples(url: str) -> dict[tuple[str, frozenset], float]:
    """Scrape ``url``/metrics into {(sample name, labels): value}."""
    response = httpx.get(url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def requests_total(scrape: dict, **labels: str) -> float:
    return scrape.get(("http_requests_total", frozenset(labels.items())), 0.0)


def durations_count(scrape: dict, **labels: str) -> float:
    return scrape.get(("http_request_duration_seconds_count", frozenset(labels.items())), 0.0)


@pytest.fixture
def url(serve) -> str:
    return serve(build_app(ServiceSettings.load(max_body_bytes=1024)))


def test_requests_are_counted_by_route_template_status_and_worker(url: str) -> None:
    # The default registry lives as long as this process: measure the increase.
    before = samples(url)
    for item in (1, 2, 3):
        httpx.get(f"{url}/items/{item}")
    httpx.get(url + "/items/not-a-number")
    after = samples(url)

    ok = {"method": "GET", "route": ITEM_ROUTE, "status": "200", "worker": "0"}
    invalid = {**ok, "status": "422"}
    assert requests_total(after, **ok) - requests_total(before, **ok) == 3
    assert requests_total(after, **invalid) - requests_total(before, **invalid) == 1
    timed = {"method": "GET", "route": ITEM_ROUTE, "worker": "0"}
    assert durations_count(after, **timed) - durations_count(before, **timed) == 4
    assert not [labels for _, labels in after if ("route", "/items/1") in labels]  # never the raw path


def test_unmatched_paths_share_one_route_label(url: str) -> None:
    before = samples(url)
    for path in ("/a", "/b/c", "/d/e/f"):
        assert httpx.get(url + path).status_code == 404
    after = samples(url)

    unmatched = {"method": "GET", "route": "unmatched", "status": "404", "worker": "0"}
    assert requests_total(after, **unmatched) - requests_total(before, **unmatched) == 3


def test_failures_and_rejections_are_counted_with_their_status(url: str) -> None:
    before = samples(url)
    httpx.get(url + "/boom/crash")
    httpx.get(url + "/boom/dependency")
    httpx.post(url + "/upload", content=b"x" * 2048)
    after = samples(url)

    def increase(**labels: str) -> float:
        labels = {"worker": "0", **labels}
        return requests_total(after, **labels) - requests_total(before, **labels)

    assert increase(method="GET", route="/boom/crash", status="500") == 1
    assert increase(method="GET", route="/boom/dependency", status="503") == 1
    assert increase(method="POST", route="unmatched", status="413") == 1  # refused before routing


def test_unknown_methods_are_folded_into_other(url: str) -> None:
    before = samples(url)
    assert httpx.request("PROPFIND", url + "/items/1").status_code == 405
    after = samples(url)

    other = {"method": "OTHER", "route": ITEM_ROUTE, "status": "405", "worker": "0"}
    assert requests_total(after, **other) - requests_total(before, **other) == 1
    assert not [labels for _, labels in after if ("method", "PROPFIND") in labels]


def test_one_scrape_shows_every_workers_series(spawn_service, tmp_path) -> None:
    """Two real worker processes share a PROMETHEUS_MULTIPROC_DIR, as in a cluster."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    shared = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    first = spawn_service(**shared, SCALECUBE_WORKER_ID="1", SCALECUBE_WORKER_SLOT="0")
    second = spawn_service(**shared, SCALECUBE_WORKER_ID="2", SCALECUBE_WORKER_SLOT="1")

    for _ in range(3):
        httpx.get(first.url + "/items/7")
    for _ in range(2):
        httpx.get(second.url + "/items/8")

    ok = {"method": "GET", "route": ITEM_ROUTE, "status": "200"}
    for scraped_through in (first, second):
        scrape = samples(scraped_through.url)
        assert requests_total(scrape, **ok, worker="0") == 3
        assert requests_total(scrape, **ok, worker="1") == 2
        assert durations_count(scrape, method="GET", route=ITEM_ROUTE, worker="1") == 2
    assert {path.name.split("_")[0] for path in metrics_dir.iterdir()} >= {"counter", "histogram"}


def test_without_a_multiproc_dir_a_process_shows_only_itself(spawn_service) -> None:
    alone = spawn_service(SCALECUBE_WORKER_SLOT="5")
    other = spawn_service(SCALECUBE_WORKER_SLOT="6")
    httpx.get(alone.url + "/items/1")
    httpx.get(other.url + "/items/1")

    scrape = samples(alone.url)

    ok = {"method": "GET", "route": ITEM_ROUTE, "status": "200"}
    assert requests_total(scrape, **ok, worker="5") == 1
    assert requests_total(scrape, **ok, worker="6") == 0
