"""What every demo is given: the options, where to write, and how to run one load phase with progress."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from loadtests.drivers import run_wrk, wrk_available
from loadtests.experiments.locust_runner import LoadResult, LoadSpec, run_load
from loadtests.experiments.rigs import Rig

SMOKE_SECONDS = 2.0
SMOKE_USERS = 4
# The locustfile's users wait 50-250 ms between tasks, like visitors; a demo measures capacity: flat out.
FLAT_OUT = {"SCALECUBE_WAIT_MIN": "0", "SCALECUBE_WAIT_MAX": "0"}


@dataclass(frozen=True)
class DemoOptions:
    users: int | None = None  # None: the demo's own default
    seconds: float | None = None  # per phase
    out: Path | None = None  # None: ./demo-reports/<name>-<timestamp>/
    target: str | None = None  # an existing stack's URL: only the phases that need no process of ours
    smoke: bool = False  # tiny load for the test suite: performance targets reported, not judged
    locustfile: Path | None = None
    docker_project: str | None = None  # --docker: the compose project whose balancer is ``target``
    # node-loss: the `scalecube nodes` cluster, the Swarm stack deployed over it, the node to lose (None: chosen)
    nodes_cluster: str = "scalecube-nodes"
    nodes_stack: str = "scalecube"
    kill_node: str | None = None


class DemoContext:
    def __init__(self, name: str, options: DemoOptions, *, err: Console | None = None) -> None:
        self.name = name
        self.options = options
        self.err = err or Console(stderr=True)
        self.started = datetime.now().astimezone()
        self.out = options.out or Path("demo-reports") / f"{name}-{self.started:%Y%m%d-%H%M%S}"

    @property
    def smoke(self) -> bool:
        return self.options.smoke

    @property
    def target(self) -> str | None:
        return self.options.target.rstrip("/") if self.options.target else None

    @property
    def docker_project(self) -> str | None:
        return self.options.docker_project

    def users(self, default: int) -> int:
        return self.options.users or (SMOKE_USERS if self.smoke else default)

    def seconds(self, default: float, smoke: float = SMOKE_SECONDS) -> float:
        return self.options.seconds or (smoke if self.smoke else default)

    def say(self, text: str) -> None:
        self.err.print(f"[bold cyan]›[/bold cyan] {text}", highlight=False)

    @contextmanager
    def workdir(self) -> Iterator[Path]:
        """A short-lived folder for the rig's processes (short: it holds unix sockets)."""
        path = Path(tempfile.mkdtemp(prefix="scdemo-"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def rig(self, workdir: Path, name: str) -> Rig:
        """A ``Rig`` in ``workdir/name`` whose logs end up in ``<out>/logs/<name>/``."""
        return Rig(workdir / name, keep_logs=self.out / "logs" / name)

    def load(
        self,
        phase: str,
        spec: LoadSpec,
        *,
        during: Callable[[], None] | None = None,
        end_after_during: float | None = None,
        expected: float | None = None,
        locustfile: Path | None = None,
    ) -> LoadResult:
        """One Locust run, with a progress bar on stderr (elapsed / expected seconds); ``locustfile``: a demo's
        own user classes (default: the options', else the packaged locustfile)."""
        total = expected or spec.seconds
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn(f"/ ~{total:.0f}s, {spec.users} users"),
        )
        spec = replace(spec, env={**FLAT_OUT, **spec.env})
        with Progress(*columns, console=self.err, transient=False) as progress:
            task = progress.add_task(phase, total=total)
            result = run_load(
                spec,
                self.out / "locust",
                phase,
                during=during,
                end_after_during=end_after_during,
                locustfile=locustfile or self.options.locustfile,
                progress=lambda elapsed: progress.update(task, completed=min(elapsed, 0.99 * total)),
            )
            progress.update(task, completed=total)
        return result

    def wrk(
        self,
        phase: str,
        url: str,
        *,
        connections: int,
        seconds: float,
        new_connections: bool = True,
        timeout: float = 10.0,
    ) -> LoadResult:
        """Many clients at once, the guides' way (``ab -c200``: a new connection per request): wrk,
        whose C costs little per connection where 200 Locust users would need the cores being measured.
        A request wrk lost to a socket error (reset, closed before the answer, timeout) is a failure,
        as is a non-2xx answer."""
        if not wrk_available():
            raise RuntimeError("wrk is not installed (apt-get install wrk): it drives the 200-client phases")
        how = "new connection per request" if new_connections else "keep-alive"
        self.say(f"{phase}: wrk, {connections} connections, {how}, {seconds:g} s")
        summary = run_wrk(
            url, seconds=seconds, connections=connections, new_connections=new_connections, timeout=timeout
        )
        lost = summary.errors - summary.error_kinds.get("non-2xx", 0)  # never answered: not in wrk's count
        return LoadResult(
            label=phase,
            requests=summary.requests + lost,
            failures=summary.errors,
            seconds=summary.seconds,
            p50_ms=summary.p50_ms,
            p99_ms=summary.p99_ms,
            failures_by_error=dict(summary.error_kinds),
        )
