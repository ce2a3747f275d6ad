"""The balancer's HTTP path from a request to its answer: ``Exchange``.

``lb.client.ClientConnection`` parses requests and hands each, in turn, to an
``Exchange``: pick a backend (sticky cookie first), send the head on a pooled or new
upstream connection, stream the body both ways with flow control, and retry on another
backend when that is safe:

- the connection could not be opened: nothing was sent, any request may go elsewhere
  (and only this counts against the backend: it is ejected until checks pass again);
- the backend closed or reset the connection before the first response byte: only
  idempotent requests without a body are replayed — a POST that reached a
  backend is never sent twice.

Every try that ends without a response goes through ``Exchange._try_failed``, and
whether the request may move on is decided in one place, ``Exchange._may_retry``.

A backend that accepted the request but answers later than the read timeout is
not dead, only busy, or the request is heavy: the client gets a 504, the backend
stays in, and the request is not sent to another one (that is how a retry storm
starts: every slow request multiplied by the number of backends). A client that
stalls while sending its body gets a 408; that is no backend's failure either.

What reaches the backend is the request as ``lb.http11`` judged it: origin-form, one Host,
no hop-by-hop fields (nor those the client's ``Connection`` names), and the forwarding
fields replaced by what the balancer saw (the client's own are dropped, never extended).

``Expect: 100-continue``: the balancer answers the 100 itself, once a backend connection
is open and ready for the body, rather than forwarding the expectation. It is the hop the
client talks to: everything it can refuse without the body (no route, no backend, a
malformed or oversized head) it refuses before the body is sent, which is what the
client asked for; and the body timeout then measures only the client's own silence after
the go-ahead, never a backend that is slow to say 100 (uvicorn says it only once the app
reads the body). The price: a backend's own early refusal (401, 413) comes after the body
has been streamed — the body is streamed anyway, never buffered, so this costs bandwidth,
not memory.
"""

from __future__ import annotations

import enum
import json
import logging
import os
from collections.abc import Callable, Coroutine, Iterable, Mapping
from http import HTTPStatus
from typing import Any, Protocol

from lb.config import Limits, Timeouts
from lb.http11 import RequestHead, hop_by_hop
from lb.pool import Backend, Pool
from lb.stats import BalancerStats
from lb.sticky import StickyCookie
from lb.upstream import ConnectionPool, UpstreamConnection

log = logging.getLogger("scalecube.lb")

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
SHED_BY = b"x-shed-by"  # set by a cluster master that answered 503 without running anything
REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
BODYLESS_STATUSES = frozenset({204, 304})
SCHEME = b"http"  # X-Forwarded-Proto: the balancer terminates no TLS
FRESH_SECONDS = 1.0  # a pooled connection idle for less may carry a non-idempotent request


# -- what an exchange needs of the balancer and of its client connection --------------------
# Protocols, so that this module imports neither lb.server nor lb.client (they import it), and a
# test can hand an exchange fakes (tests/lb/test_exchange.py).


class RouteTable(Protocol):
    def match(self, path: bytes) -> str | None: ...


class Refusals(Protocol):
    def refuses(self, method: bytes, target: bytes) -> bool: ...


class Gateway(Protocol):
    """The balancer as an exchange sees it (``lb.server.Balancer``)."""

    pools: Mapping[str, Pool]
    router: RouteTable
    internal: Refusals | None  # requests the public port refuses (lb.config.InternalPaths); None: none
    sticky: StickyCookie | None
    connections: ConnectionPool
    timeouts: Timeouts
    limits: Limits
    stats: BalancerStats
    draining: bool

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> object: ...


class Timer(Protocol):
    def cancel(self) -> None: ...


class Client(Protocol):
    """The client connection an exchange answers (``lb.client.ClientConnection``)."""

    balancer: Gateway
    client_ip: bytes

    def now(self) -> float: ...  # time.monotonic(): the clock idle upstream connections are stamped with
    def call_later(self, seconds: float, callback: Callable[[], None]) -> Timer: ...
    def write(self, data: bytes) -> None: ...
    def writelines(self, parts: Iterable[bytes]) -> None: ...
    def cork(self) -> None: ...
    def uncork(self) -> None: ...
    def send_continue(self) -> None: ...
    def read_body(self, paused: bool) -> None: ...
    def exchange_done(self, keep_alive: bool) -> None: ...
    def exchange_refused(self, answer: bytes) -> None: ...
    def close(self) -> None: ...


class TryEnd(enum.Enum):
    """How a try on one backend ended without a response the client can have (``Exchange._try_failed``)."""

    REFUSED = "the connection could not be opened"  # nothing sent; the one failure that ejects a backend
    CLOSED = "accepted and closed before a byte was written"  # nothing sent (a master shedding at once)
    SHED = "a cluster master shed it (503, x-shed-by)"  # sent, but nothing ran
    LOST = "the connection closed or broke before the response"  # sent: the backend may have acted on it
    TIMEOUT = "no response within the read timeout"  # sent, and the backend is busy with it


def error_response(status: int, error: str, message: str, *, close: bool = True, **extra: str) -> bytes:
    body = json.dumps({"error": error, "message": message, **extra}).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{'connection: close' if close else 'connection: keep-alive'}\r\n\r\n"
    )
    return head.encode() + body


class Exchange:
    """One request and its response, across retries."""

    def __init__(self, client: Client, head: RequestHead) -> None:
        self.client = client
        self.balancer = balancer = client.balancer
        self.timeouts = balancer.timeouts
        self.retries = balancer.limits.retries  # other backends a failed try may move to
        self.stats = balancer.stats
        self.method = head.method
        self.url = head.target
        self.keep_alive = head.keep_alive
        self.upstream_name = balancer.router.match(head.target)
        self.pool: Pool | None = balancer.pools.get(self.upstream_name)  # type: ignore[arg-type]
        self.tried: list[Backend] = []
        self.backend: Backend | None = None
        self.conn: UpstreamConnection | None = None
        self.cookie: bytes | None = None
        self.sticky_backend: Backend | None = None
        self.head, self.request_id, self.chunked_request, has_body = self._build_head(head)
        self.expect_continue = head.expect_continue and has_body  # send a 100 once a backend can take the body
        self.body_seen = False  # any request body bytes (a client that did not wait needs no 100)
        self.replayable_body = not has_body  # bodies stream through: one that was sent cannot be resent
        self.pending_body: list[bytes] = []  # arrived while no upstream connection was ready
        self.body_done = not has_body
        self.response_started = False
        self._last_chunk = 0.0  # client.now() of the last response body bytes (the read timeout's silence)
        self._last_body_in = 0.0  # client.now() of the last request body bytes (the body timeout's silence)
        self._held = False  # the upstream cannot take more body: the client's silence is ours, not its
        self.connect_failures = 0  # tries whose connection could not be opened
        self.response_chunked = False
        self.response_keep_alive = False
        self.done = False
        self._timer: Timer | None = None

    # -- the request head -----------------------------------------------------------------
    def _build_head(self, head: RequestHead) -> tuple[bytes, bytes, bool, bool]:
        """The head for the backend: origin-form, the judged Host, none of ``head.dropped``, and the forwarding
        fields as the balancer saw the client (lb.http11 says why the client's own are dropped)."""
        out = [self.method, b" ", self.url, b" HTTP/1.1\r\nhost: ", head.host, b"\r\n"]
        request_id = cookie = None
        chunked = False
        length = None
        sticky = self.balancer.sticky
        dropped = head.dropped
        for name, value in head.headers:
            lower = name.lower()
            if lower == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
                continue
            if lower == b"content-length":
                length = value
                continue
            if lower in dropped:
                continue
            if lower == b"x-request-id":
                request_id = value
            elif lower == b"cookie":
                cookie = value
                if sticky is not None and sticky.prefix in value:
                    value = sticky.strip(value)  # the balancer's cookie is its own business, not the backend's
                    if not value:
                        continue
            out += (name, b": ", value, b"\r\n")
        client_ip = self.client.client_ip
        out += (b"x-forwarded-for: ", client_ip, b"\r\nx-forwarded-proto: ", SCHEME, b"\r\n")
        if request_id is None:
            request_id = os.urandom(16).hex().encode()
            out += (b"x-request-id: ", request_id, b"\r\n")
        has_body = chunked or (length is not None and length.strip() != b"0")
        if chunked:
            out.append(b"transfer-encoding: chunked\r\n")
        elif length is not None:
            out += (b"content-length: ", length, b"\r\n")
        out.append(b"\r\n")
        self.cookie = cookie
        return b"".join(out), request_id, chunked, has_body

    # -- choosing and reaching a backend ---------------------------------------------------
    def begin(self) -> None:
        internal = self.balancer.internal
        if internal is not None and internal.refuses(self.method, self.url):
            # Served by a backend, but only inside the network (lb.config.DEFAULT_INTERNAL): the same 404 as
            # a path nobody serves, so the public port does not even say it exists.
            self.stats.internal_404 += 1
            self.fail(404, "not_found", "no such resource")
            return
        if self.pool is None:
            self.stats.unrouted_404 += 1
            self.fail(404, "no_route", f"no route of this balancer matches {self.url.decode('latin-1')!r}")
            return
        sticky = self.balancer.sticky
        if sticky is not None:
            self.sticky_backend = sticky.backend_from(self.cookie, self.pool)
        self.try_next()

    def _tries_left(self) -> bool:
        return len(self.tried) <= self.retries

    def try_next(self) -> None:
        pool = self.pool
        assert pool is not None
        tried = self.tried
        if not self._tries_left():
            self._give_up()
            return
        if tried:
            backend = pool.pick(tried)
        else:
            backend = self.sticky_backend or pool.pick()
            if pool.panic:
                pool.panic_requests += 1
        if backend is None:
            if tried:
                self._give_up()
            else:
                self.stats.no_backend_503 += 1
                self.fail(503, "no_backend", f"upstream {pool.name} has no backend", upstream=pool.name)
            return
        if tried:
            self.stats.retries += 1
            tried[-1].retried_away += 1
        tried.append(backend)
        self.backend = backend
        backend.inflight += 1
        conn = self.balancer.connections.take(backend)
        # A non-idempotent request is never sent on a connection that could be stale:
        # if it failed there we could not know whether the backend acted on it.
        if conn is not None and (self.method in IDEMPOTENT or self.client.now() - conn.idle_since < FRESH_SECONDS):
            self.send(conn)
        else:
            if conn is not None:
                self.balancer.connections.give_back(conn)
            self.balancer.spawn(self.connect(backend))

    def _give_up(self) -> None:
        """Every try failed. Not one connection opened: the group is unreachable (503, as HAProxy says
        then); some backend took the request and failed to answer: 502."""
        assert self.pool is not None
        name, count = self.pool.name, len(self.tried)
        if self.connect_failures == count:
            self.stats.unreachable_503 += 1
            self.fail(
                503, "backend_unreachable", f"no backend of {name} accepted a connection ({count} tried)", upstream=name
            )
        else:
            self.stats.upstream_failed_502 += 1
            self.fail(502, "bad_gateway", f"no backend of {name} answered ({count} tried)", upstream=name)

    async def connect(self, backend: Backend) -> None:
        try:
            conn = await self.balancer.connections.connect(backend, self.timeouts.connect)
        except (TimeoutError, OSError) as exc:
            if self.done:
                return
            log.debug("connect to %s failed: %s", backend.label, exc)
            self._try_failed(TryEnd.REFUSED)
            return
        if not backend.reachable:
            assert self.pool is not None
            self.pool.connect_ok(backend)
        if self.done:
            self.balancer.connections.give_back(conn)  # the client left meanwhile; the connection is fresh
            return
        if conn.closed:
            # Accepted and closed before we wrote a byte: a replica's master shedding at once (every worker
            # busy, cluster/handoff.py), or a server going away. Not a dead backend (it accepted): no ejection.
            self._try_failed(TryEnd.CLOSED)
            return
        self.send(conn)

    def send(self, conn: UpstreamConnection) -> None:
        self.conn = conn
        conn.start(self, self.head)
        for chunk in self.pending_body:
            self._write_body(chunk)
        self.pending_body.clear()
        if self.expect_continue and not self.body_done and not self.body_seen:
            self.expect_continue = False  # once, however many backends are tried
            self.client.send_continue()
        self.client.read_body(False)
        if self.body_done:
            if self.chunked_request:
                conn.write(b"0\r\n\r\n")
            self._arm(self.timeouts.read, self._read_timeout)  # the backend's turn from here
        else:
            self._last_body_in = self.client.now()
            self._arm(self.timeouts.body, self._body_stalled)  # still the client's turn

    # -- request body ------------------------------------------------------------------------
    def client_body(self, data: bytes) -> None:
        self.body_seen = True
        if self.conn is None:
            self.pending_body.append(data)
            self.client.read_body(True)  # hold the rest until a backend takes it
        else:
            self._last_body_in = self.client.now()
            self._write_body(data)

    def _write_body(self, data: bytes) -> None:
        assert self.conn is not None
        if self.chunked_request:
            self.conn.writelines((b"%x\r\n" % len(data), data, b"\r\n"))  # the body bytes are never copied
        else:
            self.conn.write(data)

    def client_body_done(self) -> None:
        was_done, self.body_done = self.body_done, True
        if was_done or self.conn is None:
            return  # no body, or send() finishes it once connected
        if self.chunked_request:
            self.conn.write(b"0\r\n\r\n")
        if not self.response_started:
            self._arm(self.timeouts.read, self._read_timeout)  # the whole request is out: the backend's turn

    def _body_stalled(self) -> None:
        """The client sent no body bytes for the body timeout: its fault, a 408; the backend did nothing wrong."""
        self._timer = None
        limit = self.timeouts.body
        silent = self.client.now() - self._last_body_in
        if self._held or silent < limit:
            # Held back by the upstream's flow control (not the client's silence), or bytes came meanwhile.
            self._arm(limit if self._held else limit - silent, self._body_stalled)
            return
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()  # the backend holds half a request: that connection is of no more use
        self._backend_finished(self.backend, served=None)
        self.stats.client_body_timeout_408 += 1
        self.fail(408, "request_timeout", f"the request body stalled for {limit:g}s")

    def upstream_paused(self, paused: bool) -> None:
        self._held = paused
        if not paused:
            self._last_body_in = self.client.now()  # the client's silence counts from now again
        self.client.read_body(paused)

    def batch_begin(self) -> None:
        self.client.cork()

    def batch_end(self) -> None:
        self.client.uncork()

    # -- response ------------------------------------------------------------------------------
    def response_head(
        self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool, chunked: bool, length: int | None
    ) -> None:
        self._disarm()
        if status < 200:
            return  # interim (100 Continue): the final head follows
        if status == 503 and self._shed_elsewhere(headers):
            return
        self.response_started = True
        self.response_keep_alive = keep_alive and self.method != b"HEAD"
        bodyless = self.method == b"HEAD" or status in BODYLESS_STATUSES
        out = [b"HTTP/1.1 %d %b\r\n" % (status, REASONS.get(status, b"Unknown"))]
        dropped = hop_by_hop(headers)  # the fixed list and what the backend's Connection names
        for name, value in headers:
            if name.lower() not in dropped:
                out += (name, b": ", value, b"\r\n")
        if length is not None:
            out += (b"content-length: %d\r\n" % length,)
        elif not bodyless:
            # No length (chunked or close-delimited upstream): chunk it for the client.
            self.response_chunked = True
            out.append(b"transfer-encoding: chunked\r\n")
        sticky = self.balancer.sticky
        if sticky is not None and self.backend is not None and self.backend is not self.sticky_backend:
            out += (b"set-cookie: ", sticky.set_cookie_header(self.backend), b"\r\n")
        if not self.keep_alive or self.balancer.draining:
            out.append(b"connection: close\r\n")
            self.keep_alive = False
        out.append(b"\r\n")
        self.client.write(b"".join(out))
        if bodyless and self.conn is not None:
            # httptools cannot know a HEAD response has no body: finish here, never reuse the connection.
            conn, self.conn = self.conn, None
            conn.abort()
            self._finish(reuse=None)
            return
        # The read timeout also bounds each silence inside the body. One timer per response, not
        # one per chunk: chunks only stamp the time, and the timer re-arms itself for the rest.
        self._last_chunk = self.client.now()
        self._arm(self.timeouts.read, self._body_timeout)

    def _shed_elsewhere(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """A replica's cluster master shed the request (``x-shed-by``: every worker busy, cluster/handoff.py):
        it ran nothing, so any method may go to another backend — as Envoy retries ``x-envoy-overloaded``.
        Only while tries are left and the body, if any, can be sent again; else the 503 goes to the client."""
        if not (self._tries_left() and self._may_retry(TryEnd.SHED)):
            return False
        if not any(name.lower() == SHED_BY for name, _ in headers):
            return False
        self.stats.shed_retries += 1
        self._try_failed(TryEnd.SHED)  # the master closes the connection anyway (connection: close)
        return True

    def _body_timeout(self) -> None:
        self._timer = None
        silent = self.client.now() - self._last_chunk
        if silent < self.timeouts.read:
            self._arm(self.timeouts.read - silent, self._body_timeout)
            return
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()
        self.upstream_lost(TimeoutError(f"no body bytes for {self.timeouts.read:g}s"))

    def response_body(self, data: bytes) -> None:
        self._last_chunk = self.client.now()
        if self.response_chunked:
            self.client.writelines((b"%x\r\n" % len(data), data, b"\r\n"))  # the body bytes are never copied
        else:
            self.client.write(data)

    def response_done(self) -> None:
        if self.response_chunked:
            self.client.write(b"0\r\n\r\n")
        conn, self.conn = self.conn, None
        self._finish(reuse=conn if self.response_keep_alive else None, close=conn)

    def client_paused(self, paused: bool) -> None:
        if self.conn is not None and self.conn.transport is not None and not self.conn.closed:
            (self.conn.transport.pause_reading if paused else self.conn.transport.resume_reading)()

    # -- failures ------------------------------------------------------------------------------
    def upstream_lost(self, exc: Exception | None) -> None:
        """The connection closed, reset or broke (or the response stalled) once the request was on it.

        Not held against the backend (no ejection): a pooled connection the backend was closing, or a
        worker that died while others live, says nothing about the next connection. The checks decide."""
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()
        if self.done:
            return
        if not self.response_started:
            self._try_failed(TryEnd.LOST)
            return
        # Mid-response: the client already has part of it; all we can do is cut it off too. Said loudly
        # and counted: it is the one failure no balancer can hide (HAProxy logs it as "SD").
        self._disarm()
        backend = self.backend
        self.stats.responses_cut += 1
        log.warning(
            "backend %s died mid-response (%s): %s %s cut off for the client, request id %s",
            backend.label if backend else "?",
            exc or "connection closed",
            self.method.decode("latin-1"),
            self.url.decode("latin-1"),
            self.request_id.decode("latin-1"),
        )
        self._backend_finished(backend, served=False)
        self.done = True
        self.client.close()

    def _read_timeout(self) -> None:
        """The backend took the whole request and has not answered within the read timeout: a 504."""
        self._timer = None
        self._try_failed(TryEnd.TIMEOUT)

    def _may_retry(self, end: TryEnd) -> bool:
        """May the request go to another backend after a try ended so? The one place that says it.

        Nothing sent: any request. Shed: nothing ran, so any method, if its body can be sent again (bodies
        stream through; one that was sent is gone). Lost after sending: only an idempotent request without a
        body — a POST that reached a backend is never sent twice. Timed out: never. A backend that took the
        request and is slow is busy, or the request is heavy: sending it to the next one only adds the same
        heavy work there, and then to the one after (a retry storm; HAProxy: no ``retry-on response-timeout``)."""
        if end is TryEnd.REFUSED or end is TryEnd.CLOSED:
            return True
        if end is TryEnd.SHED:
            return self.replayable_body
        if end is TryEnd.LOST:
            return self.method in IDEMPOTENT and self.replayable_body
        return False

    def _try_failed(self, end: TryEnd) -> None:
        """The try on ``self.backend`` ended without a response: account for it, then try the next backend
        or answer the client (a 504 for a timeout, else a 502)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()  # its answer, if one comes, has nowhere to go: the connection cannot be reused
        self._disarm()
        backend = self.backend
        if end is TryEnd.REFUSED:
            self.connect_failures += 1
        elif end is TryEnd.TIMEOUT and backend is not None:
            backend.timeouts += 1
            log.warning(
                "backend %s did not answer %s %s within %gs: 504, not retried, request id %s",
                backend.label,
                self.method.decode("latin-1"),
                self.url.decode("latin-1"),
                self.timeouts.read,
                self.request_id.decode("latin-1"),
            )
        # Failed (counted against it): refused, shed or lost. Neither: closed unsent, or busy (timed out).
        self._backend_finished(backend, served=False if end in (TryEnd.REFUSED, TryEnd.SHED, TryEnd.LOST) else None)
        if end is TryEnd.REFUSED and backend is not None:
            assert self.pool is not None
            self.pool.connect_failed(backend)  # passive ejection: the one failure that says a backend is dead
        if self._may_retry(end):
            self.try_next()  # which gives up (502 or 503) when no tries are left
        elif end is TryEnd.TIMEOUT:
            self.stats.upstream_timeout_504 += 1
            self.fail(504, "gateway_timeout", f"the backend did not answer within {self.timeouts.read:g}s")
        else:
            self.stats.upstream_failed_502 += 1
            self.fail(502, "bad_gateway", "the backend closed the connection before answering")

    def client_lost(self, *, aborted: bool = True) -> None:
        """The client went away mid-exchange (or its body broke: ``aborted=False``, answered 400 by the
        connection): the same bookkeeping as a finished request (in flight counts must not leak, or
        leastconn would shun that backend forever, and a removed backend would never be forgotten),
        counted as neither."""
        if self.done:
            return
        self.done = True
        self._disarm()
        if aborted:
            self.stats.client_aborts += 1
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()  # mid-exchange: the connection's state is unknown
        self._backend_finished(self.backend, served=None)

    def fail(self, status: int, error: str, message: str, **extra: str) -> None:
        """Answer the client ``status`` with a JSON error (the caller counts it in its own stats field)."""
        if self.done:
            return
        self.done = True
        self._disarm()
        self.stats.responses += 1
        if not self.body_done:
            # The client may still be sending its body: answer and close lingering, so it reads our answer.
            self.client.exchange_refused(error_response(status, error, message, **extra))
            return
        keep_alive = self.keep_alive and not self.balancer.draining
        self.client.write(error_response(status, error, message, close=not keep_alive, **extra))
        self.client.exchange_done(keep_alive)

    # -- bookkeeping -----------------------------------------------------------------------------
    def _backend_finished(self, backend: Backend | None, *, served: bool | None) -> None:
        """A try on ``backend`` is over (every path comes here exactly once per try): served, failed
        (``served=False``) or neither (timed out, or the client left)."""
        if backend is None:
            return
        backend.inflight -= 1
        if served:
            backend.served += 1
        elif served is False:
            backend.failed += 1
        if backend.removed and backend.inflight == 0 and self.pool is not None:
            self.pool.forget_drained()
        self.backend = None

    def _finish(self, reuse: UpstreamConnection | None, close: UpstreamConnection | None = None) -> None:
        if self.done:
            return
        self.done = True
        self._disarm()
        self._backend_finished(self.backend, served=True)
        if reuse is not None and self.body_done:
            self.balancer.connections.give_back(reuse)
        elif close is not None:
            close.close()
        self.stats.responses += 1
        self.client.exchange_done(self.keep_alive and self.body_done)

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.client.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
