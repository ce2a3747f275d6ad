from cluster.crashes import CrashPolicy


def policy(**overrides) -> CrashPolicy:
    options = dict(max_crashes=5, window=60.0, min_uptime=1.0, backoff_base=0.1, backoff_cap=1.0)
    return CrashPolicy(**{**options, **overrides})


def test_a_worker_that_ran_a_while_is_restarted_at_once():
    crashes = policy()
    assert crashes.record(slot=0, uptime=30.0, now=100.0) == 0.0


def test_young_crashes_back_off_exponentially_up_to_the_cap():
    crashes = policy(max_crashes=0)
    delays = [crashes.record(slot=0, uptime=0.2, now=float(i)) for i in range(6)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    # Another slot has its own streak; a long-lived run resets this one.
    assert crashes.record(slot=1, uptime=0.2, now=7.0) == 0.1
    assert crashes.record(slot=0, uptime=5.0, now=8.0) == 0.0
    assert crashes.record(slot=0, uptime=0.2, now=9.0) == 0.1


def test_too_many_crashes_in_the_window_exhausts_it():
    crashes = policy(max_crashes=3, window=10.0)
    crashes.record(0, 5.0, now=0.0)
    crashes.record(0, 5.0, now=1.0)
    assert not crashes.exhausted()
    crashes.record(0, 5.0, now=20.0)  # the first two slid out of the window
    assert crashes.recent == 1 and not crashes.exhausted()
    crashes.record(1, 5.0, now=21.0)
    crashes.record(1, 5.0, now=22.0)
    assert crashes.exhausted()


def test_zero_means_never_give_up():
    crashes = policy(max_crashes=0)
    for i in range(100):
        crashes.record(0, 5.0, now=float(i))
    assert not crashes.exhausted()
