"""The Python balancer's stop is bounded whatever a piece of it does: a task that ignores its cancellation is
named and left behind (in process), a blocked event loop is ended by the watchdog (a real process)."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from infra.paths import REPO
from lb.config import Limits, Timeouts
from lb.server import HARD_STOP_MARGIN, STOP_GRACE, Balancer
from lb.stats import BalancerStats


class NoRoutes:
    def match(self, path: bytes) -> str | None:
        return None


def balancer(*background, drain: float = 1.0) -> Balancer:
    return Balancer(
        pools={},
        router=NoRoutes(),
        timeouts=Timeouts(drain=drain),
        limits=Limits(),
        stats=BalancerStats(),
        background=background,
    )


async def stubborn(released: asyncio.Event) -> None:
    """A background task that swallows its cancellation and carries on, until the test releases it."""
    while not released.is_set():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue


async def well_behaved() -> None:
    await asyncio.sleep(3600)


async def blocks_when_cancelled() -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        time.sleep(3600)  # a call that never returns: the event loop itself is stuck


async def ignores_its_cancellation() -> None:
    await stubborn(asyncio.Event())  # never released: asyncio.run's teardown would wait for it forever


def test_a_task_that_ignores_its_cancellation_is_named_and_left_behind(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> tuple[float, list[bool]]:
        released = asyncio.Event()
        lb = balancer(stubborn(released), well_behaved())
        await lb.start("127.0.0.1", 0)
        tasks = list(lb._tasks)
        started = time.monotonic()
        try:
            await asyncio.wait_for(lb.stop(), 10)  # unbounded, this waited for the stubborn task forever
            return time.monotonic() - started, [task.done() for task in tasks]
        finally:
            released.set()  # the test's own cleanup: the loop must not close on a pending task
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)

    with caplog.at_level(logging.WARNING, logger="scalecube.lb"):
        took, done = asyncio.run(main())

    assert STOP_GRACE * 0.9 <= took < STOP_GRACE + 2
    assert sorted(done) == [False, True]  # the well-behaved one finished, the stubborn one was left
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "stubborn" in warnings[0] and "still running" in warnings[0], warnings


# A real balancer process (run_until_signalled) with one stuck background task, from this module.
STUCK_AT_STOP = textwrap.dedent(
    """
    import asyncio, logging, sys
    from tests.lb import test_server

    async def main():
        lb = test_server.balancer(getattr(test_server, sys.argv[1])(), drain=0.5)
        await lb.run_until_signalled("127.0.0.1", 0)

    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
    """
)


@pytest.mark.parametrize("stuck", ["blocks_when_cancelled", "ignores_its_cancellation"])
def test_a_balancer_stuck_at_stop_is_ended_with_every_threads_stack(stuck: str) -> None:
    """Drain 0.5 s: the watchdog ends the process HARD_STOP_MARGIN later (exit 1), its dump in the output."""
    process = subprocess.Popen(
        [sys.executable, "-c", STUCK_AT_STOP, stuck],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen = []
        while not any("balancer listening" in line for line in seen):  # started, its background task too
            seen.append(process.stdout.readline())
            assert seen[-1], "".join(seen)  # it ended before it listened
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output = "".join(seen) + process.communicate(timeout=0.5 + HARD_STOP_MARGIN + 10)[0]
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 1, output
    assert 0.5 + HARD_STOP_MARGIN * 0.9 <= took < 0.5 + HARD_STOP_MARGIN + 10
    assert "Timeout (" in output and "Thread" in output, output  # faulthandler's dump of every thread
    if stuck == "blocks_when_cancelled":
        assert "blocks_when_cancelled" in output, output  # the dump names the call that blocks
    else:
        assert "ignores_its_cancellation" in output and "still running" in output, output  # stop() named it
