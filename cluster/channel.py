"""The master <-> worker channel: JSON messages, and file descriptors riding along.

One ``AF_UNIX``/``SOCK_SEQPACKET`` socketpair per worker. SEQPACKET keeps message
boundaries (no framing code) and carries ``SCM_RIGHTS`` ancillary data, so the
same ordered channel delivers control messages and accepted connections. That
ordering is what makes draining safe: every connection handed to a worker is
queued before the "disconnect" message that follows it.

A descriptor sent here is *borrowed*: the channel passes a copy and never closes the
sender's socket. The master keeps its own copy until the worker has started on the
connection, so one a dead worker never read can go to another (``cluster.handoff``).

Both ends are non-blocking and driven by an asyncio loop's reader/writer
callbacks; sends are queued so a slow peer never blocks the master.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import socket
from collections.abc import Callable
from typing import Any

log = logging.getLogger("scalecube.cluster")

MAX_MESSAGE_BYTES = 64 * 1024

Message = dict[str, Any]


class ChannelClosed(Exception):
    """The peer is gone (EOF or a broken socket)."""


def socketpair() -> tuple[socket.socket, socket.socket]:
    """(master end, worker end); the worker end is passed to the worker by fd."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def encode(message: Message) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(data)} bytes exceeds the channel limit of {MAX_MESSAGE_BYTES}")
    return data


class Channel:
    """One end of a worker channel, attached to an event loop.

    ``decode`` turns each datagram into what ``on_message`` gets (JSON by default;
    the cluster passes ``cluster.protocol.decode``); a ``ValueError`` drops it, logged.
    """

    def __init__(self, sock: socket.socket, decode: Callable[[bytes], Any] = json.loads) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._decode = decode
        # (payload, descriptor that rides along or None); the descriptor stays its owner's.
        self._outbox: collections.deque[tuple[bytes, int | None]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing = False
        self.closed = False
        self._losing = False
        self._on_message: Callable[[Any, socket.socket | None], None] | None = None
        self._on_close: Callable[[], None] | None = None

    # -- attach / detach -------------------------------------------------
    def attach(
        self,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[Any, socket.socket | None], None],
        on_close: Callable[[], None],
    ) -> None:
        """``on_close()`` runs once when the peer goes away, after every message it sent was delivered."""
        self._loop = loop
        self._on_message = on_message
        self._on_close = on_close
        loop.add_reader(self.sock.fileno(), self._read_ready)
        if self._outbox:
            self._start_writing()

    def close(self) -> None:
        """Close the channel; whatever was still queued is dropped (descriptors stay their owners')."""
        if self.closed:
            return
        self.closed = True
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            if self._writing:
                self._loop.remove_writer(self.sock.fileno())
        self._outbox.clear()
        self.sock.close()

    def flush_incoming(self) -> None:
        """Deliver every message already waiting (the peer may be dead: what it sent still counts)."""
        if not self.closed and self._on_message is not None:
            self._read_ready()  # ends with on_close() if the peer is gone

    # -- sending -----------------------------------------------------------
    def send(self, message: Message) -> None:
        self.send_raw(encode(message))

    def send_raw(self, payload: bytes, fd: int | None = None) -> None:
        """Queue ``payload``; a copy of descriptor ``fd`` travels with it. The caller keeps ``fd``
        open until the peer has it (the master: until the worker reports on the connection)."""
        if self.closed:
            raise ChannelClosed("channel is closed")
        if not self._outbox and self._try_send(payload, fd):
            return
        self._outbox.append((payload, fd))
        self._start_writing()

    def _try_send(self, payload: bytes, fd: int | None) -> bool:
        try:
            if fd is None:
                self.sock.send(payload)
            else:
                socket.send_fds(self.sock, [payload], [fd])
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:  # peer gone: EPIPE / ECONNRESET
            self._lost(exc)
            return True
        return True

    def _start_writing(self) -> None:
        if self._loop is not None and not self._writing and not self.closed:
            self._writing = True
            self._loop.add_writer(self.sock.fileno(), self._write_ready)

    def _write_ready(self) -> None:
        while self._outbox and not self.closed:
            payload, fd = self._outbox[0]
            if not self._try_send(payload, fd):
                return
            if self._outbox:
                self._outbox.popleft()
        if self._writing and not self.closed and self._loop is not None:
            self._writing = False
            self._loop.remove_writer(self.sock.fileno())

    # -- receiving ---------------------------------------------------------
    def _read_ready(self) -> None:
        while not self.closed:
            try:
                data, fds, flags, _ = socket.recv_fds(self.sock, MAX_MESSAGE_BYTES, 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._lost(exc)
                return
            if not data and not fds:
                self._lost(None)
                return
            conn = socket.socket(fileno=fds[0]) if fds else None
            try:
                message = self._decode(data)
            except ValueError as exc:
                log.warning("dropping an undecodable channel message (%d bytes): %s", len(data), exc)
                if conn is not None:
                    conn.close()
                continue
            assert self._on_message is not None
            self._on_message(message, conn)

    def _lost(self, exc: OSError | None) -> None:
        if self.closed or self._losing:
            return
        self._losing = True
        if exc is not None:
            log.debug("channel lost: %s", exc)
        if self._on_message is not None:  # a failed send can come first: still deliver what the peer sent
            self._read_ready()
        self.close()
        if self._on_close is not None:
            self._on_close()
