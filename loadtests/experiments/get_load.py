"""Locust load of plain GETs of given paths (``GET /users/count``, ``GET /users/{id}``), for the demos
whose load no user class of ``loadtests/locust`` makes.

The user class lives in a small locustfile this module writes into the demo's output folder
(what was run stays next to its results); it builds on the same parts as the project's
locustfile: ``ScalecubeUser`` (FastHttpUser, the wait knobs), the run clock, the served-by tally.
Locust is never imported here: the file is only written, Locust runs it as a subprocess.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from loadtests.experiments.context import DemoContext
from loadtests.experiments.locust_runner import LoadResult, LoadSpec

USER_CLASS = "GetUser"
PATHS_ENV = "SCALECUBE_GET_PATHS"  # comma-separated; each request picks one at random
NAME_ENV = "SCALECUBE_GET_NAME"  # the name the statistics show, e.g. /users/[id]

LOCUSTFILE = f'''"""Written by scalecube's demos (loadtests/experiments/get_load.py): GET one of ${PATHS_ENV}."""

import os
import random

from locust import task

from loadtests.locust import run_clock, served_by  # noqa: F401  (their listeners)
from loadtests.locust.users import ScalecubeUser, expect

PATHS = [path for path in os.environ.get("{PATHS_ENV}", "/").split(",") if path]
NAME = os.environ.get("{NAME_ENV}") or PATHS[0]


class {USER_CLASS}(ScalecubeUser):
    @task
    def get(self) -> None:
        with self.client.get(random.choice(PATHS), name=NAME, catch_response=True) as response:
            expect(response, 200)
'''


def locustfile(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "get_locustfile.py"
    path.write_text(LOCUSTFILE, encoding="utf-8")
    return path


def get_spec(host: str, paths: list[str], users: int, seconds: float, *, name: str | None = None) -> LoadSpec:
    return LoadSpec(USER_CLASS, host, users, seconds, env={PATHS_ENV: ",".join(paths), NAME_ENV: name or paths[0]})


def load_gets(ctx: DemoContext, phase: str, spec: LoadSpec) -> LoadResult:
    """``ctx.load`` with this module's locustfile (written under ``<out>/locust/``)."""
    own = DemoContext(
        ctx.name, replace(ctx.options, out=ctx.out, locustfile=locustfile(ctx.out / "locust")), err=ctx.err
    )
    return own.load(phase, spec)
