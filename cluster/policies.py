"""How connections reach workers.

``rr`` (the default, like Node's SCHED_RR): the master owns the listening
socket, accepts each connection and passes its descriptor to the next ready
worker that has room (``cluster.handoff``: a worker holds at most a few
connections it has not started on yet; the rest wait in the master). Workers that
are starting or draining are skipped, so a rolling reload never hands a
connection to a worker on its way out.

``least`` (least busy): the same hand-off, but a connection goes only to an idle
worker; when none is idle it waits in the master and the first worker to finish takes
it, so a cheap request is never put behind a heavy one while another worker is free.

``os``: every worker accepts on the same inherited listening socket and the
kernel decides. Cheaper for the master, but wakeups favour whichever workers are
hot, so the spread is uneven — which is exactly what ``rr`` exists to fix.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

from cluster.channel import ChannelClosed
from cluster.handoff import HandoffLimits, HoldQueue
from cluster.protocol import Conn, encode

if TYPE_CHECKING:
    from cluster.worker_handle import Worker

log = logging.getLogger("scalecube.cluster")

ACCEPT_BATCH = 64  # accepts per readiness callback, so one busy listener can't starve the loop


class SharedSocketPolicy:
    name = "os"
    passes_listener = True  # each worker gets the listening socket itself

    def __init__(self, listener: socket.socket, limits: HandoffLimits) -> None:
        self.listener = listener

    def start(self, loop: asyncio.AbstractEventLoop, workers: dict[int, Worker]) -> None:
        pass

    def worker_ready(self, worker: Worker) -> None:
        pass

    def worker_freed(self, worker: Worker) -> None:
        pass

    def worker_gone(self, worker: Worker) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {}

    def stop(self) -> None:
        self.listener.close()


class HandoffPolicy:
    """The master accepts; each connection goes to a worker with room (``choose``), or waits."""

    name = ""
    passes_listener = False

    def __init__(self, listener: socket.socket, limits: HandoffLimits) -> None:
        self.listener = listener
        listener.setblocking(False)
        self.limits = limits
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: dict[int, Worker] = {}
        self._accepting = False
        self._stopped = False
        self._queue = HoldQueue(limits, self._count_shed)
        self._expiry: asyncio.TimerHandle | None = None
        self._number = 0
        self.handed = 0
        self.reclaimed = 0  # given to another worker after theirs died without starting them
        self.shed = 0

    def start(self, loop: asyncio.AbstractEventLoop, workers: dict[int, Worker]) -> None:
        self._loop = loop
        self._workers = workers

    # -- what the master tells us ------------------------------------------------
    def worker_ready(self, worker: Worker) -> None:
        """A worker became routable: it may take what waits, and we accept (again)."""
        if self._loop is None or self._stopped:
            return
        self.join(worker)
        self._drain_queue()
        if not self._accepting:
            self._accepting = True
            self._loop.add_reader(self.listener.fileno(), self._accept_ready)

    def worker_freed(self, worker: Worker) -> None:
        """A worker took or answered a connection: it may have room for the next one that waits."""
        if self._queue:
            self._drain_queue()

    def worker_gone(self, worker: Worker) -> None:
        """A worker died or left: what it never started goes to the others, first in line."""
        conns = worker.ledger.reclaim()
        if not conns:
            return
        if self._stopped:
            for conn in conns:
                conn.close()
            return
        self.reclaimed += len(conns)
        log.info("worker %d left %d connection(s) unstarted: handing them to the others", worker.id, len(conns))
        self._queue.put_front(conns)
        self._drain_queue()
        self._arm_expiry()

    def stats(self) -> dict[str, Any]:
        return {
            "handed": self.handed,
            "reclaimed": self.reclaimed,
            "shed": self.shed,
            "queued": len(self._queue),
            "handoff_limit": self.limits.limit,
        }

    def stop(self) -> None:
        self._stopped = True
        self._pause()
        if self._expiry is not None:
            self._expiry.cancel()
        self.listener.close()
        self._queue.close()

    # -- choosing: what rr and least differ in --------------------------------------
    def join(self, worker: Worker) -> None:
        pass

    def choose(self) -> Worker | None:
        raise NotImplementedError

    def has_room(self, worker: Worker) -> bool:
        return worker.routable and worker.ledger.untaken < self.limits.limit

    # -- the hand-off -------------------------------------------------------------
    def _accept_ready(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: log, keep serving
                log.error("accept failed: %s", exc)
                return
            self.dispatch(conn)
            if not self._accepting:
                return

    def dispatch(self, conn: socket.socket) -> None:
        worker = None if self._queue else self.choose()  # first come, first served: nobody jumps the queue
        if worker is not None:
            self._hand(worker, conn)
            return
        if not self._anyone_listening():
            # No worker at all (they all died, a replacement is starting): hold this one, and leave the next
            # in the kernel's backlog rather than shed them — a worker will serve them in a moment.
            self._queue.put(conn, shed_if_full=False)
            self._pause()
            return
        self._queue.put(conn)
        self._arm_expiry()

    def _hand(self, worker: Worker, conn: socket.socket) -> None:
        self._number += 1
        number = self._number
        worker.ledger.handed(number, conn)  # before sending: a send that finds the worker dead reclaims it
        try:
            worker.channel.send_raw(encode(Conn(number)), conn.fileno())
        except ChannelClosed:
            self.worker_gone(worker)  # closed under us: not routable any more, the conn goes back in line
            return
        self.handed += 1

    def _drain_queue(self) -> None:
        while self._queue:
            worker = self.choose()
            if worker is None:
                return
            conn = self._queue.pop()
            assert conn is not None
            self._hand(worker, conn)

    def _arm_expiry(self) -> None:
        deadline = self._queue.next_deadline()
        if deadline is None or self._expiry is not None or self._loop is None:
            return
        self._expiry = self._loop.call_later(max(0.0, deadline - time.monotonic()), self._expire)

    def _expire(self) -> None:
        self._expiry = None
        if self._anyone_listening():  # busy workers: a fast 503 beats a timeout; no worker: one is coming
            self._queue.expire(time.monotonic())
            self._arm_expiry()
        elif self._loop is not None and self._queue:
            self._expiry = self._loop.call_later(self.limits.queue_timeout, self._expire)

    def _anyone_listening(self) -> bool:
        return any(worker.routable for worker in self._workers.values())

    def _pause(self) -> None:
        if self._accepting and self._loop is not None:
            self._accepting = False
            self._loop.remove_reader(self.listener.fileno())

    def _count_shed(self, count: int) -> None:
        if self.shed == 0 or count > 1:
            log.warning(
                "overloaded: %d connection(s) answered 503 (every worker busy, the queue full or too slow)", count
            )
        self.shed += count


class RoundRobinPolicy(HandoffPolicy):
    name = "rr"

    def __init__(self, listener: socket.socket, limits: HandoffLimits) -> None:
        super().__init__(listener, limits)
        self._ring: collections.deque[int] = collections.deque()  # routable worker ids, in turn order

    def join(self, worker: Worker) -> None:
        if worker.id not in self._ring:
            self._ring.append(worker.id)

    def choose(self) -> Worker | None:
        # Workers never return to routable once they leave it (draining/exited), so an id
        # that is not routable any more drops out of the ring for good; one without room
        # keeps its place and is passed over this turn.
        ring = self._ring
        for _ in range(len(ring)):
            wid = ring[0]
            worker = self._workers.get(wid)
            if worker is None or not worker.routable:
                ring.popleft()
                continue
            ring.rotate(-1)
            if worker.ledger.untaken < self.limits.limit:
                return worker
        return None


class LeastBusyPolicy(HandoffPolicy):
    """An idle worker, else the master's queue: the first worker to finish takes the next connection.

    Join-the-shortest-queue alone is not enough: with one worker busy on a heavy request and one
    on a cheap one, both queues are one long, and a tie can put the next cheap request behind the
    heavy one. Here a worker holds one unanswered connection at most (whatever ``limit`` says), so
    a busy worker is never handed another while it works, and a free one pulls the next from the
    queue at once — Node's "free worker" list. Among idle workers it picks the one with the fewest
    requests in flight on keep-alive connections (the worker's own report, once a second), ties
    going round. The cost is one channel round trip between two requests of a worker.

    The trade-off: a request waiting on I/O holds its worker too. Under a dependency stall every
    worker soon holds one, and new connections wait in the queue (then a 503 after the queue
    timeout) even for routes that do not need the dependency. For CPU-bound work, the case this
    policy is for, that is exactly right; for I/O-heavy services ``rr`` (the default) keeps serving.
    """

    name = "least"

    def __init__(self, listener: socket.socket, limits: HandoffLimits) -> None:
        super().__init__(listener, limits)
        self._turn = 0

    def has_room(self, worker: Worker) -> bool:
        return worker.routable and worker.ledger.unanswered == 0

    def choose(self) -> Worker | None:
        best: Worker | None = None
        candidates = list(self._workers.values())
        count = len(candidates)
        self._turn += 1
        for i in range(count):
            worker = candidates[(self._turn + i) % count]
            if self.has_room(worker) and (best is None or worker.inflight < best.inflight):
                best = worker
                if worker.inflight == 0:
                    break
        return best


POLICIES: dict[str, type[SharedSocketPolicy] | type[HandoffPolicy]] = {
    "rr": RoundRobinPolicy,
    "least": LeastBusyPolicy,
    "os": SharedSocketPolicy,
}


def make_policy(name: str, listener: socket.socket, limits: HandoffLimits) -> SharedSocketPolicy | HandoffPolicy:
    return POLICIES[name](listener, limits)


def listen(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock
