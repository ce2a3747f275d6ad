"""The pool's choices, in process: who may be picked (health, panic, reachability) and who is picked
(round robin, least outstanding requests). Against real backends: tests/lb/scenarios/test_degraded.py."""

from __future__ import annotations

import collections

import pytest

from lb.pool import Pool

A, B, C, D = (("127.0.0.1", port) for port in (8001, 8002, 8003, 8004))


def pool_of(*addresses, **options) -> Pool:
    pool = Pool("api", **options)
    pool.set_addresses(addresses)
    return pool


def fail_checks(pool: Pool, address, *, connected: bool | None = True) -> None:
    """As many failed checks as it takes to eject (fall)."""
    for _ in range(pool.fall):
        pool.report_check(pool.backends[address], False, connected=connected)


def pass_checks(pool: Pool, address) -> None:
    for _ in range(pool.rise):
        pool.report_check(pool.backends[address], True, connected=True)


def picks(pool: Pool, count: int) -> collections.Counter:
    return collections.Counter(pool.pick().address for _ in range(count))


# -- panic ---------------------------------------------------------------------------


def test_with_every_backend_unhealthy_the_pool_panics_and_routes_to_all_then_recovers():
    pool = pool_of(A, B, policy="rr")
    fail_checks(pool, A)
    assert not pool.panic and picks(pool, 4) == {B: 4}  # one healthy left: it takes everything
    fail_checks(pool, B)  # answering 503 or too slowly: unhealthy, yet reachable
    assert pool.panic and pool.panics == 1
    assert picks(pool, 4) == {A: 2, B: 2}  # routed to both anyway, rather than a 503 for everybody
    assert all(b.routable and not b.healthy for b in pool.backends.values())
    pass_checks(pool, A)
    assert not pool.panic and picks(pool, 4) == {A: 4}  # over: the healthy one only
    assert pool.panics == 1


def test_in_panic_backends_refusing_connections_are_left_out_while_others_accept():
    pool = pool_of(A, B, C, policy="rr")
    fail_checks(pool, A)
    fail_checks(pool, B, connected=None)  # timed out: busy, maybe
    pool.connect_failed(pool.backends[C])  # refused: dead
    assert pool.panic and set(picks(pool, 6)) == {A, B}
    pool.connect_failed(pool.backends[A])
    pool.connect_failed(pool.backends[B])  # now all refuse: all of them still, each request finds out
    assert pool.panic and set(picks(pool, 6)) == {A, B, C}
    pool.connect_ok(pool.backends[B])  # a request got through to it after all
    assert set(picks(pool, 6)) == {B}
    fail_checks(pool, C, connected=True)  # C's check connected (and failed): reachable again
    assert set(picks(pool, 6)) == {B, C}


def test_panic_below_a_share_of_healthy_backends():
    pool = pool_of(A, B, C, D, policy="rr", panic_below=0.5)
    fail_checks(pool, A)
    assert not pool.panic and set(picks(pool, 6)) == {B, C, D}  # 3 of 4 healthy
    fail_checks(pool, B)
    assert not pool.panic  # 2 of 4: not below half
    fail_checks(pool, C)
    assert pool.panic and set(picks(pool, 8)) == {A, B, C, D}  # 1 of 4: too few to carry it all
    with pytest.raises(ValueError, match="panic_below"):
        Pool("api", panic_below=2)


def test_no_backend_at_all_is_the_only_none_and_removed_ones_never_count():
    pool = Pool("api")
    assert pool.pick() is None and not pool.panic
    pool.set_addresses([A, B])
    pool.backends[A].inflight = 1  # finishing a request
    pool.set_addresses([B])
    fail_checks(pool, B)
    assert pool.panic and picks(pool, 3) == {B: 3}  # A is removed: never picked, even in panic
    pool.set_addresses([])
    assert pool.pick() is None and not pool.panic


def test_retries_exclude_what_was_tried_in_panic_too():
    pool = pool_of(A, B, C)
    for address in (A, B, C):
        fail_checks(pool, address)
    assert pool.panic
    tried = [pool.pick()]
    tried.append(pool.pick(tried))
    tried.append(pool.pick(tried))
    assert {b.address for b in tried} == {A, B, C} and pool.pick(tried) is None


# -- least outstanding requests ----------------------------------------------------------


def test_leastconn_picks_the_backend_with_the_fewest_requests_in_flight():
    pool = pool_of(A, B, C)
    assert pool.policy == "leastconn"  # the default
    a, b, c = (pool.backends[x] for x in (A, B, C))
    a.inflight, b.inflight, c.inflight = 2, 0, 1
    assert picks(pool, 5) == {B: 5}
    b.inflight = 3
    assert picks(pool, 5) == {C: 5}
    assert pool.pick([c]) is a  # a retry: the least loaded of the rest


def test_leastconn_takes_turns_among_equally_loaded_backends():
    pool = pool_of(A, B, C)
    assert picks(pool, 30) == {A: 10, B: 10, C: 10}


def test_round_robin_ignores_load():
    pool = pool_of(A, B, policy="rr")
    pool.backends[A].inflight = 5
    assert picks(pool, 4) == {A: 2, B: 2}
