"""One client connection at the balancer's door: parse requests, guard the door, answer them in order.

``ClientConnection`` parses with httptools, holds the guards (header size and count,
malformed requests, slow clients, a connection cap in all and one per client address),
judges each head by HTTP/1.1's rules (``lb.http11``) and hands each request in turn to
an ``lb.proxy.Exchange``, which finds it a backend.

**Pipelining, and why a queue.** HTTP/1.1 lets a client send its next requests before the
first is answered; the answers must come back in the order asked (RFC 9112 §9.3.2). httptools
parses a whole buffer in one call and calls back for every request in it, and it cannot
be paused mid-buffer. So requests that arrive while one is outstanding are recorded — head and
body — in a queue (``Pending``), and each becomes an exchange when the one before it is
answered. One exchange at a time per connection, as HAProxy does it: pipelined requests
gain the saved round trips, not parallel work on the backends, and nothing about ordering
responses can go wrong.

**Why these caps.** A queue is memory a client fills at will, so it is bounded:
``MAX_QUEUED`` requests and ``MAX_QUEUED_BYTES`` of their heads and bodies. Reaching
either does not drop anything: the connection stops *reading* (backpressure, TCP's own
flow control does the rest) until the queue shrinks. To be able to stop near a cap, the
parser is fed ``PARSE_SLICE`` bytes at a time, and checked between slices: the queue can
exceed its cap by at most one slice. The same stop serves request bodies: when the upstream
cannot take more (or no backend connection is open yet), parsing stops, and what is unparsed
waits in one buffer. A client that closes its sending side is taken as gone (nginx's default;
HAProxy would still answer): the request in flight is abandoned, so no backend's in-flight count
waits on a client that left.

**Per-client cap.** One address may hold ``max_connections_per_client`` connections; the
next is answered 429 and closed, so one client cannot take every slot of ``max_connections``
(HAProxy: a stick table on ``src`` and ``sc0_conn_cur``, with the same default).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import httptools

from lb.http11 import Rejected, RequestHead, judge
from lb.proxy import Exchange, Gateway, error_response

MAX_QUEUED = 16  # requests parsed ahead of their turn on one connection (pipelining)
MAX_QUEUED_BYTES = 65536  # their heads and bodies together
PARSE_SLICE = 8192  # fed to the parser at a time: how far past a cap the queue can go
LINGER_SECONDS = 1.0  # after an error reply, how long we drain the client's leftovers before closing
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Door(Gateway, Protocol):
    """The balancer as its client connections see it (``lb.server.Balancer``): what their exchanges need,
    and the open connections, in all and per client address."""

    clients: set[ClientConnection]
    connections_by_client: dict[bytes, int]


class RequestTooLarge(Exception):
    pass


@dataclass(eq=False)
class Pending:
    """A request from its first byte until it is an exchange: the one being parsed, or one queued."""

    url: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    header_bytes: int = 0
    head: RequestHead | None = None  # its head is complete and passed the rules
    error: bytes | None = None  # ... or broke one: this is its answer, then the connection closes
    body: list[bytes] = field(default_factory=list)  # kept while queued
    size: int = 0  # bytes it holds in the queue (head and body)
    complete: bool = False
    exchange: Exchange | None = None  # once started: the rest of its body goes there

    @property
    def ready(self) -> bool:
        return self.head is not None or self.error is not None


class ClientConnection(asyncio.Protocol):
    def __init__(self, balancer: Door) -> None:
        self.balancer = balancer
        self.timeouts = balancer.timeouts
        self.limits = balancer.limits
        self.stats = balancer.stats
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.client_ip = b""
        self.exchange: Exchange | None = None  # the request being answered
        self.queue: deque[Pending] = deque()  # after it, in order; the last may still be arriving
        self.queued_bytes = 0
        self.parsing: Pending | None = None  # the request the parser is in
        self.closing = False
        self.too_large = False
        self.lingering = False
        self._counted = False  # in the balancer's per-client count
        self._corked = False
        self._out: list[bytes] = []
        self._data = b""  # received, not parsed yet
        self._offset = 0
        self._flow_paused = False  # the exchange's upstream can take no more body (or has no connection yet)
        self._stopped = False  # nothing more is parsed: an answer that ends the connection is queued
        self._reading = True
        self._feeding = False
        self._starting = False
        self._loop = asyncio.get_event_loop()
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client_ip = (peer[0] if peer else "").encode()
        self.stats.connections_open += 1
        self.stats.connections_total += 1
        self.balancer.clients.add(self)
        per_client = self.balancer.connections_by_client
        per_client[self.client_ip] = mine = per_client.get(self.client_ip, 0) + 1
        self._counted = True
        if self.stats.connections_open > self.limits.max_connections:
            self.stats.connections_rejected += 1
            self.reply_and_close(error_response(503, "overloaded", "the balancer is at its connection limit"))
            return
        if mine > self.limits.max_connections_per_client:
            self.stats.connections_rejected_per_client += 1
            cap = self.limits.max_connections_per_client
            self.reply_and_close(
                error_response(
                    429,
                    "too_many_connections",
                    f"this client already has {cap} connections open, the most one client may have",
                )
            )
            return
        # A new connection owes us a request soon: waiting for its first byte is bounded by the header
        # timeout, not the (much longer) keep-alive idle one, or silent connections would hold slots for
        # minutes (HAProxy's `timeout http-request` does the same). Closed without a word, like an idle one.
        self._arm(self.timeouts.header, self._idle_timeout)

    def data_received(self, data: bytes) -> None:
        if self.lingering or self.parser is None:
            return
        self._data = self._data[self._offset :] + data if self._offset < len(self._data) else data
        self._offset = 0
        self._pump()

    def eof_received(self) -> bool:
        """The client is done sending: taken as gone (as nginx does by default), so its request in flight is
        abandoned — a backend's in-flight count must not wait on a client that left (leastconn)."""
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.stats.connections_open -= 1
        self.balancer.clients.discard(self)
        if self._counted:
            self._counted = False
            per_client = self.balancer.connections_by_client
            per_client[self.client_ip] -= 1
            if not per_client[self.client_ip]:
                del per_client[self.client_ip]
        self._disarm()
        self.queue.clear()
        if self.exchange is not None:
            self.exchange.client_lost()
            self.exchange = None

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client_paused(True)

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client_paused(False)

    # -- feeding the parser, a slice at a time ------------------------------------------
    def _unparsed(self) -> bool:
        return self._offset < len(self._data)

    def _may_parse(self) -> bool:
        return not (
            self._flow_paused
            or self._stopped
            or self.closing
            or self.lingering
            or self.parser is None
            or len(self.queue) >= MAX_QUEUED
            or self.queued_bytes >= MAX_QUEUED_BYTES
        )

    def _pump(self) -> None:
        """Parse what was received while the rules allow, then read more only if everything was parsed."""
        if self._feeding:
            return  # called back from inside the parser: the loop below goes on by itself
        self._feeding = True
        try:
            view = memoryview(self._data)
            while self._unparsed() and self._may_parse():
                start = self._offset
                self._offset = min(start + PARSE_SLICE, len(self._data))
                self._parse(view[start : self._offset])
        finally:
            self._feeding = False
        if not self._unparsed():
            self._data, self._offset = b"", 0
        self._set_reading(self._may_parse() and not self._unparsed())

    def _parse(self, data: memoryview) -> None:
        assert self.parser is not None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(error_response(501, "not_implemented", "protocol upgrades are not supported"))
        except httptools.HttpParserError as exc:
            if self.too_large:  # raised from our own callback; httptools wraps it
                self.stats.rejected_431 += 1
                self._reject(
                    error_response(
                        431,
                        "request_header_fields_too_large",
                        f"request headers exceed {self.limits.max_header_bytes} bytes "
                        f"or {self.limits.max_headers} fields",
                    )
                )
                return
            self.stats.rejected_400 += 1
            self._reject(error_response(400, "bad_request", f"malformed HTTP request: {exc}"))

    def _set_reading(self, reading: bool) -> None:
        if self.transport is None or self.closing or self.lingering or reading == self._reading:
            return
        self._reading = reading
        (self.transport.resume_reading if reading else self.transport.pause_reading)()

    def _reject(self, answer: bytes) -> None:
        """The parser broke on the request it was in: that one gets ``answer`` in its turn (after those
        before it), and nothing more is parsed."""
        self._stopped = True
        broken, self.parsing = self.parsing, None
        if broken is not None and broken.exchange is not None and broken.exchange is self.exchange:
            # Its body broke while it was being answered: that exchange ends here, unanswered by a backend.
            self.exchange.client_lost(aborted=False)
            self.exchange = None
            self.reply_and_close(answer)
            return
        if broken is not None and broken in self.queue:
            self.queue.remove(broken)  # its bytes stay counted: nothing more is queued anyway
        self.queue.append(Pending(error=answer))
        self._start_next()

    # -- timers ------------------------------------------------------------------------
    def _arm(self, seconds: float, callback: object) -> None:
        self._disarm()
        self._timer = self._loop.call_later(seconds, callback)  # type: ignore[arg-type]

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle_timeout(self) -> None:
        self.close()

    def _header_timeout(self) -> None:
        self.stats.rejected_timeout += 1
        self.reply_and_close(error_response(408, "request_timeout", "the request head took too long to arrive"))

    # -- httptools callbacks (request) ---------------------------------------------------
    def on_message_begin(self) -> None:
        self.parsing = pending = Pending()
        self.too_large = False
        self.queue.append(pending)
        if self.exchange is None and self.queue[0] is pending:
            self._arm(self.timeouts.header, self._header_timeout)  # its turn: its head is due now

    def on_url(self, url: bytes) -> None:
        assert self.parsing is not None
        self.parsing.url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.parsing is not None
        self.parsing.headers.append((name, value))
        self._count(len(name) + len(value) + 4)
        if len(self.parsing.headers) > self.limits.max_headers:
            self._too_large()

    def _count(self, size: int) -> None:
        assert self.parsing is not None
        self.parsing.header_bytes += size
        self.parsing.size += size
        self.queued_bytes += size
        if self.parsing.header_bytes > self.limits.max_header_bytes:
            self._too_large()

    def _too_large(self) -> None:
        self.too_large = True
        raise RequestTooLarge

    def on_headers_complete(self) -> None:
        pending, parser = self.parsing, self.parser
        assert pending is not None and parser is not None
        self.stats.requests += 1
        try:
            pending.head = judge(
                parser.get_method(), pending.url, parser.get_http_version(), pending.headers, parser.should_keep_alive()
            )
        except Rejected as exc:
            if exc.status == 400:
                self.stats.rejected_400 += 1
            elif exc.status == 417:
                self.stats.rejected_417 += 1
            pending.error = error_response(exc.status, exc.error, exc.message)
            self._stopped = True  # answered, then closed: what follows is not parsed
        self._start_next()

    def on_body(self, body: bytes) -> None:
        pending = self.parsing
        assert pending is not None
        if pending.exchange is not None:
            pending.exchange.client_body(body)
        elif pending.error is None:
            pending.body.append(body)
            pending.size += len(body)
            self.queued_bytes += len(body)

    def on_message_complete(self) -> None:
        pending, self.parsing = self.parsing, None
        assert pending is not None
        pending.complete = True
        if pending.exchange is not None:
            pending.exchange.client_body_done()

    # -- requests in turn ------------------------------------------------------------------
    def _start_next(self) -> None:
        """Turn the first queued request into the exchange, if none is outstanding and its head is complete."""
        if self._starting:
            return  # an exchange finished while starting: the loop below takes the next one
        self._starting = True
        try:
            while (
                self.exchange is None and self.queue and self.queue[0].ready and not self.closing and not self.lingering
            ):
                pending = self.queue.popleft()
                self.queued_bytes -= pending.size
                self._disarm()
                if pending.error is not None:
                    self.reply_and_close(pending.error)
                    return
                assert pending.head is not None
                self.exchange = pending.exchange = exchange = Exchange(self, pending.head)
                for chunk in pending.body:  # what arrived while it waited; the rest comes from the parser
                    exchange.client_body(chunk)
                pending.body.clear()
                if pending.complete:
                    exchange.client_body_done()
                exchange.begin()
        finally:
            self._starting = False

    # -- used by the exchange -------------------------------------------------------------
    def now(self) -> float:
        """The exchanges' one clock: monotonic, the one idle upstream connections are stamped with."""
        return time.monotonic()

    def call_later(self, seconds: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self._loop.call_later(seconds, callback)

    def write(self, data: bytes) -> None:
        if self._corked:
            self._out.append(data)
        elif self.transport is not None and not self.closing:
            self.transport.write(data)

    def writelines(self, parts: Iterable[bytes]) -> None:
        """``write`` of several buffers (a chunk's size line, its data, its end), none of them copied here."""
        if self._corked:
            self._out.extend(parts)
        elif self.transport is not None and not self.closing:
            self.transport.writelines(parts)

    def cork(self) -> None:
        """Collect writes (head, body parts, chunk ends) until ``uncork``: one syscall per upstream read."""
        self._corked = True

    def uncork(self) -> None:
        self._corked = False
        if self._out:
            out, self._out = self._out, []
            self.writelines(out)

    def send_continue(self) -> None:
        """``Expect: 100-continue``: a backend can take the body now."""
        self.write(CONTINUE)

    def read_body(self, paused: bool) -> None:
        """Flow control for request bodies: the upstream can't take more yet (or can again)."""
        self._flow_paused = paused
        if paused:
            self._set_reading(False)
        else:
            self._pump()

    def exchange_done(self, keep_alive: bool) -> None:
        self.exchange = None
        self._flow_paused = False
        if not keep_alive or self.closing or self.balancer.draining:
            self.close()
            return
        self._start_next()
        self._pump()
        if self.exchange is None and not (self.closing or self.lingering):
            if self.queue:
                self._arm(self.timeouts.header, self._header_timeout)  # the next head is due
            else:
                self._arm(self.timeouts.idle, self._idle_timeout)

    def exchange_refused(self, answer: bytes) -> None:
        """The exchange answered (an error) before the request's body was all read: ``answer``, then a
        lingering close (``reply_and_close``)."""
        self.exchange = None
        self.reply_and_close(answer)

    def reply_and_close(self, data: bytes) -> None:
        """Answer, then a lingering close: half-close and discard what the client still sends, so
        our reply is not destroyed by the reset a full close would provoke (nginx does the same)."""
        self.write(data)
        self.uncork()
        if self.transport is None or self.closing or self.lingering:
            return
        self.lingering = True
        self.parser = None  # nothing more is parsed
        self.queue.clear()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.transport.resume_reading()
        self._arm(LINGER_SECONDS, self.close)

    def close(self) -> None:
        self.uncork()
        if not self.closing and self.transport is not None:
            self.closing = True
            self._disarm()
            self.transport.close()

    def drain(self) -> None:
        """Balancer stopping: an idle connection closes now; a busy one after its response."""
        if self.exchange is None:
            self.close()
