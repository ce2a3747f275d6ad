"""How the suite runs in pytest-xdist workers (``make test``: ``-n 3 --dist loadgroup``): which tests go
together, which run alone, and whose ports are whose. Registered in ``tests/conftest.py``; a plain run (no
workers) keeps the file order and takes no lock. Tested in ``tests/support/test_parallel.py`` with a suite of
its own run in two workers.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

from infra.local.ports import PORTS_ENV, listen_port_range

# -- Ports ---------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    """Each xdist worker, and all it starts, picks its servers' ports from its own slice of the range: two
    workers choosing from one range take each other's ports between choice and bind (infra/local/ports.py)."""
    worker = getattr(config, "workerinput", None)
    if worker is None or PORTS_ENV in os.environ:  # a plain run, or a range given by whoever runs the suite
        return
    ports = listen_port_range()
    if ports is None:
        return
    count, index = int(worker["workercount"]), int(worker["workerid"].removeprefix("gw"))
    size = len(ports) // count
    os.environ[PORTS_ENV] = f"{ports.start + index * size}-{ports.start + (index + 1) * size - 1}"


# -- Groups --------------------------------------------------------------------

_DOCKER_TESTS = "tests/infra/docker/"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow Docker group: everything under tests/infra/docker, and any test that starts a container.

    In an xdist worker, the Docker group keeps its file order (``DockerApart`` below runs it as one unit),
    and the ``slow`` local tests go first, so the modules that hold them are handed out first: a run's wall
    time is that of its busiest worker, and a minute-long demo smoke picked up last leaves the other workers
    idle while it runs. Every worker sorts the same collection the same way (xdist requires it); a plain run
    keeps the file order.
    """
    for item in items:
        if _DOCKER_TESTS in item.nodeid or "sleeper" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: not (item.get_closest_marker("docker") or item.get_closest_marker("slow")))


class DockerApart(LoadScopeScheduling):
    """``--dist loadgroup`` here: the tests under tests/infra/docker are one unit, which one worker runs in
    file order, and every other test module is a unit of its own, which the other workers take one at a time,
    in the order the workers sorted the collection (the slow ones first), not xdist's largest-first.

    One Docker unit because the compose package's tests share one stack and build on each other's state, and
    two stacks (or a stack and the nodes) at once do not fit 2 cores. A module is a unit because its tests
    share module-scoped fixtures (31 of them: stacks, clusters, balancers), which each worker running some of
    its tests would start again. xdist's own loadgroup would do the Docker part from an ``xdist_group`` mark,
    but it passes the group by renaming each test in the worker, which pytest 9.2 no longer lets it do
    (pytest-xdist#1386: the grouping is silently lost). The controller sees test ids only, so the unit is told
    by path, the rule the ``docker`` marker starts from; the few tests elsewhere that start a container
    (``sleeper``) are short and need no stack, so they run wherever they fall.
    """

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        super().__init__(config, log)
        config.option.loadscopereorder = False  # read by schedule(): keep the workers' order

    def _split_scope(self, nodeid: str) -> str:
        return _DOCKER_TESTS if nodeid.startswith(_DOCKER_TESTS) else nodeid.split("::", 1)[0]


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling | None:
    if config.getvalue("dist") == "loadgroup":
        return DockerApart(config, log)
    return None  # xdist's own


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outside pytest-timeout's: the wait is not the test's time
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[object]:
    """Under xdist, a ``load`` test runs alone: it waits for the tests running on other workers to end, and
    no test starts beside it. Every other test runs side by side with the others, ``slow`` ones included.

    A ``load`` test drives load and judges a claim by its failures or its latency (a demo's "0 failed", an
    overload's p99, a rolling restart that loses no request), and anything beside it on 2 cores breaks claims
    the stack keeps on a machine to itself. Seen: the compose overload demo's replica marked down (a connect
    over 1 s at load average 12) with the local overload smoke beside it; then, with only quick tests beside
    it, 58 of the cache demo's 400 burst requests shed with a 503 as the machine ran a third slower. A test
    that is long but judges no rate (a stack coming up, a demo that counts placements or lost sessions, a
    Swarm deploy) is ``slow`` only: holding it alone too kept the other workers idle for a quarter of the run.
    So a ``load`` test holds an exclusive lock, every other test a shared one. A ``load`` test that waits
    holds the turnstile, so that a stream of other tests cannot keep it waiting. The files are in the
    directory every worker's temp dir is made in (xdist sets each one's ``--basetemp``); a plain run needs
    no lock."""
    if not hasattr(item.config, "workerinput"):
        return (yield)
    folder = Path(item.config.option.basetemp).parent
    alone = item.get_closest_marker("load") is not None
    with open(folder / "tests.turnstile", "w") as turnstile, open(folder / "tests.lock", "w") as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)  # released when the file closes
        fcntl.flock(turnstile, fcntl.LOCK_UN)
        return (yield)
