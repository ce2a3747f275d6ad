"""Workers that die at random, like the guide's ``setTimeout(() => process.exit(1), Math.random() * 10000)``.

With ``CHAOS_CRASH_AFTER="MIN,MAX"`` (seconds) every serving process exits abruptly —
``os._exit(1)``: no cleanup, no draining, requests in flight are cut — after a random
delay in [MIN, MAX] from its start. The cluster master replaces it, which is what the
availability demo (``scalecube demo availability``) measures. Unset: nothing happens.

Keep MIN at or above the cluster's ``min_uptime`` (1 s): a worker dying younger is taken
for a crash loop and its restarts back off.
"""

from __future__ import annotations

import logging
import os
import random
import threading

log = logging.getLogger("scalecube.api.chaos")

ENV = "CHAOS_CRASH_AFTER"
EXIT_CODE = 1


def parse_crash_after(text: str | None) -> tuple[float, float] | None:
    """``"MIN,MAX"`` -> (min, max) seconds; empty or None -> None. ``ValueError`` says what is wrong."""
    if text is None or not text.strip():
        return None
    parts = [part.strip() for part in text.split(",")]
    try:
        low, high = (float(part) for part in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        low = high = None
    if low is None or high is None:
        raise ValueError(f"{ENV} must be 'MIN,MAX' in seconds (e.g. '1,10'), got {text!r}")
    if not 0 <= low <= high:
        raise ValueError(f"{ENV} needs 0 <= MIN <= MAX, got {text!r}")
    return low, high


class CrashTimer:
    """A daemon thread that ends the process after a random delay; a thread, so a busy event loop
    (``/cpu``) cannot postpone the crash."""

    def __init__(self, window: tuple[float, float], rng: random.Random | None = None) -> None:
        self.delay = (rng or random.Random()).uniform(*window)
        self._timer = threading.Timer(self.delay, self._crash)
        self._timer.daemon = True

    def start(self) -> None:
        log.warning("chaos: this process (pid %d) will exit in %.2fs (%s)", os.getpid(), self.delay, ENV)
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()

    @staticmethod
    def _crash() -> None:
        log.warning("chaos: pid %d exits now", os.getpid())
        os._exit(EXIT_CODE)  # abrupt on purpose: like process.exit(1), nothing is flushed or drained


def arm(window: tuple[float, float] | None) -> CrashTimer | None:
    """Start the crash timer when a window is set (call where the process starts serving)."""
    if window is None:
        return None
    timer = CrashTimer(window)
    timer.start()
    return timer
