"""The proxy's exchange logic in process: fake transports and a fake clock, no sockets, no processes.

An ``Exchange`` talks to its client through ``lb.proxy.Client`` and to the balancer through
``lb.proxy.Gateway``; the fakes below stand in for both. Upstream connections are the real
``UpstreamConnection`` (its httptools parser included) on a ``FakeTransport``, so what a test
feeds them is what a backend would send. The end-to-end versions of these cases, against real
backends and HAProxy alongside, are in tests/lb/test_proxy.py and tests/lb/scenarios.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import pytest

from lb.client import ClientConnection
from lb.config import Limits, Route, Router, Timeouts
from lb.http11 import judge
from lb.pool import Address, Backend, Pool
from lb.proxy import Exchange
from lb.stats import BalancerStats
from lb.upstream import ConnectionPool, UpstreamConnection

A, B, C = ("10.0.0.1", 8000), ("10.0.0.2", 8000), ("10.0.0.3", 8000)
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = self.aborted = self.eof = False
        self.reading = True

    @property
    def data(self) -> bytes:
        return b"".join(self.written)

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def writelines(self, parts: Iterable[bytes]) -> None:
        self.written.extend(bytes(part) for part in parts)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("203.0.113.7", 50000) if name == "peername" else default


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class Clock:
    """Monotonic time that moves only when told; timers fire as it passes them."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[FakeTimer] = []

    def call_later(self, seconds: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + seconds, callback)
        self.timers.append(timer)
        return timer

    def pending(self) -> list[FakeTimer]:
        return [timer for timer in self.timers if not timer.cancelled]

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while due := sorted((t for t in self.pending() if t.when <= end), key=lambda t: t.when):
            timer = due[0]
            timer.cancelled = True  # fired: a handle is used once
            self.now = timer.when
            timer.callback()
        self.now = end


class FakeConnections(ConnectionPool):
    """The real idle pool; ``connect`` opens a ``UpstreamConnection`` on a fake transport, or refuses the
    first ``refuse`` attempts (and any to a backend in ``dead``)."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse = 0
        self.dead: set[Address] = set()
        self.attempts: list[Backend] = []
        self.opened: list[UpstreamConnection] = []

    async def connect(self, backend: Backend, timeout: float) -> UpstreamConnection:
        self.attempts.append(backend)
        if self.refuse or backend.address in self.dead:
            self.refuse = max(0, self.refuse - 1)
            raise ConnectionRefusedError(111, "Connection refused")
        conn = UpstreamConnection(backend)
        conn.connection_made(FakeTransport())  # type: ignore[arg-type]
        self.opened.append(conn)
        return conn


class FakeBalancer:
    """``lb.proxy.Gateway`` (and ``lb.client.Door``): one group, ``api``, routed from ``/``."""

    def __init__(self, *addresses: Address, retries: int = 3) -> None:
        self.pool = Pool("api")
        self.pool.set_addresses(addresses)
        self.pools = {"api": self.pool}
        self.router = Router([Route("/", "api")])
        self.internal = None
        self.sticky = None
        self.connections = FakeConnections()
        self.timeouts = Timeouts()
        self.limits = Limits(retries=retries)
        self.stats = BalancerStats()
        self.draining = False
        self.clients: set[ClientConnection] = set()
        self.connections_by_client: dict[bytes, int] = {}
        self.hold = False  # keep connects pending until run_held()
        self.held: list[Coroutine[Any, Any, Any]] = []

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a connect at once: the fake one never waits, so one step finishes it."""
        if self.hold:
            self.held.append(coro)
            return
        with pytest.raises(StopIteration):
            coro.send(None)

    def run_held(self) -> None:
        held, self.held, self.hold = self.held, [], False
        for coro in held:
            self.spawn(coro)


class FakeClient:
    """``lb.proxy.Client``: records what the exchange answers."""

    def __init__(self, balancer: FakeBalancer, clock: Clock) -> None:
        self.balancer = balancer
        self.clock = clock
        self.client_ip = b"203.0.113.7"
        self.out: list[bytes] = []
        self.finished: list[bool] = []  # exchange_done's keep_alive, once per answered request
        self.refused = self.closed = False
        self.reading = True

    @property
    def data(self) -> bytes:
        return b"".join(self.out)

    def now(self) -> float:
        return self.clock.now

    def call_later(self, seconds: float, callback: Callable[[], None]) -> FakeTimer:
        return self.clock.call_later(seconds, callback)

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def writelines(self, parts: Iterable[bytes]) -> None:
        self.out.extend(parts)

    def cork(self) -> None:
        pass

    def uncork(self) -> None:
        pass

    def send_continue(self) -> None:
        self.out.append(b"HTTP/1.1 100 Continue\r\n\r\n")

    def read_body(self, paused: bool) -> None:
        self.reading = not paused

    def exchange_done(self, keep_alive: bool) -> None:
        self.finished.append(keep_alive)

    def exchange_refused(self, answer: bytes) -> None:
        self.out.append(answer)
        self.refused = True

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def clock() -> Clock:
    return Clock()


def start(
    balancer: FakeBalancer, clock: Clock, method: bytes = b"GET", target: bytes = b"/", body: bytes | None = None
) -> tuple[Exchange, FakeClient]:
    """An exchange as ``ClientConnection`` starts one: the head, the body that came with it, then ``begin``."""
    headers = [(b"Host", b"example.test")]
    if body is not None:
        headers.append((b"Content-Length", str(len(body)).encode()))
    client = FakeClient(balancer, clock)
    exchange = Exchange(client, judge(method, target, "1.1", headers, True))  # type: ignore[arg-type]
    if body:
        exchange.client_body(body)
    exchange.client_body_done()
    exchange.begin()
    return exchange, client


def status_of(client: FakeClient) -> int:
    return int(client.data.split(b" ", 2)[1])


def backend_at(balancer: FakeBalancer, address: Address) -> Backend:
    return balancer.pool.backends[address]


# -- which failures are retried ----------------------------------------------------------------


def test_a_refused_connection_goes_to_another_backend_even_for_a_post_with_a_body(clock):
    """Nothing was sent: any request may go elsewhere, body included; only this ejects a backend."""
    balancer = FakeBalancer(A, B)
    balancer.connections.refuse = 1
    exchange, client = start(balancer, clock, b"POST", b"/orders", body=b"hello")
    first, second = balancer.connections.attempts
    assert first is not second
    assert not first.healthy and first.failed == 1 and first.ejections == 1  # passively ejected
    conn = balancer.connections.opened[0]
    assert conn.backend is second
    assert conn.transport.data.startswith(b"POST /orders HTTP/1.1\r\n") and conn.transport.data.endswith(b"hello")
    conn.data_received(OK)
    assert status_of(client) == 200 and client.finished == [True]
    assert balancer.stats.retries == 1 and first.retried_away == 1
    assert (first.inflight, second.inflight, second.served) == (0, 0, 1)


@pytest.mark.parametrize(("method", "retried"), [(b"GET", True), (b"PUT", True), (b"POST", False), (b"PATCH", False)])
def test_a_connection_lost_after_sending_is_retried_only_for_idempotent_methods(clock, method, retried):
    """A POST that reached a backend is never sent twice: it may have acted on it."""
    balancer = FakeBalancer(A, B)
    exchange, client = start(balancer, clock, method)
    lost = balancer.connections.opened[0]
    lost.connection_lost(ConnectionResetError(104, "Connection reset by peer"))
    first = lost.backend
    assert first.healthy and first.failed == 1 and first.inflight == 0  # lost is not dead: no ejection
    if retried:
        assert len(balancer.connections.attempts) == 2 and balancer.stats.retries == 1
        balancer.connections.opened[1].data_received(OK)
        assert status_of(client) == 200
    else:
        assert len(balancer.connections.attempts) == 1 and balancer.stats.retries == 0
        assert status_of(client) == 502 and b'"bad_gateway"' in client.data
        assert balancer.stats.upstream_failed_502 == 1
    assert exchange.done and not clock.pending()


def test_a_request_with_a_body_is_not_replayed_once_sent_even_if_idempotent(clock):
    balancer = FakeBalancer(A, B)
    exchange, client = start(balancer, clock, b"PUT", b"/thing", body=b"data")
    balancer.connections.opened[0].connection_lost(None)
    assert len(balancer.connections.attempts) == 1
    assert status_of(client) == 502


def test_tries_stop_at_the_retries_limit_with_a_502(clock):
    balancer = FakeBalancer(A, B, C, retries=1)
    exchange, client = start(balancer, clock)
    balancer.connections.opened[0].connection_lost(None)
    balancer.connections.opened[1].connection_lost(None)
    assert len(balancer.connections.attempts) == 2  # the first try and one retry
    assert status_of(client) == 502 and b"no backend of api answered (2 tried)" in client.data
    assert balancer.stats.upstream_failed_502 == 1 and balancer.stats.retries == 1


def test_no_backend_accepting_a_connection_is_a_503(clock):
    balancer = FakeBalancer(A, B)
    balancer.connections.dead = {A, B}
    exchange, client = start(balancer, clock)
    assert len(balancer.connections.attempts) == 2
    assert status_of(client) == 503 and b'"backend_unreachable"' in client.data
    assert balancer.stats.unreachable_503 == 1
    assert all(b.inflight == 0 and b.failed == 1 for b in balancer.pool.backends.values())


def test_a_request_shed_by_a_cluster_master_goes_elsewhere_whatever_its_method(clock):
    balancer = FakeBalancer(A, B)
    exchange, client = start(balancer, clock, b"POST", b"/orders")
    shed = balancer.connections.opened[0]
    shed.data_received(
        b"HTTP/1.1 503 Service Unavailable\r\nx-shed-by: master\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
    )
    assert shed.transport.aborted and balancer.stats.shed_retries == 1
    balancer.connections.opened[1].data_received(OK)
    assert status_of(client) == 200 and client.data.count(b"HTTP/1.1") == 1  # the 503 never reached the client


# -- the read timeout: slow is busy, not dead ------------------------------------------------------


def test_a_slow_answer_within_the_read_timeout_is_served(clock):
    balancer = FakeBalancer(A, B)
    exchange, client = start(balancer, clock)
    clock.advance(balancer.timeouts.read - 0.1)
    balancer.connections.opened[0].data_received(OK)
    assert status_of(client) == 200
    assert balancer.connections.opened[0].backend.timeouts == 0 and not clock.pending()


def test_a_read_timeout_is_a_504_with_neither_a_retry_nor_an_ejection(clock):
    """The backend took the request and is busy with it: sending it on to the next one would only add the
    same heavy work there, and then to the one after (a retry storm)."""
    balancer = FakeBalancer(A, B, C)
    exchange, client = start(balancer, clock)
    slow = balancer.connections.opened[0]
    clock.advance(balancer.timeouts.read)
    assert status_of(client) == 504 and b'"gateway_timeout"' in client.data
    clock.advance(10 * balancer.timeouts.read)
    assert len(balancer.connections.attempts) == 1 and balancer.stats.retries == 0  # one try, ever
    backend = slow.backend
    assert backend.healthy and backend.timeouts == 1 and backend.failed == 0 and backend.inflight == 0
    assert slow.transport.aborted  # its late answer has nowhere to go
    assert balancer.stats.upstream_timeout_504 == 1 and balancer.stats.responses == 1


def test_silence_inside_a_response_body_cuts_it_off(clock):
    balancer = FakeBalancer(A)
    exchange, client = start(balancer, clock)
    conn = balancer.connections.opened[0]
    conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
    clock.advance(balancer.timeouts.read - 1)
    conn.data_received(b"ha")  # bytes restart the silence
    clock.advance(balancer.timeouts.read - 1)
    assert not client.closed
    clock.advance(1)
    assert client.closed and balancer.stats.responses_cut == 1
    assert len(balancer.connections.attempts) == 1 and backend_at(balancer, A).inflight == 0


# -- the client leaving ----------------------------------------------------------------------------


def test_a_client_abort_releases_the_backend_and_its_connection(clock):
    balancer = FakeBalancer(A)
    exchange, client = start(balancer, clock)
    conn = balancer.connections.opened[0]
    assert backend_at(balancer, A).inflight == 1
    exchange.client_lost()
    assert backend_at(balancer, A).inflight == 0 and conn.transport.aborted
    assert balancer.stats.client_aborts == 1
    clock.advance(10 * balancer.timeouts.read)
    assert client.data == b"" and backend_at(balancer, A).timeouts == 0  # no timer outlives the exchange


def test_a_removed_backend_is_forgotten_once_its_last_request_is_aborted(clock):
    balancer = FakeBalancer(A)
    exchange, client = start(balancer, clock)
    balancer.pool.set_addresses([])  # discovery drops it while a request is in flight
    assert A in balancer.pool.backends  # kept until its requests end
    exchange.client_lost()
    assert A not in balancer.pool.backends


def test_a_client_gone_while_connecting_leaves_nothing_behind(clock):
    balancer = FakeBalancer(A)
    balancer.hold = True
    exchange, client = start(balancer, clock)
    balancer.pool.set_addresses([])
    exchange.client_lost()
    assert A not in balancer.pool.backends
    balancer.run_held()  # the connection opens after all
    (conn,) = balancer.connections.opened
    assert conn.closed  # a removed backend's connection is not kept
    assert exchange.backend is None and client.data == b""


# -- writes --------------------------------------------------------------------------------------


def test_a_chunked_response_is_passed_on_without_copying_its_chunks(clock):
    balancer = FakeBalancer(A)
    exchange, client = start(balancer, clock)
    conn = balancer.connections.opened[0]
    conn.data_received(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert client.out[1:] == [b"5\r\n", b"hello", b"\r\n", b"0\r\n\r\n"]  # size line, the data as parsed, end
    assert client.finished == [True]
    assert balancer.connections.take(backend_at(balancer, A)) is conn  # kept for the next request


# -- pipelining: the client connection's queue, one exchange at a time -----------------------------


def test_pipelined_requests_are_answered_in_order_one_exchange_at_a_time():
    async def scenario() -> None:
        balancer = FakeBalancer(A)
        client = ClientConnection(balancer)  # type: ignore[arg-type]
        transport = FakeTransport()
        client.connection_made(transport)  # type: ignore[arg-type]
        client.data_received(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n")
        (conn,) = balancer.connections.opened
        assert conn.transport.data.startswith(b"GET /first ") and b"/second" not in conn.transport.data
        conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst")
        # The first is answered: the second goes out, on the same (kept-alive) upstream connection.
        assert balancer.connections.opened == [conn] and b"GET /second " in conn.transport.data
        conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond")
        answers = transport.data
        assert answers.count(b"HTTP/1.1 200 OK") == 2 and answers.index(b"first") < answers.index(b"second")
        assert balancer.stats.requests == balancer.stats.responses == 2
        client.connection_lost(None)

    asyncio.run(scenario())
