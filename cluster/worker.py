"""A worker process: ``python -m cluster.worker``, told everything by its master in ``SCALECUBE_WORKER_CONFIG``.

uvicorn serves the app. With the ``rr`` policy the worker has no listening
socket of its own: connections arrive as descriptors on the channel and join
uvicorn's protocol machinery through ``loop.connect_accepted_socket``. With
``os`` it accepts on the listening socket it inherited.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from types import FrameType
from typing import Any

import uvicorn

from cluster import protocol
from cluster.channel import Channel, ChannelClosed
from cluster.config import WorkerConfig
from cluster.context import WorkerContext, set_current_worker
from cluster.draining import DrainingHttpToolsProtocol
from cluster.protocol import Conn, Disconnect, Done, Msg, Recycle, Stats, Took

log = logging.getLogger("scalecube.cluster")

# Whose X-Forwarded-For / X-Forwarded-Proto a worker believes (uvicorn's ProxyHeadersMiddleware): the
# peers in FORWARDED_ALLOW_IPS (addresses and CIDR networks, comma-separated), loopback by default.
# From any other peer the headers are ignored; from a trusted one the client is the rightmost address
# of the chain that is not itself trusted, so a client cannot prepend one of its choosing. Set it to
# the balancers' (and forwarding services') addresses; `*` trusts everyone: any client picks its address.
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1,::1"


def forwarded_allow_ips(environ: dict[str, str] | None = None) -> str:
    value = (os.environ if environ is None else environ).get("FORWARDED_ALLOW_IPS", "").strip()
    value = value or DEFAULT_FORWARDED_ALLOW_IPS
    if "*" in (part.strip() for part in value.split(",")):
        log.warning(
            "FORWARDED_ALLOW_IPS=*: every peer is trusted with X-Forwarded-For, so any client can choose "
            "the address the app sees (and dodge per-address limits); list the balancers' addresses instead"
        )
    return value


class HandedProtocol(DrainingHttpToolsProtocol):
    """uvicorn's protocol on a connection the master handed over: it tells the master when it
    started (first bytes read: the master drops its copy) and when it answered (first response
    complete, or closed before: the master may hand this worker another) — see cluster.handoff."""

    number = 0
    channel: Channel
    _took = False
    _answered = False

    def data_received(self, data: bytes) -> None:
        if not self._took:
            self._took = True
            self._report(Took(self.number))
        super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._answered:
            self._answered = True
            self._report(Done(self.number))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self._answered:
            self._answered = True
            self._report(Done(self.number))

    def _report(self, message: Took | Done) -> None:
        try:
            self.channel.send_raw(protocol.encode(message))
        except ChannelClosed:
            pass  # the master is gone; the worker is draining anyway


class WorkerServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, channel: Channel, options: WorkerConfig) -> None:
        super().__init__(config)
        self.channel = channel
        self.options = options
        self._handoffs: set[asyncio.Task[Any]] = set()
        self._draining = False
        self._recycle_asked = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -------------------------------------------------------------
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self.channel.attach(self._loop, self._on_channel_message, self._on_master_gone)
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self._send(protocol.LISTENING)

    async def on_tick(self, counter: int) -> bool:
        if counter % 10 == 0:  # once a second: the master's status and hung-worker check feed on this
            self._send(protocol.encode(Stats(self.server_state.total_requests, len(self.server_state.tasks))))
        limit = self.options.max_requests
        if limit and not self._recycle_asked and self.server_state.total_requests >= limit:
            self._recycle_asked = True  # the master swaps us out without dropping a request
            self._send(protocol.encode(Recycle(self.server_state.total_requests)))
        return await super().on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Ctrl-C in a terminal reaches the whole process group: the master coordinates, we ignore it.
        if sig == signal.SIGINT:
            return
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_sigterm)
        else:
            self.should_exit = True

    def _on_sigterm(self) -> None:
        # Ask the master to replace us gracefully; if it can't hear us, just leave.
        if self._draining or not self._send(protocol.LEAVING):
            self._begin_drain()

    # -- channel ------------------------------------------------------------------
    def _send(self, payload: bytes) -> bool:
        try:
            self.channel.send_raw(payload)
        except ChannelClosed:
            return False
        return True

    def _on_channel_message(self, message: protocol.Message, conn: socket.socket | None) -> None:
        if conn is not None:
            self._serve_connection(conn, message.n if isinstance(message, Conn) else 0)
        elif isinstance(message, Msg):
            context = _context()
            if context is not None:
                context.dispatch(message.data)
        elif isinstance(message, Disconnect):
            self._begin_drain()

    def _serve_connection(self, conn: socket.socket, number: int) -> None:
        assert self._loop is not None
        conn.setblocking(False)
        task = self._loop.create_task(
            self._loop.connect_accepted_socket(lambda: self._make_protocol(number), sock=conn)
        )
        self._handoffs.add(task)
        task.add_done_callback(self._handoffs.discard)

    def _make_protocol(self, number: int) -> asyncio.Protocol:
        # What uvicorn builds for its own listening sockets, plus the hand-off reports.
        protocol = HandedProtocol(
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state, _loop=self._loop
        )
        protocol.number = number
        protocol.channel = self.channel
        return protocol

    def _on_master_gone(self) -> None:
        if not self._draining:
            log.warning("master is gone: worker %s shutting down", self.options.id)
        self._begin_drain()

    def _begin_drain(self) -> None:
        if not self._draining:
            self._draining = True
            assert self._loop is not None
            self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        # Stop accepting at once (os policy: our copy of the shared listener).
        for server in getattr(self, "servers", []):
            server.close()
        if self._handoffs:
            await asyncio.gather(*self._handoffs, return_exceptions=True)
        # A connection handed over a moment ago may not have had its request read yet;
        # uvicorn's shutdown closes connections with no request in progress, so give those a beat.
        if self.server_state.connections:
            await asyncio.sleep(self.options.settle)
        self.should_exit = True


def _context() -> WorkerContext | None:
    from cluster.context import current_worker

    return current_worker()


def configure_logging(worker_id: int) -> None:
    """A default for apps that don't configure logging themselves.

    The handler is named "scalecube" so a service's own setup
    (``services.common.logging``) replaces it rather than doubling every line.
    """
    level = os.environ.get("LOG_LEVEL", "info").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name("scalecube")
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s [worker {worker_id} pid %(process)d] %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    # One "startup complete" line per worker is noise: the master reports each worker listening.
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def main() -> int:
    try:
        options = WorkerConfig.from_environ()
    except ValueError as exc:
        print(f"cluster.worker: {exc}", file=sys.stderr)
        return 2
    configure_logging(options.id)
    channel = Channel(socket.socket(fileno=options.channel_fd), protocol.decode)
    set_current_worker(WorkerContext(options.id, options.slot, channel))
    try:
        channel.sock.send(protocol.ONLINE)  # before the (slow) app import, like Node's 'online'
    except OSError:
        return 0  # the master died while we were starting
    if options.app_dir not in sys.path:
        sys.path.insert(0, options.app_dir)
    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover
        loop = "asyncio"
    config = uvicorn.Config(
        options.app,
        loop=loop,
        http=DrainingHttpToolsProtocol,
        lifespan="auto",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=options.drain_timeout,  # type: ignore[arg-type]
        server_header=False,
        timeout_keep_alive=options.keep_alive,  # type: ignore[arg-type]
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips(),
    )
    sockets = [socket.socket(fileno=options.listen_fd)] if options.listen_fd is not None else []
    WorkerServer(config, channel, options).run(sockets=sockets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
