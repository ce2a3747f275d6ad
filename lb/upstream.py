"""Connections from the balancer to backends: HTTP/1.1 keep-alive, parsed with httptools.

An ``UpstreamConnection`` carries one exchange at a time and hands what it
parses (response head, body chunks, completion, loss) to that exchange.
``ConnectionPool`` keeps idle ones per backend, and only reuses a connection
younger than the backend's own keep-alive timeout: reusing one the backend is
about to close is the classic way a proxy loses a request.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterable
from typing import Protocol

import httptools

from lb.pool import Backend

# Idle connections older than this are not reused: below uvicorn's 5 s keep-alive, so we never send a
# request on a connection the backend is closing.
MAX_IDLE_AGE = 2.0


class ExchangeSink(Protocol):
    """What an upstream connection reports to (implemented by ``lb.proxy.Exchange``)."""

    def response_head(
        self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool, chunked: bool, length: int | None
    ) -> None: ...
    def response_body(self, data: bytes) -> None: ...
    def response_done(self) -> None: ...
    def upstream_lost(self, exc: Exception | None) -> None: ...
    def upstream_paused(self, paused: bool) -> None: ...
    def batch_begin(self) -> None: ...
    def batch_end(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.sink: ExchangeSink | None = None
        self.idle_since = time.monotonic()
        self.closed = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_delivered = False
        self._chunked = False
        self._length: int | None = None

    # -- asyncio ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        sink = self.sink  # kept: the exchange detaches itself when the response completes
        if sink is not None:
            sink.batch_begin()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
        finally:
            if sink is not None:
                sink.batch_end()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        sink, self.sink = self.sink, None
        if sink is None:
            return
        if self._head_delivered and exc is None and self._length is None and not self._chunked:
            sink.response_done()  # a close-delimited body ends where the connection does
        else:
            sink.upstream_lost(exc)

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_paused(True)

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_paused(False)

    # -- httptools callbacks -----------------------------------------------------------
    def on_message_begin(self) -> None:
        self._head_delivered = False
        self._headers = []
        self._chunked = False
        self._length = None

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"transfer-encoding":
            self._chunked = b"chunked" in value.lower()
        elif lower == b"content-length":
            self._length = int(value)
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._head_delivered = True
        if self.sink is not None:
            self.sink.response_head(
                self.parser.get_status_code(),
                self._headers,
                self.parser.should_keep_alive(),
                self._chunked,
                self._length,
            )

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:
            self.sink.response_body(body)

    def on_message_complete(self) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.response_done()

    # -- use -------------------------------------------------------------------------------
    def start(self, sink: ExchangeSink, head: bytes) -> None:
        self.sink = sink
        assert self.transport is not None
        self.transport.write(head)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def writelines(self, parts: Iterable[bytes]) -> None:
        assert self.transport is not None
        self.transport.writelines(parts)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    def abort(self) -> None:
        self.sink = None
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True

    def _fail(self, exc: Exception) -> None:
        sink, self.sink = self.sink, None
        self.abort()
        if sink is not None:
            sink.upstream_lost(exc)


class ConnectionPool:
    """Idle keep-alive connections per backend, newest first."""

    def __init__(self, *, max_idle_age: float = MAX_IDLE_AGE, max_idle_per_backend: int = 64) -> None:
        self.max_idle_age = max_idle_age
        self.max_idle_per_backend = max_idle_per_backend
        self._idle: dict[int, collections.deque[UpstreamConnection]] = collections.defaultdict(collections.deque)

    def take(self, backend: Backend) -> UpstreamConnection | None:
        idle = self._idle.get(id(backend))
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # newest first: the least likely to be timed out by the backend
            if not conn.closed and now - conn.idle_since < self.max_idle_age:
                return conn
            conn.close()
        return None

    def give_back(self, conn: UpstreamConnection) -> None:
        idle = self._idle[id(conn.backend)]
        if conn.closed or conn.backend.removed or len(idle) >= self.max_idle_per_backend:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def close_all(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()

    async def connect(self, backend: Backend, timeout: float) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: UpstreamConnection(backend), *backend.address), timeout
        )
        return conn
