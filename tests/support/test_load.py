"""The test load generator counts what happened: a failure by its status, never by how its body parses."""

from __future__ import annotations

import sys

import httpx

from infra.local.ports import free_port
from infra.local.processes import ManagedProcess, wait_until
from tests.support.load import LoadGenerator


def run(url: str, requests: int = 10):
    with LoadGenerator(url, concurrency=2, max_requests=requests, max_seconds=10) as load:
        wait_until(lambda: load.result.total >= requests, 10, what=f"{requests} requests")
    return load.stop()


def test_failures_are_labelled_by_status_and_only_200s_are_parsed(tmp_path):
    # A real server whose error pages are HTML, as HAProxy's 503 is: Python's own http.server (404s are HTML).
    (tmp_path / "ok.json").write_text('{"pid": 42}')
    port = free_port()
    server = ManagedProcess(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(tmp_path), str(port)],
        log_path=tmp_path / "server.log",
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(url + "/ok.json", timeout=1).status_code == 200, 10, what="http.server")
        ok = run(url + "/ok.json")
        assert ok.failed == 0 and ok.served_by == {"42": ok.ok}, ok
        missing = run(url + "/missing")
        assert missing.ok == 0 and missing.errors == {"HTTP 404": missing.failed}, missing
    finally:
        server.stop()
