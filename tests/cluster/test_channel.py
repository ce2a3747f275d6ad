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

        receiver.attach(loop, on_message, lambda unsent: None)
        sender.attach(loop, lambda m, c: None, lambda unsent: None)
        left, right = socket.socketpair()
        sender.send({"t": "first", "n": 1})
        sender.send_raw(b'{"t":"conn"}', left)
        sender.send({"t": "last"})
        await asyncio.wait_for(done.wait(), 5)
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


def test_peer_gone_reports_queued_connections_for_redispatch():
    async def scenario() -> tuple[int, bool]:
        loop = asyncio.get_running_loop()
        a, b = socketpair()
        master = Channel(a)
        closed: list[list[socket.socket]] = []
        master.attach(loop, lambda m, c: None, closed.append)
        # Fill the socket buffer so later sends queue up in the outbox.
        filler = b"x" * 60000
        while master.backlog == 0:
            master.send_raw(filler)
        left, right = socket.socketpair()
        master.send_raw(b'{"t":"conn"}', left)
        b.close()  # the worker dies without reading
        for _ in range(50):
            await asyncio.sleep(0.02)
            if closed:
                break
        unsent = closed[0] if closed else []
        ok = len(unsent) == 1 and unsent[0] is left
        for conn in unsent:
            conn.close()
        right.close()
        return len(closed), ok

    assert asyncio.run(scenario()) == (1, True)
