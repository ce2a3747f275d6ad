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
    assert checker.describe() == {"path": "/readyz", "port": None, "interval": 1.0, "timeout": 2.0, "rise": 2,
                                  "fall": 2, "rounds": 9}  # fmt: skip


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


def test_run_ejects_a_killed_backend_within_fall_intervals(backend):
    (a, _) = backend("a")
    pool = Pool("api", rise=2, fall=2)
    pool.set_addresses([("127.0.0.1", a.port)])
    only = pool.backends[("127.0.0.1", a.port)]
    checker = HealthChecker(pool, interval=0.1, timeout=0.5)

    async def main() -> float:
        task = asyncio.create_task(checker.run())
        try:
            deadline = time.monotonic() + 5
            while only.checks_ok < 2:
                assert time.monotonic() < deadline, "the live backend never passed"
                await asyncio.sleep(0.02)
            await asyncio.to_thread(a.stop)
            stopped = time.monotonic()
            while only.healthy:
                assert time.monotonic() < deadline + 5, "the killed backend was never ejected"
                await asyncio.sleep(0.02)
            return time.monotonic() - stopped
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    took = asyncio.run(main())
    assert took < 1.0  # two failed rounds 0.1 s apart, refused at once


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
    assert 0.25 < took < 1.5


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
