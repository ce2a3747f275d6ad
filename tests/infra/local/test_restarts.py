"""The supervisor's restart rule, in process: a fake component and a fake clock, so every step is counted, not timed.

The real thing (SIGKILLed Redis and api replicas of a running `scalecube up`) is in test_stack.py.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.local.pids import ProcessRef
from infra.local.restarts import FAILED, RESTARTING, RUNNING, STARTING, Keeper, RestartPolicy

POLICY = RestartPolicy(backoff_base=0.5, backoff_cap=4.0, min_uptime=10.0, max_crashes=4, window=60.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeComponent:
    """A process that runs until told to die; ``fail_starts`` makes the next starts raise, like a Redis that
    exits before answering PING."""

    def __init__(self, log_path: Path) -> None:
        self.name = "thing"
        self.log_path = log_path
        log_path.write_text("line 1\nthe reason it died\n")
        self.code: int | None = None
        self.is_ready = True
        self.starts = 0
        self.fail_starts = 0

    def poll(self) -> int | None:
        return self.code

    def ready(self) -> bool:
        return self.is_ready

    def start(self) -> None:
        self.starts += 1
        if self.fail_starts:
            self.fail_starts -= 1
            raise RuntimeError("redis-server exited with code 1 on port 1234:\nBad file format")
        self.code = None
        self.is_ready = False

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "pid": None, "started": None}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def component_exited(self, name: str, how: str, log_path: Any, tail: str, restart_in: float) -> None:
        self.events.append(("exited", name, how, restart_in, tail))

    def component_restarted(self, name: str, pid: int | None, restarts: int) -> None:
        self.events.append(("restarted", name, restarts))

    def component_back(self, name: str, restarts: int) -> None:
        self.events.append(("back", name, restarts))

    def component_failed(self, name: str, why: str, log_path: Any, tail: str) -> None:
        self.events.append(("failed", name, why, tail))


@pytest.fixture
def parts(tmp_path: Path) -> tuple[FakeComponent, Recorder, Clock, Keeper]:
    component, recorder, clock = FakeComponent(tmp_path / "thing.log"), Recorder(), Clock()
    return component, recorder, clock, Keeper(component, recorder, POLICY, clock=clock)


def die_young(component: FakeComponent, keeper: Keeper, clock: Clock, code: int = 1) -> float:
    """The component dies right after it got ready; returns the backoff the keeper chose."""
    component.code = code
    assert keeper.tick() and keeper.state == RESTARTING
    delay = keeper._restart_at - clock.now
    clock.now += delay
    assert keeper.tick() and keeper.state == STARTING  # restarted once the backoff is over
    component.is_ready = True
    assert keeper.tick() and keeper.state == RUNNING
    return delay


def test_a_component_that_ran_a_while_is_restarted_at_once_and_back_when_ready(parts):
    component, recorder, clock, keeper = parts
    clock.now += 60
    component.code = -signal.SIGKILL

    assert keeper.tick()

    assert keeper.state == RESTARTING and keeper.last_exit is not None
    assert keeper.last_exit.how == "killed by SIGKILL" and keeper.last_exit.code == -9
    assert keeper.last_exit.uptime == 60.0 and "the reason it died" in keeper.last_exit.log_tail
    assert recorder.events[-1][:4] == ("exited", "thing", "killed by SIGKILL", 0.0)
    assert keeper.tick() and keeper.state == STARTING and component.starts == 1
    assert not keeper.tick()  # not ready yet: nothing changed
    component.is_ready = True
    assert keeper.tick() and keeper.state == RUNNING
    assert [e[0] for e in recorder.events] == ["exited", "restarted", "back"]
    assert keeper.describe() == {
        "state": RUNNING,
        "restarts": 1,
        "last_exit": keeper.describe()["last_exit"],
        "failure": None,
    }
    assert keeper.describe()["last_exit"]["how"] == "killed by SIGKILL"


def test_young_deaths_back_off_exponentially_until_the_cap(parts):
    component, _, clock, keeper = parts
    policy = RestartPolicy(backoff_base=0.5, backoff_cap=4.0, min_uptime=10.0, max_crashes=0, window=60.0)
    keeper = Keeper(component, Recorder(), policy, clock=clock)  # max_crashes 0: never gives up

    delays = [die_young(component, keeper, clock) for _ in range(6)]

    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert keeper.restarts == 6 and keeper.state == RUNNING


def test_a_stable_run_forgets_the_streak(parts):
    component, _, clock, keeper = parts
    assert [die_young(component, keeper, clock) for _ in range(2)] == [0.5, 1.0]
    clock.now += POLICY.min_uptime  # served long enough

    assert die_young(component, keeper, clock) == 0.0
    assert die_young(component, keeper, clock) == 0.5  # a new streak


def test_a_crash_loop_is_given_up_with_which_and_why(parts):
    component, recorder, clock, keeper = parts
    clock.now += 60
    component.code = -signal.SIGKILL
    keeper.tick()  # a stable run killed: restarted at once, not counted
    component.fail_starts = 100  # every start from now on fails before it serves

    for _ in range(20):  # bounded: it must give up well before
        clock.now += POLICY.backoff_cap
        keeper.tick()
        if keeper.state == FAILED:
            break

    assert keeper.state == FAILED
    assert component.starts == POLICY.max_crashes  # every restart failed: max_crashes young deaths
    assert keeper.restarts == component.starts
    assert (
        keeper.last_exit is not None and keeper.last_exit.code is None and keeper.last_exit.uptime == 0
    )  # a RuntimeError without a code
    assert keeper.last_exit.how == "failed to start: redis-server exited with code 1 on port 1234"
    kind, name, why, tail = recorder.events[-1]
    assert (kind, name) == ("failed", "thing")
    assert why.startswith(f"{POLICY.max_crashes} deaths within 60s, each before it had served 10s")
    assert why.endswith("the last: failed to start: redis-server exited with code 1 on port 1234")
    assert "the reason it died" in tail
    assert keeper.describe()["failure"] == why
    clock.now += 3600
    assert not keeper.tick() and component.starts == POLICY.max_crashes  # given up: never started again


def test_deaths_spread_wider_than_the_window_never_give_up(parts):
    component, _, clock, keeper = parts

    for _ in range(3 * POLICY.max_crashes):
        clock.now += POLICY.window / (POLICY.max_crashes - 1)
        die_young(component, keeper, clock)

    assert keeper.state == RUNNING and keeper.restarts == 3 * POLICY.max_crashes


def test_a_death_before_it_was_ready_again_is_young_however_long_it_took(parts):
    component, _, clock, keeper = parts
    clock.now += 60
    component.code = 1
    keeper.tick()
    keeper.tick()  # restarted at once (it had run 60 s)
    assert keeper.state == STARTING
    clock.now += 5 * POLICY.min_uptime  # a slow start that never got ready
    component.code = 3

    keeper.tick()

    assert keeper.last_exit is not None and keeper.last_exit.uptime == 0.0 and keeper.last_exit.how == "exit code 3"
    assert keeper._restart_at - clock.now == POLICY.backoff_base


def test_the_leftovers_of_a_dead_leader_are_killed_by_its_process_group():
    # A leader (like a cluster master) with a child of its own session; the leader dies, the child is orphaned.
    leader = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE, start_new_session=True)
    child: ProcessRef | None = None
    try:
        assert leader.stdout is not None
        child = ProcessRef.of(int(leader.stdout.readline()))
        ref = ProcessRef.of(leader.pid)
        assert child is not None and ref is not None and child.alive()
        assert ref.kill_group() == []  # alive: not for kill_group
        leader.kill()
        leader.wait(10)

        killed = ref.kill_group()

        assert killed == [child.pid]
        assert not child.alive()
        assert ref.kill_group() == []  # nothing left
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait(10)
        if child is not None:
            child.kill_tree()
        if leader.stdout is not None:
            leader.stdout.close()
