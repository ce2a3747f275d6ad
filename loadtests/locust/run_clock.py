"""Make ``--run-time`` count from when the run starts, not from a stale clock.

gevent's loop caches "now" at each iteration, and Locust arms its ``--run-time`` timer from
that cached time right after a long stretch of synchronous start-up (importing, parsing,
building the runner) without a loop iteration: on a busy machine a 2 s run was measured
stopping after 1.3 s. Refreshing the loop's clock at ``init`` (just before the timer is
armed) gives the run its full length. Importing this module registers the listener.
"""

from __future__ import annotations

from typing import Any

import gevent
from locust import events


@events.init.add_listener
def _refresh_loop_clock(**_: Any) -> None:
    gevent.get_hub().loop.update_now()
