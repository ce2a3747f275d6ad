"""The Python balancer's HTTP path against real backends: headers, framing, guards, retries."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from infra.local.ports import free_port
from infra.local.processes import ManagedProcess, wait_until
from tests.support.load import LoadGenerator

BACKEND = "tests.lb.backend_app:app"


class LbProcess(ManagedProcess):
    def __init__(self, upstream: str, workdir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port, self.admin_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        argv = [sys.executable, "-m", "scalecube", "lb", "--listen", f"127.0.0.1:{self.port}",
                "--admin", f"127.0.0.1:{self.admin_port}", "--upstream", f"api={upstream}", *args]  # fmt: skip
        super().__init__(argv, env=env, log_path=workdir / f"lb-{self.port}.log")
        wait_until(lambda: self._healthy_backends() > 0, 20, what="the balancer to see a healthy backend")

    def _healthy_backends(self) -> int:
        if self.proc.poll() is not None:
            raise AssertionError(f"balancer exited {self.proc.returncode}:\n{self.log()}")
        status = httpx.get(self.admin_url + "/status.json", timeout=2).json()
        return sum(b["healthy"] for pool in status["pools"] for b in pool["backends"])

    def status(self) -> dict:
        return httpx.get(self.admin_url + "/status.json", timeout=2).json()


@pytest.fixture
def backends(start_cluster, tmp_path):
    def start(count: int = 2, env: dict[str, str] | None = None):
        return [start_cluster(BACKEND, workers=1, env=env) for _ in range(count)]

    return start


@pytest.fixture
def start_lb(tmp_path):
    started: list[LbProcess] = []

    def start(clusters, *args: str, env: dict[str, str] | None = None) -> LbProcess:
        spec = "static:" + ",".join(f"127.0.0.1:{c.port}" for c in clusters)
        lb = LbProcess(spec, tmp_path, "--health-interval", "0.3", *args, env=env)
        started.append(lb)
        return lb

    yield start
    for lb in started:
        lb.stop()


def raw(port: int, payload: bytes, *, timeout: float = 5.0) -> bytes:
    """Send raw bytes; read until the balancer closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            pass
    return data


def test_forwarding_headers_are_added_and_request_ids_kept(backends, start_lb):
    lb = start_lb(backends(1))
    seen = httpx.get(lb.url + "/echo", headers={"X-Forwarded-For": "203.0.113.9"}).json()["headers"]
    assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert len(seen["x-request-id"]) == 32
    kept = httpx.get(lb.url + "/echo", headers={"X-Request-Id": "trace-me-42"}).json()["headers"]
    assert kept["x-request-id"] == "trace-me-42"


def test_bodies_stream_both_ways(backends, start_lb):
    lb = start_lb(backends(1))

    def chunks():
        for _ in range(64):
            yield b"x" * 65536  # 4 MiB, chunked: the balancer must stream, not buffer

    assert httpx.post(lb.url + "/echo", content=chunks(), timeout=30).json()["body_bytes"] == 64 * 65536
    assert httpx.post(lb.url + "/echo", content=b"y" * 300_000, timeout=30).json()["body_bytes"] == 300_000
    streamed = httpx.get(lb.url + "/stream?chunks=5")
    assert streamed.text == "".join(f"part {i}\n" for i in range(5))
    assert streamed.headers["transfer-encoding"] == "chunked"
    with httpx.Client(base_url=lb.url) as client:  # HEAD ends cleanly and the connection goes on
        assert client.head("/echo").status_code == 200
        assert client.get("/echo").status_code == 200


def test_malformed_and_oversized_requests_get_clear_4xx(backends, start_lb):
    lb = start_lb(backends(1), "--max-header-bytes", "4096", "--max-headers", "20")
    assert raw(lb.port, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert raw(lb.port, b"\x00\xff\x16\x03garbage").startswith(b"HTTP/1.1 400")
    big = httpx.get(lb.url + "/echo", headers={"X-Big": "y" * 8000})
    assert big.status_code == 431 and big.json()["error"] == "request_header_fields_too_large"
    many = httpx.get(lb.url + "/echo", headers={f"X-H{i}": "v" for i in range(30)})
    assert many.status_code == 431
    assert httpx.get(lb.url + "/echo").status_code == 200  # still serving


def test_slow_clients_are_cut_off_without_stalling_others(backends, start_lb):
    lb = start_lb(backends(1), "--header-timeout", "1", "--idle-timeout", "1")
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", lb.port), timeout=5) as slowloris:
        slowloris.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        for _ in range(5):
            assert httpx.get(lb.url + "/echo", timeout=2).status_code == 200  # others are served meanwhile
        reply = slowloris.recv(65536)
    assert reply.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 4
    with socket.create_connection(("127.0.0.1", lb.port), timeout=5) as idle:
        idle.settimeout(4)
        assert idle.recv(1) == b""  # an idle connection is closed after the idle timeout


def test_connection_cap(backends, start_lb):
    lb = start_lb(backends(1), "--max-connections", "3")
    held = [socket.create_connection(("127.0.0.1", lb.port)) for _ in range(3)]
    try:
        time.sleep(0.2)
        assert raw(lb.port, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 503")
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: httpx.get(lb.url + "/echo", timeout=2).status_code == 200, 5, what="capacity back")


def test_a_post_that_reached_a_backend_is_never_replayed(backends, start_lb, tmp_path):
    receipts = tmp_path / "receipts"
    receipts.touch()
    lb = start_lb(backends(2, env={"RECEIPTS_FILE": str(receipts)}))
    response = httpx.post(lb.url + "/die-once", content=b"order #1", timeout=10)
    assert response.status_code == 502 and response.json()["error"] == "bad_gateway"
    assert len(receipts.read_text().splitlines()) == 1  # one backend got it once; nobody got it twice


def test_gets_are_retried_on_another_backend_when_one_dies(backends, start_lb):
    clusters = backends(2)
    lb = start_lb(clusters)
    with LoadGenerator(lb.url + "/echo", concurrency=8, keepalive=True, max_seconds=20) as load:
        time.sleep(0.5)
        workers = clusters[0].listening_pids()
        clusters[0].signal(signal.SIGKILL)  # the whole "container": master and workers at once
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        time.sleep(1.5)
    result = load.stop()
    print(f"\nGETs through the Python balancer while a backend is SIGKILLed: {result}")
    assert result.failed == 0, result
    assert result.ok > 200


def test_no_backend_is_a_503_naming_the_upstream(backends, start_lb):
    clusters = backends(1)
    lb = start_lb(clusters)
    clusters[0].stop()
    wait_until(lambda: httpx.get(lb.url + "/echo", timeout=5).status_code == 503, 10, what="a 503")
    body = httpx.get(lb.url + "/echo").json()
    assert body["error"] == "no_backend" and body["upstream"] == "api"


def test_read_timeout_is_a_504_for_non_idempotent_requests(backends, start_lb):
    lb = start_lb(backends(1), "--read-timeout", "0.5")
    response = httpx.post(lb.url + "/slow?s=3", content=b"x", timeout=10)
    assert response.status_code == 504 and response.json()["error"] == "gateway_timeout"


def test_pipelined_requests_get_the_first_answer_and_a_close(backends, start_lb):
    lb = start_lb(backends(1))
    reply = raw(lb.port, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\nGET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.count(b"HTTP/1.1 200") == 1 and b"connection: close" in reply.lower()


def test_admin_reports_backends_and_counters(backends, start_lb):
    lb = start_lb(backends(2))
    for _ in range(10):
        httpx.get(lb.url + "/echo")
    status = lb.status()
    served = sum(b["served"] for pool in status["pools"] for b in pool["backends"])
    assert served >= 10
    metrics = httpx.get(lb.admin_url + "/metrics").text
    assert "scalecube_lb_requests_total" in metrics
