"""One module per demo, each with ``run(ctx: DemoContext) -> DemoReport``; ``DEMOS`` names them in order."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loadtests.experiments.context import DemoContext
    from loadtests.experiments.results import DemoReport

# name -> module under loadtests.experiments.demos; `demo all` runs them in this order.
DEMOS = (
    "cloning",
    "availability",
    "overload",
    "reload",
    "sessions",
    "broadcast",
    "splitting",
    "decomposing",
    "outage",
    "failover",
)


def runner(name: str) -> Callable[[DemoContext], DemoReport]:
    if name not in DEMOS:
        raise KeyError(f"no demo {name!r}; there are: {', '.join(DEMOS)}")
    return importlib.import_module(f"loadtests.experiments.demos.{name}").run  # type: ignore[no-any-return]
