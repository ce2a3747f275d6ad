"""The Python balancer's own edge cases against real backends: framing, configurable guards, error answers.

What it shares with HAProxy (forwarding headers, replays, malformed and slow clients, failover)
is in ``tests/lb/scenarios``, run against both.
"""

from __future__ import annotations

import http.client
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from infra.local.ports import free_port
from infra.local.processes import ManagedProcess, wait_until
from tests.lb.conftest import ADMIN_AUTH, ADMIN_PASSWORD, raw

BACKEND = "tests.lb.backend_app:app"


class LbProcess(ManagedProcess):
    def __init__(self, upstream: str, workdir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port, self.admin_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        argv = [
            sys.executable,
            "-m",
            "scalecube",
            "lb",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--admin",
            f"127.0.0.1:{self.admin_port}",
            "--upstream",
            f"api={upstream}",
            *args,
        ]
        super().__init__(
            argv, env={"LB_ADMIN_PASSWORD": ADMIN_PASSWORD, **(env or {})}, log_path=workdir / f"lb-{self.port}.log"
        )

    def _healthy_backends(self) -> int:
        if self.proc.poll() is not None:
            raise AssertionError(f"balancer exited {self.proc.returncode}:\n{self.log()}")
        status = httpx.get(self.admin_url + "/status.json", timeout=2, auth=ADMIN_AUTH).json()
        return sum(b["healthy"] for pool in status["pools"] for b in pool["backends"])

    def status(self) -> dict:
        return httpx.get(self.admin_url + "/status.json", timeout=2, auth=ADMIN_AUTH).json()


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
        started.append(lb)  # before waiting: stopped at teardown even if it never gets ready
        try:
            wait_until(lambda: lb._healthy_backends() > 0, 20, what="the balancer to see a healthy backend")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}:\n{lb.log()[-3000:]}") from None
        return lb

    yield start
    for lb in started:
        lb.stop()


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


def test_header_limits_are_configurable_and_answered_431_by_name(backends, start_lb):
    # (Malformed requests and the default limits: tests/lb/scenarios, for both balancers.)
    lb = start_lb(backends(1), "--max-header-bytes", "4096", "--max-headers", "20")
    big = httpx.get(lb.url + "/echo", headers={"X-Big": "y" * 8000})
    assert big.status_code == 431 and big.json()["error"] == "request_header_fields_too_large"
    many = httpx.get(lb.url + "/echo", headers={f"X-H{i}": "v" for i in range(30)})
    assert many.status_code == 431
    assert httpx.get(lb.url + "/echo").status_code == 200  # still serving


def test_a_keep_alive_connection_is_closed_after_the_idle_timeout(backends, start_lb):
    # (Slow and silent clients against the header timeout: tests/lb/scenarios, for both balancers.)
    # Every other timer far away (the header timeout would otherwise close it at 5 s): only the idle
    # timeout can close it within 20 s.
    lb = start_lb(backends(1), "--idle-timeout", "1", "--header-timeout", "20")
    conn = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=10)
    try:
        started = time.monotonic()  # before the request: the idle timer cannot have started earlier
        conn.request("GET", "/echo")
        response = conn.getresponse()
        assert response.status == 200 and response.read()  # read to its end: the connection is idle now
        conn.sock.settimeout(30)
        assert conn.sock.recv(1) == b""  # kept alive, then closed once idle for 1 s
    finally:
        conn.close()
    # Not before the idle timeout; after it by a margin generous for a busy machine, and well short of
    # every other timer (20 s) and of our own (30 s).
    assert 0.95 < time.monotonic() - started < 10


def test_connection_cap(backends, start_lb):
    lb = start_lb(backends(1), "--max-connections", "3")
    held = [socket.create_connection(("127.0.0.1", lb.port)) for _ in range(3)]
    try:
        # The balancer has accepted the three (the kernel completes a handshake before it does).
        wait_until(lambda: lb.status()["stats"]["connections_open"] == 3, 10, what="3 connections accepted")
        assert raw(lb.url, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 503")
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: httpx.get(lb.url + "/echo", timeout=2).status_code == 200, 5, what="capacity back")


def test_every_backend_dead_is_a_503_naming_the_upstream_after_trying_them(backends, start_lb):
    clusters = backends(2)
    lb = start_lb(clusters)
    for cluster in clusters:
        cluster.stop()
    wait_until(lambda: lb.status()["pools"][0]["panic"], 10, what="both ejected: panic")
    response = httpx.get(lb.url + "/echo", timeout=10)
    # In panic it tried both anyway (they might only have failed their checks); neither accepted a connection.
    assert response.status_code == 503, response.text
    assert response.json() == {
        "error": "backend_unreachable",
        "upstream": "api",
        "message": "no backend of api accepted a connection (2 tried)",
    }
    assert lb.status()["stats"]["unreachable_503"] == 1


def test_no_backend_at_all_is_a_503_no_backend(tmp_path):
    # DNS that never answers: discovery finds nothing, so the group is empty (not unhealthy: empty).
    lb = LbProcess(f"dns:api:8000@127.0.0.1:{free_port()}", tmp_path)
    try:
        wait_until(lambda: lb._healthy_backends() == 0, 20, what="the balancer to start")
        wait_until(
            lambda: raw(lb.url, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 503"), 10, what="a 503"
        )
        body = httpx.get(lb.url + "/echo", timeout=5).json()
        assert body == {"error": "no_backend", "upstream": "api", "message": "upstream api has no backend"}
        assert not lb.status()["pools"][0]["panic"]  # nothing to panic about: there is nobody
    finally:
        lb.stop()


def test_read_timeout_is_a_504_that_neither_ejects_nor_counts_as_a_failure(backends, start_lb):
    lb = start_lb(backends(1), "--read-timeout", "0.5")
    response = httpx.post(lb.url + "/slow?s=3", content=b"x", timeout=10)
    assert response.status_code == 504 and response.json()["error"] == "gateway_timeout"
    [backend] = lb.status()["pools"][0]["backends"]
    assert (backend["timeouts"], backend["failed"], backend["ejections"], backend["healthy"]) == (1, 0, 0, True)
    assert backend["inflight"] == 0
    assert httpx.get(lb.url + "/echo", timeout=5).status_code == 200


def test_a_stalled_request_body_is_the_clients_408_not_a_backend_failure(backends, start_lb, tmp_path):
    config = tmp_path / "balancer.toml"
    config.write_text(
        '[upstreams.api]\ndiscovery = "static:127.0.0.1:1"\n[[routes]]\nprefix = "/"\n'
        'upstream = "api"\n[timeouts]\nbody = 2.0\nread = 30.0\n'
    )
    lb = start_lb(backends(1), "--config", str(config))
    # 10 of the 100 promised bytes, then nothing: after the body timeout (2 s), not the read timeout (30 s).
    reply = raw(lb.url, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"y" * 10, timeout=10)
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert b'"error": "request_timeout"' in reply
    status = lb.status()
    [backend] = status["pools"][0]["backends"]
    assert (backend["failed"], backend["timeouts"], backend["ejections"], backend["healthy"]) == (0, 0, 0, True)
    assert backend["inflight"] == 0 and status["stats"]["client_body_timeout_408"] == 1
    # A slow but steady body is fine: each silence is shorter than the timeout.
    with socket.create_connection(("127.0.0.1", lb.port), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\n")
        for byte in (b"a", b"b", b"c"):
            time.sleep(0.3)
            sock.sendall(byte)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def test_a_client_that_leaves_mid_request_is_no_longer_in_flight(backends, start_lb, tmp_path):
    """leastconn counts requests in flight: one whose client left must not stay counted."""
    hold = tmp_path / "hold"
    hold.touch()
    lb = start_lb(backends(1, env={"HOLD_FILE": str(hold)}))

    def inflight() -> int:
        return lb.status()["pools"][0]["backends"][0]["inflight"]

    try:
        with socket.create_connection(("127.0.0.1", lb.port), timeout=10) as sock:
            sock.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until(lambda: inflight() == 1, 10, what="the request to be in flight")
        wait_until(lambda: inflight() == 0, 10, what="the aborted request to leave the count")
        status = lb.status()
        assert status["stats"]["client_aborts"] == 1
        assert status["pools"][0]["backends"][0]["failed"] == 0  # not the backend's fault either
    finally:
        hold.unlink()


def test_a_cheap_request_never_waits_for_the_connection_a_heavy_one_holds(backends, start_lb, tmp_path):
    """Connections to a backend are not capped: while a heavy request holds the pooled one, cheap ones
    open their own instead of queueing behind it."""
    hold = tmp_path / "hold"
    lb = start_lb(backends(1, env={"HOLD_FILE": str(hold)}))
    assert httpx.get(lb.url + "/echo", timeout=5).status_code == 200  # leaves one idle pooled connection
    hold.touch()
    with ThreadPoolExecutor(1) as pool:
        heavy = pool.submit(httpx.get, lb.url + "/hold", timeout=60)  # takes that connection
        try:
            wait_until(lambda: lb.status()["pools"][0]["backends"][0]["inflight"] == 1, 10, what="heavy in flight")
            with httpx.Client(base_url=lb.url, timeout=10) as client:
                assert [client.get("/echo").status_code for _ in range(5)] == [200] * 5
            assert not heavy.done()
        finally:
            hold.unlink()
        assert heavy.result().status_code == 200


def test_admin_reports_backends_and_counters(backends, start_lb):
    lb = start_lb(backends(2))
    for _ in range(10):
        httpx.get(lb.url + "/echo")
    status = lb.status()
    served = sum(b["served"] for pool in status["pools"] for b in pool["backends"])
    assert served >= 10
    metrics = httpx.get(lb.admin_url + "/metrics", auth=ADMIN_AUTH).text
    assert "scalecube_lb_requests_total" in metrics


def test_a_response_cut_mid_body_is_counted_for_the_admin_port(backends, start_lb, tmp_path):
    # (That it is cut for the client, logged and not replayed: tests/lb/scenarios, for both balancers.)
    lb = start_lb(backends(1, env={"RECEIPTS_FILE": str(tmp_path / "receipts")}))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(lb.url + "/die-mid-body", timeout=5)
    assert lb.status()["stats"]["responses_cut"] == 1
    assert "scalecube_lb_responses_cut_total 1.0" in httpx.get(lb.admin_url + "/metrics", auth=ADMIN_AUTH).text


def test_a_backend_silent_mid_body_is_cut_after_the_read_timeout(backends, start_lb):
    lb = start_lb(backends(1), "--read-timeout", "1")
    started = time.monotonic()
    # The client sees the cut (a body shorter than promised), not its own timeout (a ReadTimeout at 15 s).
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(lb.url + "/stall-mid-body?s=20", timeout=15)
    # After the read timeout (1 s), by a margin generous for a busy machine; short of the client's 15 s.
    assert time.monotonic() - started < 10
    wait_until(lambda: lb.status()["stats"]["responses_cut"] == 1, 5, what="the cut to be counted")
    assert httpx.get(lb.url + "/echo").status_code == 200  # and the balancer goes on


def test_a_request_a_replica_shed_goes_to_another_backend(start_cluster, start_lb, tmp_path):
    """A cluster master's fast 503 (every worker busy, no queue: cluster/handoff.py) ran nothing: the balancer
    sends the request to another backend instead of passing the 503 on — any method, as nothing was done."""
    from tests.cluster.test_handoff import Blocker

    busy = start_cluster("tests.cluster.apps:app", workers=1, args=["--handoff-limit", "1", "--max-queue", "0"])
    free = start_cluster("tests.cluster.apps:app", workers=1)
    lb = start_lb([busy, free], "--policy", "rr", "--health-interval", "30")
    with ThreadPoolExecutor(max_workers=2) as pool:
        blocker = Blocker(busy, tmp_path, pool)
        stuck = pool.submit(httpx.get, busy.url + "/", timeout=30)  # fills the blocked worker's hand-off limit
        try:
            wait_until(lambda: busy.status()["workers"][0]["untaken"] == 1, 30, what="the busy replica full")
            answers = [httpx.request(method, lb.url + "/", timeout=10) for method in ("GET", "POST") * 3]
        finally:
            blocker.release()
        blocker.future.result()
        stuck.result()
    assert [a.status_code for a in answers] == [200] * 6
    assert {a.json()["pid"] for a in answers} == free.listening_pids()
    shed = busy.status()["master"]["shed"]
    assert shed >= 1
    # Each went elsewhere: on the master's 503 (x-shed-by), or, shed before the request was even written,
    # on the connection closed unused.
    assert lb.status()["stats"]["retries"] == shed and lb.status()["stats"]["shed_retries"] <= shed
