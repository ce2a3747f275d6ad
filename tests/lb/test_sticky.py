"""Sticky cookies: a signed, opaque backend id that routes a client back to the same backend."""

from __future__ import annotations

import pytest

from kit.signing import Signer
from lb.pool import Pool
from lb.sticky import StickyCookie

SECRET = "test-sticky-secret"


@pytest.fixture
def pool() -> Pool:
    pool = Pool("api")
    pool.set_addresses([("127.0.0.2", 8000), ("127.0.0.3", 8000)])
    return pool


def cookie_pair(set_cookie: bytes) -> bytes:
    """What a browser sends back: the name=value part of Set-Cookie."""
    return set_cookie.split(b";")[0]


def test_the_cookie_routes_back_to_the_backend_it_names(pool):
    sticky = StickyCookie(SECRET)
    for backend in pool.backends.values():
        pair = cookie_pair(sticky.set_cookie_header(backend))
        assert sticky.backend_from(pair, pool) is backend
        assert sticky.backend_from(b"theme=dark; " + pair + b"; lang=en", pool) is backend
        assert sticky.backend_from(b"theme=dark;" + pair, pool) is backend  # no space after ';'


def test_set_cookie_is_opaque_signed_and_scoped(pool):
    backend = pool.backends[("127.0.0.2", 8000)]
    header = StickyCookie(SECRET).set_cookie_header(backend)
    name_value, *attributes = [part.strip() for part in header.split(b";")]
    assert name_value.startswith(b"SCALECUBE_LB=")
    assert b"127.0.0.2" not in header and b"8000" not in header  # names an id, never an address
    assert Signer(SECRET, salt="sticky").unsign(name_value.split(b"=", 1)[1].decode()) == backend.id
    assert attributes == [b"Path=/", b"HttpOnly", b"SameSite=Lax"]


def test_max_age_secure_and_name_options(pool):
    backend = next(iter(pool.backends.values()))
    header = StickyCookie(SECRET, name="LB", max_age=600, secure=True).set_cookie_header(backend)
    assert header.startswith(b"LB=") and b"; Max-Age=600" in header and header.endswith(b"; Secure")
    with pytest.raises(ValueError, match="not a valid cookie name"):
        StickyCookie(SECRET, name="bad name;")
    with pytest.raises(ValueError, match="max_age"):
        StickyCookie(SECRET, max_age=0)


def test_an_unavailable_backend_is_not_returned(pool):
    sticky = StickyCookie(SECRET)
    backend = pool.backends[("127.0.0.2", 8000)]
    pair = cookie_pair(sticky.set_cookie_header(backend))
    pool.connect_failed(backend)  # ejected
    assert sticky.backend_from(pair, pool) is None
    pool.report_check(backend, True)
    pool.report_check(backend, True)  # rise
    assert sticky.backend_from(pair, pool) is backend
    backend.inflight = 1  # still finishing a request, so it stays listed as removed
    pool.set_addresses([("127.0.0.3", 8000)])
    assert backend.removed and sticky.backend_from(pair, pool) is None
    backend.inflight = 0
    pool.set_addresses([("127.0.0.3", 8000)])  # now forgotten altogether
    assert sticky.backend_from(pair, pool) is None


def test_forged_edited_or_foreign_cookies_are_ignored(pool):
    sticky = StickyCookie(SECRET)
    backend = pool.backends[("127.0.0.2", 8000)]
    token = cookie_pair(sticky.set_cookie_header(backend)).split(b"=", 1)[1]
    value, signature = token.rsplit(b".", 1)
    other = pool.backends[("127.0.0.3", 8000)]
    forged = [
        value + b"." + signature[:-1] + (b"A" if signature[-1:] != b"A" else b"B"),  # edited signature
        other.id.encode() + b"." + signature,  # another backend's id with this signature
        other.id.encode(),  # unsigned
        Signer("another secret", salt="sticky").sign(other.id).encode(),  # another balancer's secret
        Signer(SECRET, salt="session").sign(other.id).encode(),  # same secret, another purpose
        "é.é".encode(),  # not ASCII
        b"",
    ]
    for bad in forged:
        assert sticky.backend_from(b"SCALECUBE_LB=" + bad, pool) is None, bad
    assert sticky._verified == {}  # rejected tokens are never remembered: junk cannot fill the cache


def test_no_cookie_or_only_lookalikes(pool):
    sticky = StickyCookie(SECRET)
    backend = pool.backends[("127.0.0.2", 8000)]
    token = cookie_pair(sticky.set_cookie_header(backend)).split(b"=", 1)[1]
    for header in (None, b"", b"theme=dark", b"SCALECUBE_LB2=" + token, b"XSCALECUBE_LB=" + token):
        assert sticky.backend_from(header, pool) is None, header
    assert sticky.backend_from(b'SCALECUBE_LB="' + token + b'"', pool) is backend  # quoted values are fine


def test_a_cookie_for_a_backend_of_another_pool_is_ignored(pool):
    sticky = StickyCookie(SECRET)
    auth = Pool("auth")
    auth.set_addresses([("127.0.0.2", 8000)])  # same address, other pool: another id
    pair = cookie_pair(sticky.set_cookie_header(auth.backends[("127.0.0.2", 8000)]))
    assert sticky.backend_from(pair, pool) is None
    assert sticky.backend_from(pair, auth) is auth.backends[("127.0.0.2", 8000)]


def test_strip_removes_only_our_cookie_before_the_request_goes_on():
    sticky = StickyCookie(SECRET)
    assert sticky.strip(b"SCALECUBE_LB=abc") == b""
    assert sticky.strip(b"app=1; SCALECUBE_LB=abc") == b"app=1"
    assert sticky.strip(b"SCALECUBE_LB=abc;app=1") == b"app=1"
    assert sticky.strip(b"a=1; SCALECUBE_LB=abc; b=2") == b"a=1; b=2"
    assert sticky.strip(b"XSCALECUBE_LB=keep; a=1") == b"XSCALECUBE_LB=keep; a=1"  # a lookalike is the app's


def test_in_panic_the_cookie_still_routes_to_its_unhealthy_backend(pool):
    """Every backend failing its checks puts the pool in panic: clients keep their backend meanwhile."""
    sticky = StickyCookie(SECRET)
    backend = pool.backends[("127.0.0.2", 8000)]
    pair = cookie_pair(sticky.set_cookie_header(backend))
    for each in pool.backends.values():
        for _ in range(pool.fall):
            pool.report_check(each, False, connected=True)  # answering 503 (say, Redis down)
    assert pool.panic and not backend.healthy
    assert sticky.backend_from(pair, pool) is backend
