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

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING

from lb.http11 import RequestHead, hop_by_hop
from lb.pool import Backend, Pool
from lb.upstream import UpstreamConnection

if TYPE_CHECKING:
    from lb.client import ClientConnection

log = logging.getLogger("scalecube.lb")

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
SHED_BY = b"x-shed-by"  # set by a cluster master that answered 503 without running anything
REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
BODYLESS_STATUSES = frozenset({204, 304})
FAILURE_COUNTERS = {"no_route": "unrouted_404", "bad_gateway": "upstream_failed_502", "no_backend": "no_backend_503",
                    "backend_unreachable": "unreachable_503", "gateway_timeout": "upstream_timeout_504",
                    "request_timeout": "client_body_timeout_408", "not_found": "internal_404",
                    }  # error -> BalancerStats field  # fmt: skip


@dataclass(frozen=True)
class ProxyOptions:
    """What the proxy needs of the configuration (``lb.app.proxy_options`` fills it from ``lb.config``,
    where the defaults live)."""

    connect_timeout: float
    read_timeout: float  # upstream: whole request sent -> response head, and each silence in the response body
    idle_timeout: float  # client keep-alive: waiting for the next request
    header_timeout: float  # client: first byte -> whole head, and accept -> first byte (slowloris guard)
    body_timeout: float  # client: each silence inside its request body
    max_header_bytes: int
    max_headers: int
    max_connections: int
    max_connections_per_client: int
    retries: int  # extra backends to try
    upstream_max_idle: float = 2.0  # below uvicorn's 5 s keep-alive, so we never reuse a connection it is closing
    scheme: bytes = b"http"


def error_response(status: int, error: str, message: str, *, close: bool = True, **extra: str) -> bytes:
    body = json.dumps({"error": error, "message": message, **extra}).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{'connection: close' if close else 'connection: keep-alive'}\r\n\r\n")  # fmt: skip
    return head.encode() + body


class Exchange:
    """One request and its response, across retries."""

    def __init__(self, client: ClientConnection, head: RequestHead) -> None:
        self.client = client
        self.balancer = client.balancer
        self.options = client.options
        self.stats = client.stats
        self.method = head.method
        self.url = head.target
        self.keep_alive = head.keep_alive
        self.upstream_name = self.balancer.router.match(head.target)
        self.pool: Pool | None = self.balancer.pools.get(self.upstream_name)
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
        self._last_chunk = 0.0  # loop time of the last response body bytes (the read timeout's silence)
        self._last_body_in = 0.0  # loop time of the last request body bytes (the body timeout's silence)
        self._held = False  # the upstream cannot take more body: the client's silence is ours, not its
        self.connect_failures = 0  # tries whose connection could not be opened
        self.response_chunked = False
        self.response_keep_alive = False
        self.done = False
        self._timer: asyncio.TimerHandle | None = None

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
        out += (b"x-forwarded-for: ", client_ip, b"\r\nx-forwarded-proto: ", self.options.scheme, b"\r\n")
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
            self.fail(404, "not_found", "no such resource")
            return
        if self.pool is None:
            self.fail(404, "no_route", f"no route of this balancer matches {self.url.decode('latin-1')!r}")
            return
        sticky = self.balancer.sticky
        if sticky is not None:
            self.sticky_backend = sticky.backend_from(self.cookie, self.pool)
        self.try_next()

    def try_next(self) -> None:
        pool = self.pool
        assert pool is not None
        tried = self.tried
        if len(tried) > self.options.retries:
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
        if conn is not None and (self.method in IDEMPOTENT or time.monotonic() - conn.idle_since < 1.0):
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
            self.fail(503, "backend_unreachable", f"no backend of {name} accepted a connection ({count} tried)",
                      upstream=name)  # fmt: skip
        else:
            self.fail(502, "bad_gateway", f"no backend of {name} answered ({count} tried)", upstream=name)

    async def connect(self, backend: Backend) -> None:
        try:
            conn = await self.balancer.connections.connect(backend, self.options.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            if self.done:
                return
            log.debug("connect to %s failed: %s", backend.label, exc)
            self.connect_failures += 1
            self._backend_finished(backend, served=False)
            assert self.pool is not None
            self.pool.connect_failed(backend)
            self.try_next()  # nothing was sent: safe for any method
            return
        if not backend.reachable:
            assert self.pool is not None
            self.pool.connect_ok(backend)
        if self.done:
            self.balancer.connections.give_back(conn)  # the client left meanwhile; the connection is fresh
            return
        if conn.closed:
            # Accepted and closed before we wrote a byte: a replica's master shedding at once (every worker
            # busy, cluster/handoff.py), or a server going away. Nothing was sent, so any method may go to
            # another backend; not a dead backend (it accepted), so no ejection.
            self._backend_finished(backend, served=None)
            self.try_next()
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
            self._arm(self.options.read_timeout, self._read_timeout)  # the backend's turn from here
        else:
            self._last_body_in = self.client.now()
            self._arm(self.options.body_timeout, self._body_stalled)  # still the client's turn

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
            self.conn.write(b"%x\r\n%b\r\n" % (len(data), data))
        else:
            self.conn.write(data)

    def client_body_done(self) -> None:
        was_done, self.body_done = self.body_done, True
        if was_done or self.conn is None:
            return  # no body, or send() finishes it once connected
        if self.chunked_request:
            self.conn.write(b"0\r\n\r\n")
        if not self.response_started:
            self._arm(self.options.read_timeout, self._read_timeout)  # the whole request is out: the backend's turn

    def _body_stalled(self) -> None:
        """The client sent no body bytes for the body timeout: its fault, a 408; the backend did nothing wrong."""
        self._timer = None
        silent = self.client.now() - self._last_body_in
        if self._held or silent < self.options.body_timeout:
            # Held back by the upstream's flow control (not the client's silence), or bytes came meanwhile.
            self._arm(self.options.body_timeout if self._held else self.options.body_timeout - silent,
                      self._body_stalled)  # fmt: skip
            return
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()  # the backend holds half a request: that connection is of no more use
        self._backend_finished(self.backend, served=None)
        self.fail(408, "request_timeout", f"the request body stalled for {self.options.body_timeout:g}s")

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
    def response_head(self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool, chunked: bool,
                      length: int | None) -> None:  # fmt: skip
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
        self._arm(self.options.read_timeout, self._body_timeout)

    def _shed_elsewhere(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """A replica's cluster master shed the request (``x-shed-by``: every worker busy, cluster/handoff.py):
        it ran nothing, so any method may go to another backend — as Envoy retries ``x-envoy-overloaded``.
        Only while tries are left and the body, if any, can be sent again; else the 503 goes to the client."""
        if len(self.tried) > self.options.retries or not self.replayable_body:
            return False
        if not any(name.lower() == SHED_BY for name, _ in headers):
            return False
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()  # the master closes it anyway (connection: close)
        self._backend_finished(self.backend, served=False)
        self.stats.shed_retries += 1
        self.try_next()
        return True

    def _body_timeout(self) -> None:
        self._timer = None
        silent = self.client.now() - self._last_chunk
        if silent < self.options.read_timeout:
            self._arm(self.options.read_timeout - silent, self._body_timeout)
            return
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()
        self.upstream_lost(TimeoutError(f"no body bytes for {self.options.read_timeout:g}s"))

    def response_body(self, data: bytes) -> None:
        self._last_chunk = self.client.now()
        if self.response_chunked:
            self.client.write(b"%x\r\n%b\r\n" % (len(data), data))
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
        self._disarm()
        backend = self.backend
        if self.response_started:
            # Mid-response: the client already has part of it; all we can do is cut it off too. Said loudly
            # and counted: it is the one failure no balancer can hide (HAProxy logs it as "SD").
            self.stats.responses_cut += 1
            log.warning("backend %s died mid-response (%s): %s %s cut off for the client, request id %s",
                        backend.label if backend else "?", exc or "connection closed", self.method.decode("latin-1"),
                        self.url.decode("latin-1"), self.request_id.decode("latin-1"))  # fmt: skip
            self._backend_finished(backend, served=False)
            self.done = True
            self.client.close()
            return
        self._backend_finished(backend, served=False)
        if self.method in IDEMPOTENT and self.replayable_body:
            self.try_next()
        else:
            self.fail(502, "bad_gateway", "the backend closed the connection before answering")

    def _read_timeout(self) -> None:
        """The backend took the whole request and has not answered within the read timeout: a 504.

        Busy or a heavy request, not dead: it is not ejected, and the request is not sent to another
        backend, which would only add the same heavy work there (HAProxy: no ``retry-on response-timeout``)."""
        self._timer = None
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()  # its answer, when it comes, has nowhere to go: the connection cannot be reused
        backend = self.backend
        if backend is not None:
            backend.timeouts += 1
            log.warning("backend %s did not answer %s %s within %gs: 504, not retried, request id %s", backend.label,
                        self.method.decode("latin-1"), self.url.decode("latin-1"), self.options.read_timeout,
                        self.request_id.decode("latin-1"))  # fmt: skip
        self._backend_finished(backend, served=None)
        self.fail(504, "gateway_timeout", f"the backend did not answer within {self.options.read_timeout:g}s")

    def client_lost(self, *, aborted: bool = True) -> None:
        """The client went away mid-exchange (or its body broke: ``aborted=False``, answered 400 by the
        connection): the same bookkeeping as a finished request (in flight counts must not leak, or
        leastconn would shun that backend forever), counted as neither."""
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
        if self.done:
            return
        self.done = True
        self._disarm()
        counter = FAILURE_COUNTERS.get(error)
        if counter:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        self.stats.responses += 1
        if not self.body_done:
            # The client may still be sending its body: answer and close lingering, so it reads our answer.
            self.client.exchange = None
            self.client.reply_and_close(error_response(status, error, message, **extra))
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

    def _arm(self, seconds: float, callback: object) -> None:
        self._disarm()
        self._timer = self.client._loop.call_later(seconds, callback)  # type: ignore[arg-type]

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
