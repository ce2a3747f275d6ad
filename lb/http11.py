"""What a request head must be at the edge, and what of it a backend may see (HTTP/1.1, RFC 9110/9112).

One job: judge a parsed request head (``judge``) and say which of its fields stop at the
balancer (``RequestHead.dropped``, ``hop_by_hop``). ``lb.proxy`` parses (httptools) and
moves bytes; the rules live here, as plain functions over ``(name, value)`` byte pairs,
so each can be read — and tested — without a socket.

- **Host** (RFC 9112 §3.2): an HTTP/1.1 request without one, or any request with more
  than one, is a 400: two Hosts are how a request is routed by one hop and served as
  another by the next. An *absolute-form* target (``GET http://authority/path?q``, what a
  client sends to a proxy) is routed by its path and forwarded in origin-form, with
  Host = its authority: §3.2.2 says the received Host is then ignored.
- **Expect** (RFC 9110 §10.1.1): ``100-continue`` is honoured (``lb.proxy``'s exchange
  sends the 100 itself once a backend connection is open); any other expectation is a 417.
- **Hop-by-hop fields** (RFC 9110 §7.6.1) are the connection's own: the fixed list, and
  every field the ``Connection`` header names (``Connection: close, X-Secret`` takes
  X-Secret out too) — on requests and on responses alike.
- **Forwarding fields are the edge's to say.** A client's ``X-Forwarded-For``,
  ``X-Forwarded-Proto``, ``Forwarded``, ``X-Real-IP`` and ``X-Forwarded-Host`` are
  claims anybody can make; a backend that trusts the leftmost address of an extended
  chain trusts the client. The balancer is the edge, so it replaces them with what it
  saw (``lb.proxy`` adds its own X-Forwarded-For and X-Forwarded-Proto); and a client's
  ``Proxy-Authorization`` is for a proxy — this one asks for none, so nobody behind it
  gets those credentials. HAProxy does the same (``haproxy.cfg``: ``del-header`` and
  ``option forwardfor``).
"""

from __future__ import annotations

from dataclasses import dataclass

import httptools

# RFC 9110 §7.6.1's hop-by-hop fields, never forwarded; framing fields are rewritten because bodies
# are re-framed on each side (lb.proxy reads them before dropping them).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"expect",
        b"content-length",
    }
)
# What only the edge may say: the client's versions are dropped, never extended (see the docstring).
CLIENT_CLAIMS = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"forwarded", b"x-real-ip", b"x-forwarded-host", b"proxy-authorization"}
)
CONTINUE = b"100-continue"
# What never passes from a request, whatever its Connection header names besides.
REQUEST_DROPPED = HOP_BY_HOP | CLIENT_CLAIMS | {b"host"}


class Rejected(Exception):
    """The head breaks a rule: answer ``status`` with this error and message, then close."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


@dataclass(frozen=True)
class RequestHead:
    """A request head that passed ``judge``: what the exchange needs to route and forward it."""

    method: bytes
    target: bytes  # origin-form (or ``*``): routed by it, and sent to the backend as the request target
    host: bytes  # the Host to send (the authority of an absolute-form target; empty if an HTTP/1.0 client sent none)
    headers: list[tuple[bytes, bytes]]  # as received; ``dropped`` says which names stop here
    dropped: frozenset[bytes]  # lower-case names never forwarded: hop-by-hop, Connection-named, client claims, host
    keep_alive: bool
    expect_continue: bool  # the client waits for a 100 before it sends its body


def connection_tokens(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The lower-case field names every ``Connection`` header lists (options like ``close`` included)."""
    return frozenset(token for name, value in headers if name.lower() == b"connection" for token in _tokens(value))


def hop_by_hop(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """Names not to pass on from a message with these headers: the fixed list and what Connection names."""
    named = connection_tokens(headers)
    return HOP_BY_HOP | named if named else HOP_BY_HOP


def _tokens(value: bytes) -> list[bytes]:
    return [token.strip().lower() for token in value.split(b",") if token.strip()]


def _origin_form(url: bytes) -> tuple[bytes, bytes | None]:
    """(origin-form target, authority or None): absolute-form ``http://a:1/p?q`` -> (``/p?q``, ``a:1``)."""
    if url.startswith(b"/") or url == b"*":
        return url, None
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        parsed = None
    if parsed is None or (parsed.schema or b"").lower() not in (b"http", b"https") or not parsed.host:
        raise Rejected(
            400,
            "bad_request",
            f"the request target {url[:200].decode('latin-1')!r} is neither a path nor an http(s) URL",
        )
    target = (parsed.path or b"/") + (b"?" + parsed.query if parsed.query is not None else b"")
    authority = parsed.host + (b":%d" % parsed.port if parsed.port is not None else b"")
    return target, authority


def judge(method: bytes, url: bytes, version: str, headers: list[tuple[bytes, bytes]], keep_alive: bool) -> RequestHead:
    """Check a parsed head against the rules in the module docstring; ``Rejected`` says which it breaks."""
    hosts: list[bytes] = []
    expectations: list[bytes] = []
    named: list[bytes] = []  # what the Connection headers name
    for name, value in headers:  # one pass over the fields: this runs for every request
        lower = name.lower()
        if lower == b"host":
            hosts.append(value)
        elif lower == b"expect":
            expectations += _tokens(value)
        elif lower == b"connection":
            named += _tokens(value)
    http11 = version != "1.0"
    if len(hosts) > 1 or (http11 and not hosts):
        raise Rejected(
            400,
            "bad_request",
            f"an HTTP/{version} request needs exactly one Host header "
            f"(RFC 9112 section 3.2), this one has {len(hosts)}",
        )
    target, authority = _origin_form(url)
    if not http11:
        expectations = []  # HTTP/1.0: ignored (RFC 9110 §10.1.1)
    unknown = [token for token in expectations if token != CONTINUE]
    if unknown:
        raise Rejected(
            417,
            "expectation_failed",
            f"this balancer can only meet 'Expect: 100-continue', not {unknown[0][:100].decode('latin-1')!r}",
        )
    host = authority if authority is not None else (hosts[0].strip() if hosts else b"")
    return RequestHead(
        method=method,
        target=target,
        host=host,
        headers=headers,
        dropped=REQUEST_DROPPED.union(named) if named else REQUEST_DROPPED,
        keep_alive=keep_alive,
        expect_continue=CONTINUE in expectations,
    )
