"""The master <-> worker messages: each one survives the wire, and nothing unknown passes as a message."""

import json

import pytest

from cluster import protocol
from cluster.channel import MAX_MESSAGE_BYTES
from cluster.protocol import (
    Conn,
    Disconnect,
    Done,
    Leaving,
    Listening,
    Msg,
    Online,
    ProtocolError,
    Recycle,
    Stats,
    Took,
    decode,
    encode,
)

EVERY_MESSAGE = [
    Conn(7),
    Took(7),
    Done(123456789),
    Online(),
    Listening(),
    Stats(requests=10, inflight=2),
    Recycle(requests=1000),
    Leaving(),
    Disconnect(),
    Msg({"users_count": {"count": 3}}),
    Msg(None),
    Msg(["a", 1]),
]


@pytest.mark.parametrize("message", EVERY_MESSAGE, ids=repr)
def test_every_message_round_trips(message):
    data = encode(message)
    assert decode(data) == message
    assert json.loads(data)["t"] == message.kind  # still the JSON wire format


def test_every_kind_is_covered():
    assert {type(m) for m in EVERY_MESSAGE} == set(protocol.KINDS.values())


def test_the_constant_messages_are_encoded_once():
    assert decode(protocol.ONLINE) == Online() and decode(protocol.LISTENING) == Listening()
    assert decode(protocol.LEAVING) == Leaving() and decode(protocol.DISCONNECT) == Disconnect()


def test_numbered_messages_read_back_from_plain_json_too():
    assert decode(b'{"t": "conn", "n": 5}') == Conn(5)
    assert decode(b'{"n":5,"t":"done"}') == Done(5)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b'{"t":"teleport"}', "unknown message type 'teleport'"),
        (b'{"n":1}', "unknown message type None"),
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a message object"),
        (b'{"t":"stats","requests":1}', "bad 'stats'"),
        (b'{"t":"conn"}', "bad 'conn'"),
    ],
)
def test_anything_else_is_a_clear_error(data, why):
    with pytest.raises(ProtocolError, match=why.replace("(", r"\(")):
        decode(data)


def test_an_oversized_message_is_refused():
    with pytest.raises(ValueError, match="exceeds the channel limit"):
        encode(Msg("x" * MAX_MESSAGE_BYTES))
