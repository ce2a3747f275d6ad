"""Load shapes drive the user count themselves, and end the run by themselves.

Locust samples the user count into its history once a second, and the shape ticks once a second: each
phase a test must see lasts two seconds or more, so that a sample lands in it even when a busy machine
delays one by a good part of a second.
"""

from __future__ import annotations

from tests.loadtests.locust.runner import SHAPES, run_locust


def test_step_shape_climbs_its_steps_then_stops(api_redis_sessions, tmp_path):
    env = {"SCALECUBE_SHAPE_STEP_USERS": "2", "SCALECUBE_SHAPE_STEP_SECONDS": "2.5", "SCALECUBE_SHAPE_STEPS": "2"}
    result = run_locust(
        tmp_path,
        api_redis_sessions.url,
        classes=("CloningUser",),
        files=(SHAPES / "step.py",),
        run_time=None,
        env=env,
        timeout=40,
    )
    assert result.code == 0, result.explain()
    counts = result.user_counts()
    assert 2 in counts and max(counts) == 4, counts  # 2 users, then 4, never more
    assert counts.index(4) > counts.index(2)
    assert "Shape test stopping" in result.output  # the shape ended the run, not a --run-time


def test_ramp_shape_rises_holds_and_falls(api_redis_sessions, tmp_path):
    env = {
        "SCALECUBE_SHAPE_PEAK_USERS": "4",
        "SCALECUBE_SHAPE_RAMP_UP_SECONDS": "2",
        "SCALECUBE_SHAPE_HOLD_SECONDS": "1",
        "SCALECUBE_SHAPE_RAMP_DOWN_SECONDS": "2",
    }
    result = run_locust(
        tmp_path,
        api_redis_sessions.url,
        classes=("CloningUser",),
        files=(SHAPES / "ramp.py",),
        run_time=None,
        env=env,
        timeout=40,
    )
    assert result.code == 0, result.explain()
    counts = [c for c in result.user_counts() if c]
    peak = counts.index(max(counts))
    assert max(counts) == 4 and counts[0] < 4, counts
    assert min(counts[peak:]) < 4, counts  # came down again
    assert "Shape test stopping" in result.output
