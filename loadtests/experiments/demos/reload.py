"""``scalecube demo reload``: replace every worker, then every replica, under load — and drop nothing.

Workers: SIGUSR2 to the cluster master, which replaces its workers one at a time (a new one
listening before the old one drains). Replicas: what a rolling restart of containers does,
with local processes — each replica gets a successor on a new loopback address (a new
container's new IP), published in the DNS the balancer reads; once the balancer sees it up,
the old one is withdrawn and, once out of rotation, stopped with SIGTERM (it drains).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

from infra.local.processes import ClusterProcess, wait_until
from loadtests.experiments import claims
from loadtests.experiments.context import DemoContext
from loadtests.experiments.locust_runner import LoadSpec
from loadtests.experiments.results import DemoReport, Phase
from loadtests.experiments.rigs import HOSTS, Balancer, Rig, backend_up

TITLE = "Zero-downtime: rolling reload of every worker, rolling restart of every replica"
GUIDE = (
    "A rolling restart replaces the workers one at a time, so the application never stops serving: "
    "zero failed requests during a reload (pm2 reload; the cluster's SIGUSR2)."
)
ITERATIONS = 90_000
REPLICAS = 2
STEP_TIMEOUT = 60.0  # one worker or replica replaced, on a busy machine
WORKERS_CLAIM = "0 failed requests, rolling reload of every worker"
REPLICAS_CLAIM = "0 failed requests, rolling restart of every replica"
CONTAINERS_CLAIM = "0 failed requests, rolling restart of every api container"


def run(ctx: DemoContext) -> DemoReport:
    from cluster.cpus import available_cpus

    workers = available_cpus()
    users, seconds = ctx.users(8), ctx.seconds(15)
    lead = tail = seconds / 3  # load before and after the replacing
    report = DemoReport(
        "reload",
        TITLE,
        GUIDE,
        {"users": users, "seconds": seconds, "workers": workers, "replicas": REPLICAS, "smoke": ctx.smoke},
    )
    workers_name, replicas_name = f"reload {workers} workers (SIGUSR2)", f"restart {REPLICAS} replicas"

    def spec(url: str) -> LoadSpec:  # the run ends `tail` seconds after the replacing: the cap is generous
        return LoadSpec(
            "CloningUser",
            url,
            users,
            lead + tail + 4 * STEP_TIMEOUT,
            tags=("cpu",),
            env={"SCALECUBE_CPU_ITERATIONS": str(ITERATIONS)},
        )

    if ctx.target:
        reason = "needs processes the demo started (to signal and replace them); not with --target"
        report.phases = [
            Phase(workers_name, note=f"skipped: {reason}"),
            Phase(replicas_name, note=f"skipped: {reason}"),
        ]
        report.claims = [claims.skipped(WORKERS_CLAIM, reason, 0), claims.skipped(REPLICAS_CLAIM, reason, 0)]
        if ctx.docker_project:
            report.phases.append(restart_containers(ctx, ctx.docker_project, spec(ctx.target), lead, tail))
            report.claims.append(
                _all_replaced(report.phases[-1], int(report.phases[-1].facts["containers"]), CONTAINERS_CLAIM)
            )
        return report

    with ctx.workdir() as workdir:
        with ctx.rig(workdir, "workers") as rig:
            ctx.say(f"starting a cluster of {workers} workers; SIGUSR2 after {lead:.0f}s of load")
            cluster = rig.cluster(workers)
            replaced: list[int] = []
            result = ctx.load(
                workers_name,
                spec(cluster.url),
                expected=lead + tail + 2 * workers,
                during=_after(lead, lambda: replaced.append(reload_workers(cluster))),
                end_after_during=tail,
            )
            done = replaced[0] if replaced else 0
            report.phases.append(
                Phase(
                    workers_name,
                    result,
                    replica_of=rig.watcher.replica_of(result.served_by),
                    note=f"{done} of {workers} workers replaced",
                    facts={"replaced": done},
                )
            )
        with ctx.rig(workdir, "replicas") as rig:
            per_replica = 1 if ctx.smoke else workers  # smoke: fewer processes to start, same picture
            rig.replicas("api", HOSTS[:REPLICAS], per_replica)
            balancer = rig.balancer("api", REPLICAS)
            ctx.say(f"started {REPLICAS} replicas behind {balancer.kind}; replacing each after {lead:.0f}s of load")
            restarted: list[int] = []
            result = ctx.load(
                replicas_name,
                spec(balancer.url),
                expected=lead + tail + 8 * REPLICAS,
                during=_after(lead, lambda: restarted.append(restart_replicas(rig, balancer, per_replica))),
                end_after_during=tail,
            )
            done = restarted[0] if restarted else 0
            report.phases.append(
                Phase(
                    replicas_name,
                    result,
                    replica_of=rig.watcher.replica_of(result.served_by),
                    note=f"{done} of {REPLICAS} replicas replaced behind {balancer.kind} (local "
                    "processes: a successor on a new address, as a new container's IP)",
                    facts={"replaced": done},
                )
            )

    report.claims = [
        _all_replaced(report.phases[0], workers, WORKERS_CLAIM),
        _all_replaced(report.phases[1], REPLICAS, REPLICAS_CLAIM),
    ]
    report.notes.append(
        "Throughput dips while a replacement imports the app (it shares the same cores); "
        "what must not happen is a failed request."
    )
    return report


def _after(seconds: float, action: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        time.sleep(seconds)
        action()

    return run


def reload_workers(cluster: ClusterProcess) -> int:
    """SIGUSR2 to the master; wait until every worker is a new one. Returns how many were replaced."""
    before = cluster.listening_pids()
    cluster.signal(signal.SIGUSR2)

    def finished() -> bool:
        status = cluster.status()
        now = {w["pid"] for w in status["workers"] if w["state"] == "listening"}
        return not status["master"]["reloading"] and len(now) == len(before) and not now & before

    try:
        wait_until(finished, STEP_TIMEOUT * len(before), interval=0.2, what="the rolling reload")
    except TimeoutError:
        pass  # counted below: the claim fails with how many were replaced
    return len(before - cluster.listening_pids())


def restart_replicas(rig: Rig, balancer: Balancer, workers: int) -> int:
    """Replace each replica by a successor on a free address, one at a time; returns how many were replaced."""
    topology = rig.topology
    old = [host for host in HOSTS if topology.records.get("api") and host in topology.records["api"]]
    spare = [host for host in HOSTS if host not in old]
    replaced = 0
    for host, successor in zip(old, spare, strict=False):
        try:
            rig.replica("api", successor, workers, publish=False).wait_ready(timeout=STEP_TIMEOUT)
            topology.publish("api", successor)
            wait_until(
                lambda: backend_up(balancer, f"{successor}:{topology.port}"),
                STEP_TIMEOUT,
                interval=0.2,
                what=f"{balancer.kind} to send traffic to {successor}",
            )
            topology.withdraw("api", host)
            wait_until(
                lambda: not backend_up(balancer, f"{host}:{topology.port}"),
                STEP_TIMEOUT,
                interval=0.2,
                what=f"{balancer.kind} to stop sending traffic to {host}",
            )
        except TimeoutError:
            return replaced
        topology.cluster("api", host).stop()  # SIGTERM: the master drains its workers, then exits
        replaced += 1
    return replaced


def restart_containers(ctx: DemoContext, project_name: str, spec: LoadSpec, lead: float, tail: float) -> Phase:
    """--docker: `scalecube docker rolling-restart api` on the compose stack, under the same load."""
    from infra.docker.ops.project import Project
    from infra.docker.ops.rolling import RollingRestart
    from infra.paths import REPO

    project = Project.connect(REPO, project_name)
    containers = len(project.containers("api"))
    name = f"restart {containers} api containers (compose)"
    replaced: list[int] = []

    def restart() -> None:
        replaced.append(len(RollingRestart(project, "api", say=ctx.say).run()))

    ctx.say(f"rolling restart of {containers} api containers of '{project_name}' after {lead:.0f}s of load")
    result = ctx.load(
        name, spec, expected=lead + tail + 15 * containers, during=_after(lead, restart), end_after_during=tail
    )
    done = replaced[0] if replaced else 0
    return Phase(
        name,
        result,
        note=f"{done} of {containers} containers replaced (scalecube docker rolling-restart)",
        facts={"replaced": done, "containers": containers},
    )


def _all_replaced(phase: Phase, expected: int, name: str) -> claims.Claim:
    result = phase.result
    claim = claims.no_failures(name, result.requests if result else 0, result.failures if result else 0)
    replaced = int(phase.facts.get("replaced", 0))
    if replaced == expected or not claim.judged:
        return claim
    return claims.Claim(
        name,
        claim.measured,
        0,
        claims.Verdict.FAILS,
        f"only {replaced} of {expected} were replaced ({claim.text})",
        claim.unit,
    )
