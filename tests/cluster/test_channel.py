"""The master <-> worker channel: ordered JSON messages, descriptors riding along."""

from __future__ import annotations

import asyncio
import socket

import pytest

from cluster.channel import MAX_MESSAGE_BYTES, Channel, encode, socketpair


def test_messages_and_descriptors_arrive_in_order():
    async def scenario() -> list:
        loop = asyncio.get_running_loop()
        a, b = socketpair()
        sender, receiver = Channel(a), Channel(b)
        got: list = []
        done = asyncio.Event()

        def on_message(message, conn):
            got.append((message, conn))
            if message.get("t") == "last":
                done.set()

        receiver.attach(loop, on_message, lambda: None)
        sender.attach(loop, lambda m, c: None, lambda: None)
        left, right = socket.socketpair()
        sender.send({"t": "first", "n": 1})
        sender.send_raw(b'{"t":"conn"}', left.fileno())
        sender.send({"t": "last"})
        await asyncio.wait_for(done.wait(), 5)
        left.close()  # the sender's copy was only lent: it is still open until its owner closes it
        # The descriptor works on the receiving side: it is the same socket.
        passed = got[1][1]
        passed.sendall(b"ping")
        assert right.recv(4) == b"ping"
        passed.close()
        right.close()
        sender.close()
        receiver.close()
        return [m for m, _ in got]

    assert asyncio.run(scenario()) == [{"t": "first", "n": 1}, {"t": "conn"}, {"t": "last"}]


def test_oversized_messages_are_refused_before_sending():
    with pytest.raises(ValueError, match="exceeds"):
        encode({"blob": "x" * MAX_MESSAGE_BYTES})


def test_peer_gone_delivers_what_it_said_then_closes_once_and_lends_descriptors():
    """A dead worker's last messages (which connections it took) still arrive, before on_close;
    a descriptor still queued is not closed by the channel: the master owns it and hands it on."""

    async def scenario() -> tuple[list, int, bool]:
        loop = asyncio.get_running_loop()
        a, b = socketpair()
        master, worker = Channel(a), b
        heard: list = []
        closed: list[bool] = []
        master.attach(loop, lambda m, c: heard.append(m), lambda: closed.append(True))
        # Fill the socket buffer so later sends queue up in the outbox.
        filler = b"x" * 60000
        while not master._outbox:
            master.send_raw(filler)
        left, right = socket.socketpair()
        master.send_raw(b'{"t":"conn","n":7}', left.fileno())
        worker.send(b'{"t":"took","n":6}')
        worker.close()  # the worker dies without reading
        master.flush_incoming()
        for _ in range(500):  # bounded (10 s): a busy machine may take a while to run the loop
            if closed:
                break
            await asyncio.sleep(0.02)
        left.sendall(b"still open")
        still_open = right.recv(16) == b"still open"
        left.close()
        right.close()
        return heard, len(closed), still_open

    assert asyncio.run(scenario()) == ([{"t": "took", "n": 6}], 1, True)
