"""When to restart a crashed worker, and when to give up.

A worker that dies after running a while is replaced at once. One that dies
young (under ``min_uptime``) is probably crash-looping, so its slot's restarts
back off exponentially up to a cap. Independently, too many crashes inside a
sliding window make the master give up and exit non-zero, so an orchestrator
(Docker's restart policy, Kubernetes) can restart the whole container.
"""

from __future__ import annotations

import collections


class CrashPolicy:
    def __init__(
        self,
        *,
        max_crashes: int,
        window: float,
        min_uptime: float,
        backoff_base: float,
        backoff_cap: float,
    ) -> None:
        self.max_crashes = max_crashes
        self.window = window
        self.min_uptime = min_uptime
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._crash_times: collections.deque[float] = collections.deque()
        self._unstable_streak: dict[int, int] = collections.defaultdict(int)

    def record(self, slot: int, uptime: float, now: float) -> float:
        """Record a crash in ``slot``; returns how long to wait before its restart."""
        self._crash_times.append(now)
        while self._crash_times and self._crash_times[0] < now - self.window:
            self._crash_times.popleft()
        if uptime >= self.min_uptime:
            self._unstable_streak[slot] = 0
            return 0.0
        self._unstable_streak[slot] += 1
        streak = self._unstable_streak[slot]
        return min(self.backoff_base * 2 ** (streak - 1), self.backoff_cap)

    def stable(self, slot: int) -> None:
        """The slot's worker has been up long enough: forget its streak."""
        self._unstable_streak[slot] = 0

    @property
    def recent(self) -> int:
        return len(self._crash_times)

    def exhausted(self) -> bool:
        return self.max_crashes > 0 and len(self._crash_times) >= self.max_crashes
