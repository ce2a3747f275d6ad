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
    "cache",
    "splitting",
    "decomposing",
    "outage",
    "failover",
)


# Demos `demo all` does not run: they need a stack of their own kind (node-loss: several engines in one Swarm,
# `scalecube nodes up` + `scalecube docker swarm-deploy --nodes`; its module docstring says why).
ALONE = ("node-loss",)


def runner(name: str) -> Callable[[DemoContext], DemoReport]:
    if name not in DEMOS and name not in ALONE:
        raise KeyError(f"no demo {name!r}; there are: {', '.join(DEMOS + ALONE)}")
    module = name.replace("-", "_")
    return importlib.import_module(f"loadtests.experiments.demos.{module}").run  # type: ignore[no-any-return]
