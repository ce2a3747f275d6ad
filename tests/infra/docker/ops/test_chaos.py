"""Chaos's pure parts: a bounded kill schedule, and failures attributed to the kill before them."""

from __future__ import annotations

import pytest

from infra.docker.ops.chaos import Kill, failures_per_kill, kill_times


def test_schedule_is_bounded_by_the_duration():
    assert kill_times(3, 10) == [3, 6, 9]
    assert kill_times(5, 10) == [5]  # a kill at the very end would measure nothing
    assert kill_times(20, 10) == []
    with pytest.raises(ValueError):
        kill_times(0, 10)


def test_failures_fall_to_the_kill_before_them():
    kills = [Kill(3.0, "container", "api-1", "x"), Kill(6.0, "container", "api-2", "y")]
    assert failures_per_kill(kills, [1.0, 3.2, 3.5, 6.1, 9.9, 12.0], end=10.0) == [2, 2]
    assert failures_per_kill([], [1.0], end=10.0) == []
