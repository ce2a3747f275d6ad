"""``scalecube demo cloning``: one process vs a per-core cluster vs 3 clusters behind the balancer.

Same ``/cpu`` load on each, one after the other in one run. The claim compares the
cluster to one process: CPU-bound work served from the event loop only scales with
processes. The 3 replicas share this machine's cores with everything else, so they show
how the balancer spreads requests, not more throughput (that needs more machines): judged is
that every clone serves — each worker of the cluster, each replica behind the balancer.

``--docker``: the compose stack's api scaled to 1 container, then to 3 (or the count it runs, if
more), the same load through its balancer each time; every container must serve and the one
container's cluster must use all its workers. The stack goes back to the count the demo found.
"""

from __future__ import annotations

from collections.abc import Callable

from loadtests.experiments import claims
from loadtests.experiments.context import DemoContext
from loadtests.experiments.locust_runner import LoadSpec
from loadtests.experiments.results import DemoReport, Phase
from loadtests.experiments.rigs import HOSTS, Rig

TITLE = "Cloning: one process vs a cluster per core vs 3 clusters behind a balancer"
GUIDE = (
    "A cluster with one worker per core serves CPU-bound requests several times faster than one "
    "process: ×3.5 on 8 cores, ×4 on 4 cores (the guides). Here: ≥ 1.6× on 2 cores."
)
RATIO = 1.6
REPLICAS = 3
# ~20 ms of pure Python per request: the work dominates, Locust's own CPU (same cores) barely counts.
ITERATIONS = 600_000
SMOKE_ITERATIONS = 60_000
CLAIM = f"cluster ≥ {RATIO:g}× one process"
WORKERS_CLAIM = "the cluster spreads requests over all its workers"
REPLICAS_CLAIM = "the balancer spreads requests over every replica"
CONTAINER_WORKERS_CLAIM = "one api container: its cluster spreads requests over all its workers"
CONTAINERS_CLAIM = "the balancer spreads requests over every api container"
CONTAINERS_RATIO_CLAIM = f"N api containers ≥ {RATIO:g}× one, given the cores"
FAILED_CLAIM = "0 failed requests, 1 and N api containers"


def run(ctx: DemoContext) -> DemoReport:
    from cluster.cpus import available_cpus

    cores = available_cpus()
    users, seconds = ctx.users(16), ctx.seconds(15)
    iterations = SMOKE_ITERATIONS if ctx.smoke else ITERATIONS
    report = DemoReport(
        "cloning",
        TITLE,
        GUIDE,
        {"users": users, "seconds": seconds, "cores": cores, "iterations": iterations, "smoke": ctx.smoke},
    )

    def spec(host: str) -> LoadSpec:
        return LoadSpec(
            "CloningUser", host, users, seconds, tags=("cpu",), env={"SCALECUBE_CPU_ITERATIONS": str(iterations)}
        )

    one, cluster_name = "1 process", f"cluster ({cores} workers)"
    if ctx.docker_project:
        return _against_compose(ctx, report, spec, cores)
    if ctx.target:
        phase = Phase("target", ctx.load("target", spec(ctx.target)), note=f"{ctx.target}, as it runs")
        report.phases = [
            Phase(one, note="skipped: --target (needs local processes)"),
            Phase(cluster_name, note="skipped: --target (needs local processes)"),
            phase,
        ]
        report.claims = [
            claims.skipped(
                CLAIM, "needs a single process and a cluster started by the demo (not with --target)", RATIO, "×"
            )
        ]
        return report

    with ctx.workdir() as workdir:
        with ctx.rig(workdir, "single") as rig:
            ctx.say("starting one api process (uvicorn, no cluster)")
            url = rig.single_process()
            report.phases.append(_measured(ctx, rig, one, spec(url), "plain uvicorn: one process, one core"))
        with ctx.rig(workdir, "cluster") as rig:
            ctx.say(f"starting a cluster of {cores} workers")
            cluster = rig.cluster(cores)
            report.phases.append(
                _measured(ctx, rig, cluster_name, spec(cluster.url), f"scalecube serve --workers {cores}")
            )
        with ctx.rig(workdir, "replicas") as rig:
            per_replica = 1 if ctx.smoke else cores  # smoke: fewer processes to start, same picture
            rig.replicas("api", HOSTS[:REPLICAS], per_replica)
            balancer = rig.balancer("api", REPLICAS)
            ctx.say(f"started {REPLICAS} clusters × {per_replica} workers behind {balancer.kind}")
            name = f"{REPLICAS} clusters + {balancer.kind}"
            report.phases.append(
                _measured(
                    ctx,
                    rig,
                    name,
                    spec(balancer.url),
                    f"{REPLICAS} replicas × {per_replica} workers, same {cores} cores",
                )
            )

    single, many = report.result(one), report.result(cluster_name)
    assert single is not None and many is not None
    judge, why_not = (
        not ctx.smoke and cores >= 2,
        (
            "--smoke: too little load to measure throughput"
            if ctx.smoke
            else f"needs ≥ 2 cores, this machine gives {cores}"
        ),
    )
    balanced = report.phases[-1].result
    report.claims = [
        claims.ratio_at_least(
            CLAIM,
            many.rps,
            single.rps,
            RATIO,
            what="cluster",
            baseline_what="one process",
            judge=judge,
            why_not=why_not,
        ),
        claims.every_one_serves(
            WORKERS_CLAIM, [served.rsplit("/", 1)[-1] for served in many.served_by], cores, "workers", many.requests
        ),
        claims.every_one_serves(
            REPLICAS_CLAIM,
            [name for name, _ in report.phases[-1].per_container() if name in HOSTS[:REPLICAS]],
            REPLICAS,
            "replicas",
            balanced.requests if balanced else 0,
        ),
    ]
    if balanced is not None and single.rps > 0:
        report.notes.append(
            f"{report.phases[-1].name}: {balanced.rps / single.rps:.2f}× one process — "
            f"{REPLICAS} replicas on the same {cores} cores add no CPU; across machines each adds its own."
        )
    report.notes.append(
        "Locust runs on the same cores as the servers; other work on the machine makes the numbers noisy: "
        "read the ratios, measured side by side in one run, not the absolute req/s."
    )
    return report


def _measured(ctx: DemoContext, rig: Rig, name: str, spec: LoadSpec, note: str) -> Phase:
    result = ctx.load(name, spec)
    return Phase(name, result, note=note, replica_of=rig.watcher.replica_of(result.served_by))


def _against_compose(ctx: DemoContext, report: DemoReport, spec: Callable[[str], LoadSpec], cores: int) -> DemoReport:
    """The compose stack's api at 1 container, then at N (3, or more if it ran more), through its balancer."""
    from loadtests.experiments.docker_stack import DockerStack

    stack = DockerStack.of(ctx)
    stack.require("api", "lb", why="the demo scales the api behind the balancer")
    assert ctx.target is not None
    phases: dict[int, Phase] = {}
    with stack.restoring("api") as found:
        many = max(found, REPLICAS)
        for count in (1, many):
            stack.scale("api", count)
            stack.wait_in_balancer("api", count)
            hosts = stack.hostnames("api")
            workers = stack.workers("api")
            name = f"compose, {count} api container{'s' if count > 1 else ''}"
            result = ctx.load(name, spec(ctx.target))
            phases[count] = Phase(
                name,
                result,
                replica_of={
                    served: hosts[served.rsplit("/", 1)[0]]
                    for served in result.served_by
                    if served.rsplit("/", 1)[0] in hosts
                },
                note=f"{count} × ({', '.join(f'{n} workers' for n in workers.values())}) behind the stack's balancer",
                facts={"containers": count, "workers": sum(workers.values())},
            )
            phases[count].facts["workers_per_container"] = min(workers.values() or [0])
    report.phases = [phases[1], phases[many]]
    report.settings["containers"] = many
    single, several = phases[1], phases[many]
    assert single.result is not None and several.result is not None
    per_container = int(single.facts["workers_per_container"])
    judge = not ctx.smoke and cores >= many * per_container
    why_not = (
        "--smoke: too little load to measure throughput"
        if ctx.smoke
        else f"each api container runs {per_container} workers, one per core of this machine's {cores}: "
        f"{many} containers on the same cores add no CPU (across machines each adds its own)"
    )
    one_pids = [served.rsplit("/", 1)[-1] for served in single.result.served_by]
    failed = single.result.failures + several.result.failures
    report.claims = [
        claims.every_one_serves(CONTAINER_WORKERS_CLAIM, one_pids, per_container, "workers", single.result.requests),
        claims.every_one_serves(
            CONTAINERS_CLAIM, several.replica_of.values(), many, "containers", several.result.requests
        ),
        claims.no_failures(FAILED_CLAIM, single.result.requests + several.result.requests, failed),
        claims.ratio_at_least(
            CONTAINERS_RATIO_CLAIM,
            several.result.rps,
            single.result.rps,
            RATIO,
            what=f"{many} containers",
            baseline_what="1 container",
            judge=judge,
            why_not=why_not,
        ),
    ]
    report.notes.append(
        f"The stack's api was scaled with docker compose up --scale api=N through the Docker SDK "
        f"(scalecube docker scale), then back to the {found} container(s) it ran."
    )
    return report
