"""Every message of the master <-> worker channel, defined once.

Why: the channel (``cluster.channel``) moves bytes and descriptors; what those bytes
mean was spread over the master, the worker, the worker handle, the app's context and
the hand-off policies as ``{"t": ...}`` dicts, each side spelling them again. Here each
message is one small frozen dataclass; senders call ``encode(message)``, receivers get
a typed message from ``decode(data)`` and match on its class. A message of a kind this
module does not know is a ``ProtocolError`` naming it, not a silent ``None``.

The wire stays JSON, ``{"t": kind, ...fields}``, one message per SEQPACKET datagram.
The hot path is two reports per handed connection (``Took``, ``Done``) and the hand-off
itself (``Conn``): their encodings are a precomputed prefix plus the number, and
``decode`` reads those three back without a JSON parse. Messages with no fields
(``ONLINE``, ``LISTENING``, ``DISCONNECT``, ``LEAVING``) are encoded once, at import.

Direction: the master sends ``Conn`` (with the connection's descriptor), ``Disconnect``
and ``Msg``; a worker sends ``Online``, ``Listening``, ``Stats``, ``Recycle``,
``Leaving``, ``Took``, ``Done`` and ``Msg``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar

from cluster.channel import MAX_MESSAGE_BYTES


class ProtocolError(ValueError):
    """Bytes on the channel that are not a message of this protocol."""


@dataclass(frozen=True)
class Conn:
    """master -> worker: connection ``n`` rides along as a descriptor (``cluster.handoff``)."""

    kind: ClassVar[str] = "conn"
    n: int


@dataclass(frozen=True)
class Took:
    """worker -> master: I read connection ``n``'s first bytes (the master drops its copy)."""

    kind: ClassVar[str] = "took"
    n: int


@dataclass(frozen=True)
class Done:
    """worker -> master: connection ``n``'s first response is complete, or it closed first."""

    kind: ClassVar[str] = "done"
    n: int


@dataclass(frozen=True)
class Online:
    """worker -> master: the interpreter is up; the app is being imported (Node's 'online')."""

    kind: ClassVar[str] = "online"


@dataclass(frozen=True)
class Listening:
    """worker -> master: the app started; route connections here."""

    kind: ClassVar[str] = "listening"


@dataclass(frozen=True)
class Stats:
    """worker -> master, once a second: the heartbeat, with what the status shows."""

    kind: ClassVar[str] = "stats"
    requests: int
    inflight: int


@dataclass(frozen=True)
class Recycle:
    """worker -> master: I reached my max requests; replace me without dropping anything."""

    kind: ClassVar[str] = "recycle"
    requests: int


@dataclass(frozen=True)
class Leaving:
    """worker -> master: someone sent me SIGTERM; replace me without dropping anything."""

    kind: ClassVar[str] = "leaving"


@dataclass(frozen=True)
class Disconnect:
    """master -> worker: stop taking connections, finish what you hold, exit."""

    kind: ClassVar[str] = "disconnect"


@dataclass(frozen=True)
class Msg:
    """Either way: an app's own JSON-serialisable message (``Worker.send``, ``WorkerContext.send``)."""

    kind: ClassVar[str] = "msg"
    data: Any


Message = Conn | Took | Done | Online | Listening | Stats | Recycle | Leaving | Disconnect | Msg
KINDS: dict[str, type[Message]] = {
    cls.kind: cls for cls in (Conn, Took, Done, Online, Listening, Stats, Recycle, Leaving, Disconnect, Msg)
}

_NUMBERED = {Conn.kind: Conn, Took.kind: Took, Done.kind: Done}  # the hot path: prefix + number + "}"
_PREFIX = {cls: b'{"t":"%s","n":' % cls.kind.encode() for cls in _NUMBERED.values()}
_BY_PREFIX = {prefix: cls for cls, prefix in _PREFIX.items()}
_PREFIX_LENGTH = len(_PREFIX[Conn])
assert all(len(prefix) == _PREFIX_LENGTH for prefix in _BY_PREFIX)  # one slice finds any of them


def encode(message: Message) -> bytes:
    cls = type(message)
    if cls in _PREFIX:
        return b"%s%d}" % (_PREFIX[cls], message.n)  # type: ignore[union-attr]
    data = json.dumps({"t": cls.kind, **dataclasses.asdict(message)}, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(data)} bytes exceeds the channel limit of {MAX_MESSAGE_BYTES}")
    return data


def decode(data: bytes) -> Message:
    """The message ``data`` holds; ``ProtocolError`` if it holds none this protocol knows."""
    numbered = _BY_PREFIX.get(data[:_PREFIX_LENGTH])
    if numbered is not None and data.endswith(b"}"):
        try:
            return numbered(int(data[_PREFIX_LENGTH:-1]))
        except ValueError:
            pass  # not the compact form: read it as JSON below
    try:
        fields = json.loads(data)
    except ValueError as exc:
        raise ProtocolError(f"not JSON ({len(data)} bytes): {exc}") from None
    if not isinstance(fields, dict):
        raise ProtocolError(f"not a message object: {data[:80]!r}")
    kind = fields.pop("t", None)
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {kind!r}; known: {', '.join(KINDS)}")
    try:
        return cls(**fields)
    except TypeError as exc:
        raise ProtocolError(f"bad {kind!r} message {data[:80]!r}: {exc}") from None


ONLINE = encode(Online())
LISTENING = encode(Listening())
LEAVING = encode(Leaving())
DISCONNECT = encode(Disconnect())
