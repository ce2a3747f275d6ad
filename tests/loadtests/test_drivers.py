"""The load drivers' one summary: wrk's Lua lines read back, and the threads driver against a local server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from loadtests.drivers import parse, run_threads


def test_wrk_summary_names_each_kind_of_error_and_counts_them_all() -> None:
    # requests, duration (us), connect, read, write, status (>= 400), timeout, p50 (us), p99 (us)
    run = parse("scalecube-tally summary 10 2000000 1 0 0 3 2 1000 4000\n")
    assert (run.driver, run.requests, run.errors, run.seconds, run.rps) == ("wrk", 10, 6, 2.0, 5.0)
    assert run.error_kinds == {"connect": 1, "non-2xx": 3, "timeout": 2}
    assert (run.p50_ms, run.p99_ms, run.served) == (1.0, 4.0, {})


def test_wrk_without_its_summary_line_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no tally"):
        parse("Running 1s test @ http://x/\n  9 requests in 1.00s\n")


class _Served(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b'{"pid": 1}'
        self.send_response(200)
        self.send_header("X-Served-By", "here/1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Served)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    thread.join(5)


def test_threads_driver_summarises_what_its_clients_saw(url: str) -> None:
    run = run_threads(url, seconds=0.5, connections=2, keepalive=True)
    assert run.driver == "python threads (httpx)" and run.seconds == 0.5
    assert run.requests > 0 and run.errors == 0
    assert run.served == {"here/1": run.requests}
    assert run.p50_ms is not None and run.p99_ms is not None and run.p50_ms <= run.p99_ms
