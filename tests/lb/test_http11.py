"""HTTP/1.1 at the edge, from raw sockets, for both balancers: what a client may send, and what a backend gets.

Behind each balancer, two services on the loopback topology: ``api``, the echo backend
(``tests.lb.backend_app`` under a real cluster), and ``raw``, a plain-socket backend in this
file that answers with its request *exactly as the bytes came* (request line, every header
line, in order): the one way to see that a target was forwarded in origin-form, or that two
X-Forwarded-For lines became one. The client side is raw sockets too, so nothing between
the test and the balancer fixes a request up.

Where HAProxy and the Python balancer are meant to behave alike, each test runs for both
(``kind``); the Python balancer's own answers (417, its counters) are marked so.
"""

from __future__ import annotations

import http.client
import json
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from infra.local.processes import wait_until
from lb.http11 import Rejected, judge
from tests.lb.conftest import loopback_topology, raw
from tests.support.haproxy import require_haproxy

BACKEND = "tests.lb.backend_app:app"
API_HOST, RAW_HOST = "127.0.0.2", "127.0.0.3"
SPOOFED = (
    b"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Proto: https\r\n"
    b"Forwarded: for=203.0.113.9;proto=https\r\nX-Real-IP: 203.0.113.9\r\n"
    b"X-Forwarded-Host: evil.example\r\nProxy-Authorization: Basic c2VjcmV0OnNlY3JldA==\r\n"
)


@pytest.fixture(params=("haproxy", "python"))
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "haproxy":
        require_haproxy()
    return request.param


# -- the rules alone (lb.http11, no sockets) ---------------------------------------------------


def test_judge_applies_the_host_and_expect_rules():
    head = judge(b"GET", b"http://app.example:81/p?q=1", "1.1", [(b"Host", b"other")], True)
    assert (head.target, head.host) == (b"/p?q=1", b"app.example:81")
    assert judge(b"GET", b"/", "1.0", [], False).host == b""  # HTTP/1.0 needs no Host
    for url, version, headers, status in [
        (b"/", "1.1", [], 400),  # no Host
        (b"/", "1.0", [(b"Host", b"a"), (b"host", b"b")], 400),  # two, whatever the version
        (b"ftp://a/b", "1.1", [(b"Host", b"a")], 400),  # not an http(s) URL
        (b"/", "1.1", [(b"Host", b"a"), (b"Expect", b"100-continue, teapot")], 417),
    ]:
        with pytest.raises(Rejected) as caught:
            judge(b"GET", url, version, headers, True)
        assert caught.value.status == status, (url, headers)
    assert judge(b"POST", b"/", "1.1", [(b"Host", b"a"), (b"Expect", b"100-Continue")], True).expect_continue
    assert not judge(b"POST", b"/", "1.0", [(b"Expect", b"teapot")], True).expect_continue  # 1.0: ignored


def test_judge_drops_hop_by_hop_connection_named_and_client_claims():
    head = judge(
        b"GET", b"/", "1.1", [(b"Host", b"a"), (b"Connection", b"close, X-Secret"), (b"X-Secret", b"s")], False
    )
    assert {
        b"x-secret",
        b"connection",
        b"x-forwarded-for",
        b"forwarded",
        b"x-real-ip",
        b"x-forwarded-host",
        b"proxy-authorization",
        b"host",
    } <= head.dropped
    assert b"x-kept" not in head.dropped


# -- the raw backend -------------------------------------------------------------------------


class RawHandler(socketserver.StreamRequestHandler):
    """HTTP/1.1 keep-alive, one request at a time: answers 200 with {"line", "headers"} as received.
    ``/connection-named`` also answers with a field its own Connection header names."""

    def handle(self) -> None:
        while True:
            line = self.rfile.readline(65537)
            if not line:
                return
            headers: list[list[str]] = []
            while (header := self.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
                name, _, value = header.decode("latin-1").partition(":")
                headers.append([name, value.strip()])
            length = sum(int(v) for n, v in headers if n.lower() == "content-length")
            self.rfile.read(length)
            body = json.dumps({"line": line.decode("latin-1").rstrip("\r\n"), "headers": headers}).encode()
            extra = (
                b"Connection: X-Backend-Secret\r\nX-Backend-Secret: 1\r\nX-Backend-Kept: 1\r\n"
                if b" /connection-named " in line
                else b""
            )
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%b\r\n%b"
                % (len(body), extra, body)
            )
            self.wfile.flush()


class RawBackend(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False


@pytest.fixture(scope="module")
def edge(tmp_path_factory) -> Iterator:
    workdir = tmp_path_factory.mktemp("edge")
    with loopback_topology(workdir) as topology:
        topology.start("api", API_HOST, BACKEND, workers=1)
        server = RawBackend((RAW_HOST, topology.port), RawHandler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        thread.start()
        try:
            topology.publish("raw", RAW_HOST)
            topology.wait_ready()
            yield topology
        finally:
            server.shutdown()
            server.server_close()


# -- a client on raw sockets -------------------------------------------------------------------


class _File:
    """What ``http.client.HTTPResponse`` wants of a socket: the same buffered file for every response
    (each response "closes" it when read to its end: a no-op here, the next one reads on)."""

    def __init__(self, file) -> None:
        self.file = file

    def makefile(self, *args, **kwargs):
        return self

    def close(self) -> None:
        pass

    def __getattr__(self, name: str):
        return getattr(self.file, name)


def address(lb) -> tuple[str, int]:
    host, _, port = lb.url.removeprefix("http://").rpartition(":")
    return host, int(port)


def responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """Read ``count`` responses in a row from one connection: (status, headers lower-cased, body)."""
    file, out = sock.makefile("rb"), []
    for _ in range(count):
        response = http.client.HTTPResponse(_File(file))  # type: ignore[arg-type]
        response.begin()
        out.append((response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()))
    return out


def ask(lb, payload: bytes, count: int = 1) -> list[tuple[int, dict[str, str], bytes]]:
    with socket.create_connection(address(lb), timeout=10) as sock:
        sock.sendall(payload)
        return responses(sock, count)


def seen_by_raw(lb, head: bytes) -> dict:
    """What the raw backend received for ``head`` (a request head, without the blank line)."""
    [(status, _, body)] = ask(lb, head + b"\r\n")
    assert status == 200, body
    return json.loads(body)


def header_lines(seen: dict, name: str) -> list[str]:
    return [value for key, value in seen["headers"] if key.lower() == name]


# -- forwarding headers: the edge says who the client is ---------------------------------------


def test_client_forwarding_headers_are_replaced_never_extended(kind, edge, start_balancer):
    lb = start_balancer(kind, edge, service="raw")
    seen = seen_by_raw(lb, b"GET /who HTTP/1.1\r\nHost: app.example\r\n" + SPOOFED)
    # One X-Forwarded-For line, the address the balancer saw: not appended to the client's, not two lines.
    assert header_lines(seen, "x-forwarded-for") == ["127.0.0.1"], seen
    assert header_lines(seen, "x-forwarded-proto") == ["http"], seen
    for claim in ("forwarded", "x-real-ip", "x-forwarded-host", "proxy-authorization"):
        assert header_lines(seen, claim) == [], (claim, seen)
    assert header_lines(seen, "host") == ["app.example"]  # an ordinary Host passes as it was


def test_the_echo_service_sees_only_the_balancers_address(kind, edge, start_balancer):
    """What a service behind it reads (uvicorn joins repeated lines): the leftmost entry is no client's claim."""
    lb = start_balancer(kind, edge)
    [(status, _, body)] = ask(lb, b"GET /echo HTTP/1.1\r\nHost: x\r\n" + SPOOFED + b"\r\n")
    headers = json.loads(body)["headers"]
    assert status == 200 and headers["x-forwarded-for"] == "127.0.0.1", headers
    assert not {"forwarded", "x-real-ip", "x-forwarded-host", "proxy-authorization"} & set(headers), headers


# -- hop-by-hop: what Connection names stays on that connection --------------------------------


def test_fields_named_in_connection_are_removed_both_ways(kind, edge, start_balancer):
    lb = start_balancer(kind, edge, service="raw")
    seen = seen_by_raw(
        lb,
        b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Secret\r\n"
        b"X-Secret: for-the-balancer\r\nX-Kept: 1\r\n",
    )
    names = {key.lower() for key, _ in seen["headers"]}
    assert "x-secret" not in names and "x-kept" in names, seen
    # The backend's answer: its Connection names X-Backend-Secret, which the client must not see.
    [(status, headers, _)] = ask(lb, b"GET /connection-named HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and "x-backend-kept" in headers and "x-backend-secret" not in headers, headers


# -- Host (RFC 9112 §3.2) ------------------------------------------------------------------------


def test_an_http11_request_needs_exactly_one_host(kind, edge, start_balancer):
    lb = start_balancer(kind, edge)
    for head in (b"GET /echo HTTP/1.1\r\n\r\n", b"GET /echo HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n"):
        reply = raw(lb.url, head)
        assert reply.startswith(b"HTTP/1.1 400"), (head, reply)
        assert b"application/json" in reply.lower() or kind == "haproxy", reply  # HAProxy's own 400 is HTML
    # HTTP/1.0 had no Host rule: still served.
    assert raw(lb.url, b"GET /echo HTTP/1.0\r\n\r\n").startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))
    [(status, _, _)] = ask(lb, b"GET /echo HTTP/1.1\r\nHost: a.example\r\n\r\n")
    assert status == 200


def test_absolute_form_is_routed_by_its_path_and_forwarded_in_origin_form(kind, edge, start_balancer):
    lb = start_balancer(kind, edge, service="raw")
    seen = seen_by_raw(lb, b"GET http://app.example:8080/some/path?q=1 HTTP/1.1\r\nHost: app.example:8080\r\n")
    assert seen["line"] == "GET /some/path?q=1 HTTP/1.1", seen
    assert header_lines(seen, "host") == ["app.example:8080"], seen


def test_absolute_form_host_is_its_authority(edge, start_balancer):
    """RFC 9112 §3.2.2: a proxy ignores the received Host when the target is absolute (the Python balancer)."""
    lb = start_balancer("python", edge, service="raw")
    seen = seen_by_raw(lb, b"GET http://app.example/p HTTP/1.1\r\nHost: other.example\r\n")
    assert seen["line"] == "GET /p HTTP/1.1" and header_lines(seen, "host") == ["app.example"], seen
    reply = raw(lb.url, b"GET ftp://app.example/p HTTP/1.1\r\nHost: app.example\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400") and b'"error": "bad_request"' in reply, reply


# -- pipelining ----------------------------------------------------------------------------------


def test_pipelined_requests_are_all_answered_in_order(kind, edge, start_balancer):
    lb = start_balancer(kind, edge)
    payload = (
        b"GET /echo/1 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /echo/2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /stream?chunks=2 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /echo/4 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    answers = ask(lb, payload, 4)
    assert [status for status, _, _ in answers] == [200] * 4
    first, second, streamed, fourth = (body for _, _, body in answers)
    assert json.loads(first)["path"] == "/echo/1"
    assert (json.loads(second)["path"], json.loads(second)["body_bytes"]) == ("/echo/2", 5)
    assert streamed == b"part 0\npart 1\n"
    assert json.loads(fourth)["path"] == "/echo/4"


def test_more_pipelined_requests_than_the_queue_holds_are_all_answered(kind, edge, start_balancer):
    """Past the Python balancer's queue cap (16 requests) it stops reading, it never drops one."""
    lb = start_balancer(kind, edge)
    count = 60
    payload = b"".join(
        b"GET /echo/%d HTTP/1.1\r\nHost: x\r\nX-Pad: %b\r\n\r\n" % (i, b"p" * 1000) for i in range(count)
    )
    answers = ask(lb, payload, count)
    assert [json.loads(body)["path"] for _, _, body in answers] == [f"/echo/{i}" for i in range(count)]


def test_a_pipelined_request_after_connection_close_is_not_answered(kind, edge, start_balancer):
    lb = start_balancer(kind, edge)
    reply = raw(
        lb.url, b"GET /echo/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /echo/2 HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert reply.count(b"HTTP/1.1 200") == 1 and b"/echo/1" in reply and b"/echo/2" not in reply, reply


# -- Expect --------------------------------------------------------------------------------------


def test_expect_100_continue_gets_a_100_before_the_body(kind, edge, start_balancer):
    lb = start_balancer(kind, edge)
    with socket.create_connection(address(lb), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = b""
        while b"\r\n\r\n" not in interim:  # the client waits: our 10 s timeout is the only other way out
            chunk = sock.recv(65536)
            assert chunk, f"closed before a 100: {interim!r}"
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        sock.sendall(b"hello")
        [(status, _, body)] = responses(sock, 1)
    assert status == 200 and json.loads(body)["body_bytes"] == 5


def test_expect_100_continue_on_a_request_refused_by_its_head_gets_no_100(kind, edge, start_balancer):
    """What can be refused from the head alone is refused before the body: a final answer, never a 100."""
    lb = start_balancer(kind, edge)
    reply = raw(
        lb.url, b"POST /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    assert reply.startswith(b"HTTP/1.1 400") and b"100 Continue" not in reply, reply


def test_an_unknown_expectation_is_a_417(edge, start_balancer):
    lb = start_balancer("python", edge)
    reply = raw(lb.url, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: teapot\r\n\r\nhello")
    assert reply.startswith(b"HTTP/1.1 417"), reply
    assert b'"error": "expectation_failed"' in reply and b"connection: close" in reply.lower()
    assert lb.status()["stats"]["rejected_417"] == 1


# -- one client, not every slot ------------------------------------------------------------------


def test_one_client_address_gets_at_most_its_cap_of_connections(kind, edge, start_balancer):
    lb = start_balancer(kind, edge, client_cap=3)
    held = [socket.create_connection(address(lb), timeout=10) for _ in range(3)]
    try:
        for sock in held:  # each answered: accepted and counted
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            assert responses(sock, 1)[0][0] == 200
        reply = raw(lb.url, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")  # the fourth: answered and closed
        assert reply.startswith(b"HTTP/1.1 429") and b"too_many_connections" in reply, reply
        assert b"connection: close" in reply.lower()
        if kind == "python":
            assert lb.status()["stats"]["connections_rejected_per_client"] == 1
        else:
            frontend = next(row for row in lb.stats() if row["pxname"] == "public" and row["svname"] == "FRONTEND")
            assert int(frontend["dreq"]) == 1
    finally:
        for sock in held:
            sock.close()
    # Their slots are free again.
    wait_until(
        lambda: raw(lb.url, b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 200"),
        10,
        what="the client's slots back",
    )
