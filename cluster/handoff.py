"""Handing connections to workers that can take them — and taking them back from the dead.

Why: a master that hands every accepted connection to the next worker at once
(the first version of ``rr``) piles connections onto a worker that is busy with a
CPU-bound request: they wait in its channel and in its event loop, and when that
worker dies they all die with it. Under the guides' availability experiment
(``ab -r -c200``, new connection per request, workers exiting at random) that lost
6–23 % of requests, where Node's ``cluster`` lost 0.1 %: Node's master keeps the
connections a worker has not acknowledged, and gives them to another worker when it
dies.

How, here:

* **Credits.** A worker may hold at most ``limit`` connections it has not *taken*
  yet (handed, first bytes not read). Everything else waits in the master
  (``HoldQueue``). A worker whose event loop is blocked (CPU-bound work, the guides'
  loop) cannot take anything, so it is handed at most ``limit`` more, and they are
  the master's to give away if it dies; a worker whose requests wait on I/O (a slow
  Redis) takes new connections at once and keeps serving the rest — counting
  *unanswered* connections instead would hold every worker's credits during a
  dependency stall and shed requests that do not even need that dependency.
* **The master keeps a copy of each handed descriptor** until the worker says it
  *took* the connection (its first bytes were read). A worker that dies before that
  — the connection still in the channel, or registered but unread — loses nothing:
  the master gives the connection, request bytes still unread in the kernel, to
  another worker. Only what a dying worker had started is lost, as with Node.
* **Took/done ride the channel** as two small messages per connection (none per
  later request on a keep-alive connection), so a keep-alive balancer pays nothing.

The one window left: the worker read the first bytes but was killed before its
"took" message was written (the two happen in the same event-loop callback, so only
an external SIGKILL can land there). The master then hands out a connection whose
request was consumed; the next worker waits for a request that never comes and
closes the connection after its keep-alive timeout — the same loss as before, late.

Overload is explicit: a connection that waits in the master longer than
``queue_timeout``, or arrives when ``max_queue`` are already waiting, gets a fast
``503`` with ``Retry-After`` written by the master (``shed``), instead of a timeout.
"""

from __future__ import annotations

import collections
import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("scalecube.cluster")


@dataclass(frozen=True)
class HandoffLimits:
    limit: int = 2  # rr: connections a worker may hold before it has started on them (2 hides the round trip)
    max_queue: int = 512  # connections the master holds when every worker is at its limit; more are shed
    queue_timeout: float = 5.0  # seconds one may wait there before it is shed with a 503

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("the hand-off limit must be at least 1")
        if self.max_queue < 0 or self.queue_timeout <= 0:
            raise ValueError("max_queue must be >= 0 and queue_timeout > 0")


class Ledger:
    """The master's account of one worker's connections: what it holds, what it may lose."""

    __slots__ = ("copies", "unanswered")

    def __init__(self) -> None:
        self.copies: dict[int, socket.socket] = {}  # handed, not yet taken: ours to give to another worker
        self.unanswered = 0  # handed, first response not sent yet (taken or not): what it is working on

    @property
    def untaken(self) -> int:
        return len(self.copies)

    def handed(self, number: int, conn: socket.socket) -> None:
        self.copies[number] = conn
        self.unanswered += 1

    def took(self, number: int) -> None:
        conn = self.copies.pop(number, None)
        if conn is not None:
            conn.close()

    def done(self, number: int) -> None:
        self.took(number)  # a connection closed before any byte: nothing left to give back
        if self.unanswered > 0:
            self.unanswered -= 1

    def reclaim(self) -> list[socket.socket]:
        """The worker is gone: the connections it never started, in the order they were handed."""
        conns = [self.copies[n] for n in sorted(self.copies)]
        self.copies.clear()
        self.unanswered = 0
        return conns


SHED_BODY = json.dumps(
    {
        "error": "overloaded",
        "message": "every worker of this replica is busy and the queue is full or too slow; retry shortly",
    }
).encode()
SHED_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
    b"connection: close\r\nx-shed-by: cluster-master\r\ncontent-length: %d\r\n\r\n%s" % (len(SHED_BODY), SHED_BODY)
)


def shed(conn: socket.socket) -> None:
    """Answer a fast 503 without serving: read what the client sent (so closing does not reset
    the answer away), write the canned response, close. Never blocks: the socket is non-blocking."""
    try:
        conn.setblocking(False)
        try:
            conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            pass
        conn.send(SHED_RESPONSE)
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        conn.close()


class HoldQueue:
    """Connections accepted while every worker is at its limit, oldest first, each with a deadline."""

    def __init__(self, limits: HandoffLimits, on_shed: Callable[[int], None]) -> None:
        self.limits = limits
        self._items: collections.deque[tuple[float, socket.socket]] = collections.deque()
        self._on_shed = on_shed

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.limits.max_queue

    def put(self, conn: socket.socket, *, shed_if_full: bool = True) -> None:
        if shed_if_full and self.full:
            shed(conn)
            self._on_shed(1)
        else:
            self._items.append((time.monotonic() + self.limits.queue_timeout, conn))

    def put_front(self, conns: list[socket.socket]) -> None:
        """Connections a dead worker never started go first: they have waited longest."""
        deadline = time.monotonic() + self.limits.queue_timeout
        if self._items:  # keep deadlines in order, so expiring from the front stays right
            deadline = min(deadline, self._items[0][0])
        for conn in reversed(conns):
            self._items.appendleft((deadline, conn))

    def pop(self) -> socket.socket | None:
        return self._items.popleft()[1] if self._items else None

    def next_deadline(self) -> float | None:
        return self._items[0][0] if self._items else None

    def expire(self, now: float) -> int:
        """Shed every connection past its deadline; returns how many."""
        count = 0
        while self._items and self._items[0][0] <= now:
            shed(self._items.popleft()[1])
            count += 1
        if count:
            self._on_shed(count)
        return count

    def close(self) -> None:
        while self._items:
            self._items.popleft()[1].close()
