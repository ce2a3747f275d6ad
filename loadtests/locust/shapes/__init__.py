"""Load shapes: the number of users over time, instead of ``--users``/``--run-time``.

Locust uses the first shape of the files it loads, so each shape has a file of its own to
add with ``-f``: ``-f loadtests/locust/locustfile.py,loadtests/locust/shapes/step.py`` (or
``shapes/ramp.py``). The shape ends the run by itself (``--users``, ``--spawn-rate`` and
``--run-time`` are ignored). Parameters come from the environment:

StepShape: a staircase, one more step of users every step, then stop.
    SCALECUBE_SHAPE_STEP_USERS     users added at each step (default 10)
    SCALECUBE_SHAPE_STEP_SECONDS   how long each step lasts (default 30)
    SCALECUBE_SHAPE_STEPS          how many steps (default 5): peak = STEPS × STEP_USERS
    SCALECUBE_SHAPE_SPAWN_RATE     users started per second at each step (default STEP_USERS: within a second)

RampShape: up in a straight line, hold the peak, down in a straight line, then stop.
    SCALECUBE_SHAPE_PEAK_USERS     users at the peak (default 50)
    SCALECUBE_SHAPE_RAMP_UP_SECONDS    (default 60)
    SCALECUBE_SHAPE_HOLD_SECONDS       (default 60)
    SCALECUBE_SHAPE_RAMP_DOWN_SECONDS  (default 30; 0 = stop at the end of the hold)

The classes hold no state beyond Locust's clock, so ``tick`` is a pure function of the run time.
"""

from __future__ import annotations

import math
import os

from locust import LoadTestShape


def _env_number(name: str, default: float, *, minimum: float = 0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise SystemExit(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


class StepShape(LoadTestShape):
    def __init__(self) -> None:
        super().__init__()
        self.step_users = int(_env_number("SCALECUBE_SHAPE_STEP_USERS", 10, minimum=1))
        self.step_seconds = _env_number("SCALECUBE_SHAPE_STEP_SECONDS", 30, minimum=0.1)
        self.steps = int(_env_number("SCALECUBE_SHAPE_STEPS", 5, minimum=1))
        self.spawn_rate = _env_number("SCALECUBE_SHAPE_SPAWN_RATE", self.step_users, minimum=0.01)

    def users_at(self, seconds: float) -> int | None:
        step = int(seconds // self.step_seconds)
        return None if step >= self.steps else (step + 1) * self.step_users

    def tick(self) -> tuple[int, float] | None:
        users = self.users_at(self.get_run_time())
        return None if users is None else (users, self.spawn_rate)


class RampShape(LoadTestShape):
    def __init__(self) -> None:
        super().__init__()
        self.peak = int(_env_number("SCALECUBE_SHAPE_PEAK_USERS", 50, minimum=1))
        self.up = _env_number("SCALECUBE_SHAPE_RAMP_UP_SECONDS", 60)
        self.hold = _env_number("SCALECUBE_SHAPE_HOLD_SECONDS", 60)
        self.down = _env_number("SCALECUBE_SHAPE_RAMP_DOWN_SECONDS", 30)
        # Fast enough to follow the line between two ticks (one a second): the target does the pacing.
        slope = self.peak / min(x for x in (self.up, self.down, 1.0) if x > 0)
        self.spawn_rate = max(1.0, 2 * slope)

    def users_at(self, seconds: float) -> int | None:
        if seconds < self.up:
            return max(1, math.ceil(self.peak * seconds / self.up))
        seconds -= self.up
        if seconds < self.hold:
            return self.peak
        seconds -= self.hold
        if seconds < self.down:
            return max(1, math.ceil(self.peak * (1 - seconds / self.down)))
        return None

    def tick(self) -> tuple[int, float] | None:
        users = self.users_at(self.get_run_time())
        return None if users is None else (users, self.spawn_rate)
