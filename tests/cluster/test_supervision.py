"""The master's decisions, with no process started: events in, actions out, a fake clock."""

import pytest

from cluster.crashes import CrashPolicy
from cluster.supervision import STARTUP_FAILURE, Drain, Finished, Fork, GiveUp, Restart, Supervisor


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def supervisor(clock: Clock, workers: int = 2, max_crashes: int = 10) -> Supervisor:
    crashes = CrashPolicy(max_crashes=max_crashes, window=60.0, min_uptime=1.0, backoff_base=0.1, backoff_cap=10.0)
    return Supervisor(workers, crashes, clock)


class Cluster:
    """Plays the master: starts what the supervisor asks, numbering workers as the master does."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.next_id = 1
        self.by_slot: dict[int, int] = {}

    def run(self, actions) -> list:
        for action in actions:
            if isinstance(action, Fork):
                self.fork(action.slot)
        return actions

    def fork(self, slot: int, *, listen: bool = True, replacing: bool = False) -> int:
        worker_id, self.next_id = self.next_id, self.next_id + 1
        self.sup.forked(worker_id, slot, replacing=replacing)
        if listen:
            self.sup.listening(worker_id)
        self.by_slot[slot] = worker_id
        return worker_id


def test_start_forks_one_worker_per_slot(clock):
    sup = supervisor(clock, workers=3)
    assert sup.start() == [Fork(0), Fork(1), Fork(2)]


def test_a_crash_after_a_good_run_restarts_at_once(clock):
    sup = supervisor(clock)
    cluster = Cluster(sup)
    cluster.run(sup.start())
    clock.now += 30  # up long enough: stable
    assert sup.exited(cluster.by_slot[1]) == [Restart(1, 0.0)]
    assert sup.pending == {1} and sup.restarts[1] == 1
    assert sup.restart_due(1) == [Fork(1)] and sup.pending == set()


def test_a_crash_looping_slot_backs_off(clock):
    sup = supervisor(clock)
    cluster = Cluster(sup)
    cluster.run(sup.start())
    delays = []
    for _ in range(4):
        clock.now += 0.2  # dies young
        (action,) = sup.exited(cluster.by_slot[0])
        delays.append(action.delay)
        clock.now += action.delay
        sup.restart_due(0)
        cluster.fork(0)
    assert delays == [0.1, 0.2, 0.4, 0.8]


def test_too_many_crashes_give_up_with_a_reason(clock):
    sup = supervisor(clock, workers=1, max_crashes=3)
    cluster = Cluster(sup)
    cluster.run(sup.start())
    for _ in range(2):
        clock.now += 5
        assert isinstance(sup.exited(cluster.by_slot[0])[0], Restart)
        sup.restart_due(0)
        cluster.fork(0)
    clock.now += 5
    actions = sup.exited(cluster.by_slot[0])
    assert actions == [GiveUp(1, "3 worker crashes within 60s"), Finished()]
    assert sup.stopping and sup.exit_code == 1
    assert sup.restart_due(0) == []  # a restart scheduled before is dropped


def test_first_workers_that_never_listen_are_a_startup_failure(clock):
    sup = supervisor(clock)
    cluster = Cluster(sup)
    first = cluster.fork(0, listen=False)
    second = cluster.fork(1, listen=False)
    actions = sup.exited(first)
    assert actions[0] == GiveUp(STARTUP_FAILURE, "the first workers cannot start (see the worker's error above)")
    assert actions[1:] == [Drain(second)]
    assert sup.exited(second) == [Finished()]


def test_a_failed_replacement_is_not_restarted(clock):
    sup = supervisor(clock)
    cluster = Cluster(sup)
    cluster.run(sup.start())
    old = cluster.by_slot[0]
    sup.swapping(old, True)
    successor = cluster.fork(0, listen=False, replacing=True)
    clock.now += 5
    assert sup.exited(successor) == []  # the old worker still serves slot 0


def test_a_drained_worker_leaving_is_expected(clock):
    sup = supervisor(clock)
    cluster = Cluster(sup)
    cluster.run(sup.start())
    sup.leaving(cluster.by_slot[0])
    assert sup.exited(cluster.by_slot[0]) == []
    assert sup.crashes.recent == 0


def test_rolling_reload_goes_slot_by_slot(clock):
    sup = supervisor(clock, workers=3)
    cluster = Cluster(sup)
    for slot in (2, 0, 1):  # started in any order
        cluster.fork(slot)
    starting = cluster.fork(3, listen=False)
    assert sup.reload_order() == [cluster.by_slot[0], cluster.by_slot[1], cluster.by_slot[2]]
    assert starting not in sup.reload_order()
    sup.leaving(cluster.by_slot[1])
    assert cluster.by_slot[1] not in sup.reload_order()  # one already leaving is not replaced again


def test_scale_up_and_down(clock):
    sup = supervisor(clock, workers=2)
    cluster = Cluster(sup)
    cluster.run(sup.start())
    assert cluster.run(sup.scale(1)) == [Fork(2)] and sup.slots == {0, 1, 2}
    third = cluster.by_slot[2]
    assert sup.scale(-1) == [Drain(third)] and sup.slots == {0, 1}
    sup.leaving(third)
    assert sup.exited(third) == []  # scaled away: not restarted
    assert sup.scale(-1) == [Drain(cluster.by_slot[1])]
    assert sup.scale(-1) == [] and sup.slots == {0}  # never below one


def test_a_crash_in_a_slot_scaled_away_is_not_restarted(clock):
    sup = supervisor(clock, workers=2)
    cluster = Cluster(sup)
    cluster.run(sup.start())
    sup.slots.discard(1)
    clock.now += 30
    assert sup.exited(cluster.by_slot[1]) == []


def test_stop_drains_everyone_then_finishes(clock):
    sup = supervisor(clock, workers=2)
    cluster = Cluster(sup)
    cluster.run(sup.start())
    clock.now += 30
    sup.exited(cluster.by_slot[0])  # a restart is pending ...
    assert sup.stop() == [Drain(cluster.by_slot[1])]
    assert sup.pending == set() and sup.restart_due(0) == []  # ... and dropped
    assert sup.scale(1) == [] and sup.stop() == []
    assert sup.exited(cluster.by_slot[1]) == [Finished()]


def test_stop_with_no_workers_finishes_at_once(clock):
    assert supervisor(clock).stop(exit_code=1) == [Finished()]
