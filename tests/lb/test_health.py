"""Active health checks against real backends (``scalecube serve``): fall, rise, killed, silent."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from lb.health import HealthChecker
from lb.pool import Pool

# Its /readyz answers 503 while the file named by READY_FLAG_FILE exists.
BACKEND = "tests.lb.backend_app:app"


@pytest.fixture
def backend(start_cluster, tmp_path):
    """A one-worker backend whose readiness a test flips by creating/removing its flag file."""

    def start(name: str):
        flag = tmp_path / f"{name}.not-ready"
        cluster = start_cluster(BACKEND, workers=1, env={"READY_FLAG_FILE": str(flag)})
        return cluster, flag

    return start


def rounds(checker: HealthChecker, count: int) -> None:
    async def main() -> None:
        async with checker.http_client() as client:
            for _ in range(count):
                await checker.check_all(client)

    asyncio.run(main())


def test_fall_and_rise_round_by_round(backend):
    (a, a_flag), (b, _) = backend("a"), backend("b")
    pool = Pool("api", rise=2, fall=2)
    pool.set_addresses([("127.0.0.1", a.port), ("127.0.0.1", b.port)])
    ba, bb = pool.backends[("127.0.0.1", a.port)], pool.backends[("127.0.0.1", b.port)]
    checker = HealthChecker(pool, timeout=2.0)

    rounds(checker, 1)
    assert ba.healthy and bb.healthy and ba.checks_ok == bb.checks_ok == 1

    Path(a_flag).touch()  # a says it is not ready (503)
    rounds(checker, 1)
    assert ba.healthy and ba.checks_failed == 1  # one failure is not enough
    rounds(checker, 1)
    assert not ba.healthy and bb.healthy  # fall = 2
    assert [b.address for b in pool.backends.values() if b.available] == [("127.0.0.1", b.port)]

    Path(a_flag).unlink()
    rounds(checker, 1)
    assert not ba.healthy  # one pass is not enough
    rounds(checker, 1)
    assert ba.healthy  # rise = 2

    pool.connect_failed(bb)  # the proxy's passive ejection; only the checks bring it back
    assert not bb.healthy and bb.ejections == 1
    rounds(checker, 2)
    assert bb.healthy

    assert ba.reachable and bb.reachable  # both answered every check, whatever they said
    b.stop()  # killed: connection refused
    rounds(checker, 2)
    assert not bb.healthy and ba.healthy
    assert not bb.reachable  # dead, not just unready: a panic would leave it out
    assert checker.rounds == 9
    assert checker.describe() == {
        "path": "/readyz",
        "port": None,
        "interval": 1.0,
        "timeout": 2.0,
        "rise": 2,
        "fall": 2,
        "rounds": 9,
    }


def test_the_check_can_go_to_another_port_of_the_backends_host(backend):
    """``check_port``: e.g. a health port answered by a cluster's master, not the busy workers."""
    health, flag = backend("health")
    pool = Pool("api", rise=1, fall=1)
    pool.set_addresses([("127.0.0.1", 9)])  # the traffic port: nothing listens there
    only = pool.backends[("127.0.0.1", 9)]
    checker = HealthChecker(pool, port=health.port, timeout=2.0)
    assert checker.url(only) == f"http://127.0.0.1:{health.port}/readyz"
    rounds(checker, 1)
    assert only.healthy and only.checks_ok == 1  # judged by the health port alone
    Path(flag).touch()
    rounds(checker, 1)
    assert not only.healthy and only.reachable  # 503 from the health port: unready, but it answered
    with pytest.raises(ValueError, match="port"):
        HealthChecker(pool, port=70000)


async def until(predicate, timeout: float, what: str) -> None:
    """Poll ``predicate`` in the running loop (the checker runs there too), bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s waiting for {what}"
        await asyncio.sleep(0.02)


def test_run_ejects_a_killed_backend_within_fall_check_rounds(backend):
    (a, _) = backend("a")
    pool = Pool("api", rise=2, fall=2)
    pool.set_addresses([("127.0.0.1", a.port)])
    only = pool.backends[("127.0.0.1", a.port)]
    # The timeout is generous so that a live backend slow to answer on a busy machine is not failed
    # before the kill; a dead one is refused at once, whatever the timeout.
    checker = HealthChecker(pool, interval=0.1, timeout=5.0)

    async def main() -> int:
        task = asyncio.create_task(checker.run())
        try:
            await until(lambda: only.checks_ok >= 2, 30, "the live backend to pass")
            await asyncio.to_thread(a.stop)  # returns once the backend has exited: from now on, refused
            stopped_at = checker.rounds
            await until(lambda: not only.healthy, 30, "the killed backend to be ejected")
            return checker.rounds - stopped_at
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # Counted in the checker's own rounds, not in seconds: a round already under way when the backend
    # died may have passed, every later one is refused, and fall of those eject. (It may also have been
    # ejected while it was stopping: 0 rounds.)
    rounds_to_eject = asyncio.run(main())
    assert rounds_to_eject <= pool.fall + 1, rounds_to_eject
    assert not only.reachable  # ejected as dead (refused), not as slow


def test_a_backend_that_never_answers_fails_within_the_timeout():
    # Listening but never accepting: the kernel completes the handshake, nobody ever answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        pool = Pool("api", fall=1)
        pool.set_addresses([silent.getsockname()])
        checker = HealthChecker(pool, timeout=0.3)
        started = time.monotonic()
        rounds(checker, 1)
        took = time.monotonic() - started
    silent_backend = next(iter(pool.backends.values()))
    assert not silent_backend.healthy
    assert silent_backend.reachable  # a timeout says nothing about being dead: it accepted, it may be busy
    # It waited for the timeout (0.3 s) and no longer than that takes: `took` also covers creating the HTTP
    # client and the event loop, so the upper bound is generous for a busy machine, yet a check left
    # without a timeout would never return at all.
    assert 0.25 < took < 5.0


def test_removed_backends_are_not_checked():
    pool = Pool("api", fall=1)
    pool.set_addresses([("127.0.0.1", 9)])
    leaving = pool.backends[("127.0.0.1", 9)]
    leaving.inflight = 1  # keeps it listed while removed
    pool.set_addresses([])
    rounds(HealthChecker(pool, timeout=0.3), 2)
    assert leaving.removed and leaving.checks_failed == 0 and leaving.healthy


def test_the_path_must_be_absolute():
    with pytest.raises(ValueError, match="must start with '/'"):
        HealthChecker(Pool("api"), path="readyz")
