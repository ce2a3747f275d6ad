"""``scalecube demo availability``: workers crash at random under load; how many requests fail?

Each worker exits abruptly (``os._exit(1)``, the guide's ``process.exit``) after a random
delay (``CHAOS_CRASH_AFTER``, services/api/chaos.py); the master forks a replacement. The
requests a dying worker holds are lost — unless a balancer retries them elsewhere.

Two loads, each straight to a cluster and through a balancer: a few Locust users (Node-like
traffic), and the guides' own shape — 200 clients at once, a new connection per request
(``ab -c200``; wrk here). The second is what the hand-off (``cluster.handoff``) is for: a
worker holds only what it is working on, so a crash costs that and nothing queued behind it.
The ``os`` policy (the kernel hands out connections) is shown beside ``rr`` for comparison, and so is
the guides' own Node cluster (``guides_cluster.js``, when ``node`` is installed) under the same crowd.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

from infra.local.processes import ClusterProcess
from loadtests.experiments import claims
from loadtests.experiments.context import DemoContext
from loadtests.experiments.locust_runner import LoadSpec
from loadtests.experiments.results import DemoReport, Phase
from loadtests.experiments.rigs import HOSTS, Rig, restarts

TITLE = "Availability: workers crashing at random under load"
GUIDE = (
    "With a master that forks a new worker whenever one dies, a cluster whose workers crash at random "
    "(process.exit after a random delay) keeps serving: 17 of 1,800 requests failed (the guides)."
)
SUCCESS_PCT = 99.0
CRASH_AFTER = "1,10"  # seconds: the guide's Math.random() * 10000 ms (from 1 s: younger counts as a crash loop)
# Smoke: crashes within a short phase, yet rarely all workers at once (a replacement needs 1-2 s to
# import the app, much more on a busy machine: a replica with no worker left queues everything).
SMOKE_CRASH_AFTER = "2,5"
SMOKE_SECONDS = 6.0  # long enough that some worker crashes under load (a phase without one tests nothing)
ITERATIONS = 90_000  # ~3 ms of work per request
REPLICAS = 2
DIRECT_CLAIM = f"≥ {SUCCESS_PCT:g}% succeed, straight to a cluster"
BALANCED_CLAIM = "0 failed GETs through a retrying balancer"
CLIENTS = 200  # the guides' ab -c200
CROWD_PCT = 99.5  # Node's cluster loses 0.05-0.14 % this way (measured side by side): ≤ 0.5 % here
CROWD_DIRECT_CLAIM = f"≥ {CROWD_PCT:g}% succeed with {CLIENTS} clients, new connection each, straight to a cluster"
CROWD_BALANCED_CLAIM = f"≥ {CROWD_PCT:g}% succeed with {CLIENTS} clients, new connection each, through the balancer"
DOCKER_KILL_EVERY = 3.0  # --docker: seconds between worker kills inside the api containers
# Its workers die on purpose, faster than the master's default give-up rate (10 crashes a minute).
NEVER_GIVE_UP = ["--max-crashes", "0"]


def run(ctx: DemoContext) -> DemoReport:
    from cluster.cpus import available_cpus

    workers = available_cpus()
    users, seconds = ctx.users(8), ctx.seconds(20, smoke=SMOKE_SECONDS)
    window = SMOKE_CRASH_AFTER if ctx.smoke else CRASH_AFTER
    report = DemoReport(
        "availability",
        TITLE,
        GUIDE,
        {"users": users, "seconds": seconds, "workers": workers, "crash_after": window, "smoke": ctx.smoke},
    )

    def spec(url: str) -> LoadSpec:
        return LoadSpec(
            "CloningUser", url, users, seconds, tags=("cpu",), env={"SCALECUBE_CPU_ITERATIONS": str(ITERATIONS)}
        )

    if ctx.docker_project:
        return _against_compose(ctx, report, spec)
    if ctx.target:
        report.phases = [Phase("target", ctx.load("target", spec(ctx.target)), note=f"{ctx.target}, as it runs")]
        reason = "the demo makes its own workers crash (CHAOS_CRASH_AFTER); not with --target"
        report.claims = [
            claims.skipped(name, reason)
            for name in (DIRECT_CLAIM, BALANCED_CLAIM, CROWD_DIRECT_CLAIM, CROWD_BALANCED_CLAIM)
        ]
        report.notes.append(
            "Against --target the failures are whatever that stack does; start its api with "
            "CHAOS_CRASH_AFTER=MIN,MAX to make its workers crash."
        )
        return report

    chaos = {"CHAOS_CRASH_AFTER": window}
    direct_name = f"cluster ({workers} workers), crashing"
    with ctx.workdir() as workdir:
        with ctx.rig(workdir, "direct") as rig:
            ctx.say(f"starting a cluster of {workers} workers that crash after {window} s each")
            cluster = rig.cluster(workers, env=chaos, args=NEVER_GIVE_UP)
            direct = _measured(ctx, rig, direct_name, spec(cluster.url), [cluster], "straight to the cluster")
            crowd = _crowd(
                ctx,
                rig,
                f"{direct_name}, {CLIENTS} clients",
                cluster.url,
                [cluster],
                "rr: the master hands a worker only what it can take",
            )
            work_ms = _work_ms(cluster.url)
        with ctx.rig(workdir, "direct-os") as rig:
            kernel = rig.cluster(workers, env=chaos, args=[*NEVER_GIVE_UP, "--policy", "os"])
            crowd_os = _crowd(
                ctx,
                rig,
                f"cluster, policy os, {CLIENTS} clients",
                kernel.url,
                [kernel],
                "os: the kernel hands out connections (shown, not judged)",
            )
        crowd_node = _crowd_node(ctx, workdir, workers, window, work_ms)
        with ctx.rig(workdir, "balanced") as rig:
            clusters = rig.replicas("api", HOSTS[:REPLICAS], workers, env=chaos, args=NEVER_GIVE_UP)
            balancer = rig.balancer("api", REPLICAS)
            ctx.say(f"started {REPLICAS} crashing clusters behind {balancer.kind} (retry-on, redispatch)")
            balanced = _measured(
                ctx,
                rig,
                f"{REPLICAS} clusters + {balancer.kind}",
                spec(balancer.url),
                clusters,
                f"{balancer.kind} retries a request a dying worker dropped",
            )
            crowd_balanced = _crowd(
                ctx,
                rig,
                f"{REPLICAS} clusters + {balancer.kind}, {CLIENTS} clients",
                balancer.url,
                clusters,
                f"{balancer.kind} in front, a new connection per request",
            )
    report.phases = [direct, balanced, crowd, crowd_os, *crowd_node, crowd_balanced]
    if not crowd_node:
        report.notes.append(
            "node is not installed: the guides' own Node cluster (loadtests/experiments/"
            "guides_cluster.js) was not run beside ours."
        )

    report.claims = [
        _needs_crashes(
            direct, claims.success_at_least(DIRECT_CLAIM, _requests(direct), _failures(direct), SUCCESS_PCT)
        ),
        _needs_crashes(
            balanced, claims.no_failures(BALANCED_CLAIM, _requests(balanced), _failures(balanced), what="GETs")
        ),
        _needs_crashes(
            crowd, claims.success_at_least(CROWD_DIRECT_CLAIM, _requests(crowd), _failures(crowd), CROWD_PCT)
        ),
        _needs_crashes(
            crowd_balanced,
            claims.success_at_least(
                CROWD_BALANCED_CLAIM, _requests(crowd_balanced), _failures(crowd_balanced), CROWD_PCT
            ),
        ),
    ]
    report.notes.append(
        "A crash cuts the requests the dying worker holds (and its keep-alive connections); the master "
        "forks a replacement, which needs about a second to import the app."
    )
    return report


def _measured(
    ctx: DemoContext, rig: Rig, name: str, spec: LoadSpec, clusters: list[ClusterProcess], note: str
) -> Phase:
    before = restarts(clusters)
    result = ctx.load(name, spec)
    crashed = restarts(clusters) - before
    phase = Phase(
        name,
        result,
        note=f"{note}; {crashed} worker crash(es) during the phase",
        replica_of=rig.watcher.replica_of(result.served_by),
        facts={"crashes": crashed},
    )
    return phase


def _work_ms(url: str, samples: int = 9) -> float:
    """What one /cpu request of the demo costs a worker here (the median of the api's own ``elapsed_ms``),
    for the Node cluster to spend the same per request. Its workers crash meanwhile: a lost answer is skipped."""
    import httpx

    costs = []
    for _ in range(samples * 3):
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            costs.append(float(httpx.get(f"{url}/cpu?iterations={ITERATIONS}", timeout=5.0).json()["elapsed_ms"]))
        if len(costs) == samples:
            break
    return statistics.median(costs) if costs else 3.0


def _crowd_node(ctx: DemoContext, workdir: Path, workers: int, window: str, work_ms: float) -> list[Phase]:
    """The same crowd against the guides' own Node cluster (if ``node`` is installed): shown beside, not judged."""
    with ctx.rig(workdir, "node") as rig:
        url = rig.guides_node_cluster(workers, window, work_ms)
        if url is None:
            return []
        name = f"node cluster (the guides'), {CLIENTS} clients"
        seconds = ctx.seconds(15, smoke=SMOKE_SECONDS)
        result = ctx.wrk(name, f"{url}/cpu", connections=CLIENTS, seconds=seconds)
    kinds = ", ".join(f"{n} {kind}" for kind, n in result.failures_by_error.items()) or "none"
    note = (
        f"Node's cluster module, {workers} workers crashing after {window} s, {work_ms:.1f} ms of CPU per "
        f"request as ours (shown, not judged); failures: {kinds}"
    )
    return [Phase(name, result, note=note)]


def _crowd(ctx: DemoContext, rig: Rig, name: str, url: str, clusters: list[ClusterProcess], note: str) -> Phase:
    """The guides' ``ab -r -c200 -t10`` on ``/cpu``: many clients, a new connection per request."""
    before = restarts(clusters)
    seconds = ctx.seconds(15, smoke=SMOKE_SECONDS)
    result = ctx.wrk(name, f"{url}/cpu?iterations={ITERATIONS}", connections=CLIENTS, seconds=seconds)
    crashed = restarts(clusters) - before
    kinds = ", ".join(f"{n} {kind}" for kind, n in result.failures_by_error.items()) or "none"
    return Phase(
        name, result, note=f"{note}; {crashed} worker crash(es); failures: {kinds}", facts={"crashes": crashed}
    )


def _against_compose(ctx: DemoContext, report: DemoReport, spec: Callable[[str], LoadSpec]) -> DemoReport:
    """``--docker``: the compose stack's api containers cannot be given CHAOS_CRASH_AFTER while they run, so
    the demo kills a random worker inside a random api container every few seconds itself (``docker exec``,
    ``scalecube docker chaos --target worker``'s way), under both loads through the stack's balancer."""
    from infra.docker.ops.chaos import Chaos
    from infra.docker.ops.project import Project
    from infra.paths import REPO

    target = ctx.target
    assert target is not None and ctx.docker_project is not None
    project = Project.connect(REPO, ctx.docker_project)
    seconds = ctx.seconds(20, smoke=SMOKE_SECONDS)
    every = DOCKER_KILL_EVERY

    def killing(kills: list[str]) -> Callable[[], None]:
        chaos = Chaos(project, target, every=every, duration=seconds, target="worker", say=ctx.say)

        def run() -> None:
            started = time.monotonic()
            for at in chaos.schedule:
                time.sleep(max(0.0, started + at - time.monotonic()))
                kill = chaos.kill(at)
                if kill.pid:
                    kills.append(f"{kill.container}/{kill.pid}")

        return run

    phases = []
    for name, load in (
        ("compose, few users", lambda during: ctx.load(name, spec(target), during=during)),
        (f"compose, {CLIENTS} clients", None),
    ):
        kills: list[str] = []
        if load is None:
            thread = threading.Thread(target=killing(kills), daemon=True)
            thread.start()
            result = ctx.wrk(name, f"{target}/cpu?iterations={ITERATIONS}", connections=CLIENTS, seconds=seconds)
            thread.join(seconds + 60)
        else:
            result = load(killing(kills))
        kinds = ", ".join(f"{n} {kind}" for kind, n in result.failures_by_error.items()) or "none"
        phases.append(
            Phase(
                name,
                result,
                note=f"{len(kills)} worker crash(es) (SIGKILL inside api containers, every "
                f"{every:g} s); failures: {kinds}",
                facts={"crashes": len(kills)},
            )
        )
    report.phases = phases
    few, crowd = phases
    report.claims = [
        _needs_crashes(few, claims.no_failures(BALANCED_CLAIM, _requests(few), _failures(few), what="GETs")),
        claims.skipped(DIRECT_CLAIM, "the compose stack is reached through its balancer only"),
        claims.skipped(CROWD_DIRECT_CLAIM, "the compose stack is reached through its balancer only"),
        _needs_crashes(
            crowd, claims.success_at_least(CROWD_BALANCED_CLAIM, _requests(crowd), _failures(crowd), CROWD_PCT)
        ),
    ]
    return report


def _requests(phase: Phase) -> int:
    return phase.result.requests if phase.result else 0


def _failures(phase: Phase) -> int:
    return phase.result.failures if phase.result else 0


def _needs_crashes(phase: Phase, claim: claims.Claim) -> claims.Claim:
    """A claim about surviving crashes proves nothing if none happened: then it fails, saying so."""
    if phase.facts.get("crashes", 0) > 0 or not claim.judged:
        return claim
    return claims.Claim(
        claim.name,
        claim.measured,
        claim.threshold,
        claims.Verdict.FAILS,
        f"no worker crashed during the phase, nothing was tested ({claim.text})",
        claim.unit,
    )
