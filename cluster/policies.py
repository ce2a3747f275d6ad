"""How connections reach workers.

``rr`` (the default, like Node's SCHED_RR): the master owns the listening
socket, accepts each connection and passes its descriptor to the next ready
worker over that worker's channel. Workers that are starting or draining are
skipped, so a rolling reload never hands a connection to a worker on its way out.

``os``: every worker accepts on the same inherited listening socket and the
kernel decides. Cheaper for the master, but wakeups favour whichever workers are
hot, so the spread is uneven — which is exactly what ``rr`` exists to fix.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from typing import TYPE_CHECKING

from cluster.channel import ChannelClosed

if TYPE_CHECKING:
    from cluster.worker_handle import Worker

log = logging.getLogger("scalecube.cluster")

CONN_MESSAGE = b'{"t":"conn"}'
ACCEPT_BATCH = 64  # accepts per readiness callback, so one busy listener can't starve the loop


class SharedSocketPolicy:
    name = "os"
    passes_listener = True  # each worker gets the listening socket itself

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener

    def start(self, loop: asyncio.AbstractEventLoop, workers: dict[int, Worker]) -> None:
        pass

    def worker_ready(self, worker: Worker) -> None:
        pass

    def redispatch(self, conns: list[socket.socket]) -> None:
        for conn in conns:
            conn.close()

    def stop(self) -> None:
        self.listener.close()


class RoundRobinPolicy:
    name = "rr"
    passes_listener = False

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        listener.setblocking(False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: dict[int, Worker] = {}
        self._ring: collections.deque[int] = collections.deque()  # routable worker ids, in turn order
        self._accepting = False
        self._stopped = False
        self._held: collections.deque[socket.socket] = collections.deque()

    def start(self, loop: asyncio.AbstractEventLoop, workers: dict[int, Worker]) -> None:
        self._loop = loop
        self._workers = workers

    def worker_ready(self, worker: Worker) -> None:
        """A worker became routable: it joins the turn order, gets what we held, and we accept again."""
        if self._loop is None or self._stopped:
            return
        if worker.id not in self._ring:
            self._ring.append(worker.id)
        for _ in range(len(self._held)):
            self.dispatch(self._held.popleft())
        if not self._accepting and not self._held:
            self._accepting = True
            self._loop.add_reader(self.listener.fileno(), self._accept_ready)

    def _pause(self) -> None:
        # No routable worker: leave connections in the kernel's backlog rather than drop them.
        if self._accepting and self._loop is not None:
            self._accepting = False
            self._loop.remove_reader(self.listener.fileno())

    def _next_worker(self) -> Worker | None:
        # Workers never return to routable once they leave it (draining/exited),
        # so an id that is not routable any more drops out of the ring for good.
        ring = self._ring
        while ring:
            wid = ring.popleft()
            worker = self._workers.get(wid)
            if worker is not None and worker.routable:
                ring.append(wid)
                return worker
        return None

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
        worker = self._next_worker()
        if worker is None:
            # Nobody can take it right now: hold it (and stop accepting) until a worker is ready.
            self._held.append(conn)
            self._pause()
            return
        try:
            worker.channel.send_raw(CONN_MESSAGE, conn)
        except ChannelClosed:
            self.dispatch(conn)  # that worker just died and is no longer routable

    def redispatch(self, conns: list[socket.socket]) -> None:
        """Connections queued for a worker that died before receiving them."""
        for conn in conns:
            self.dispatch(conn)

    def stop(self) -> None:
        self._stopped = True
        self._pause()
        self.listener.close()
        while self._held:
            self._held.popleft().close()


def make_policy(name: str, listener: socket.socket) -> RoundRobinPolicy | SharedSocketPolicy:
    return {"rr": RoundRobinPolicy, "os": SharedSocketPolicy}[name](listener)


def listen(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock
