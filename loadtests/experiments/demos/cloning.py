"""``scalecube demo cloning``: one process vs a per-core cluster vs 3 clusters behind the balancer.

Same ``/cpu`` load on each, one after the other in one run. The claim compares the
cluster to one process: CPU-bound work served from the event loop only scales with
processes. The 3 replicas share this machine's cores with everything else, so they show
how the balancer spreads requests, not more throughput (that needs more machines).
"""

from __future__ import annotations

from loadtests.experiments import claims
from loadtests.experiments.context import DemoContext
from loadtests.experiments.locust_runner import LoadSpec
from loadtests.experiments.results import DemoReport, Phase
from loadtests.experiments.rigs import HOSTS, Rig

TITLE = "Cloning: one process vs a cluster per core vs 3 clusters behind a balancer"
GUIDE = ("A cluster with one worker per core serves CPU-bound requests several times faster than one "
         "process: ×3.5 on 8 cores, ×4 on 4 cores (the guides). Here: ≥ 1.6× on 2 cores.")  # fmt: skip
RATIO = 1.6
REPLICAS = 3
# ~20 ms of pure Python per request: the work dominates, Locust's own CPU (same cores) barely counts.
ITERATIONS = 600_000
SMOKE_ITERATIONS = 60_000
CLAIM = f"cluster ≥ {RATIO:g}× one process"


def run(ctx: DemoContext) -> DemoReport:
    from cluster.cpus import available_cpus

    cores = available_cpus()
    users, seconds = ctx.users(16), ctx.seconds(15)
    iterations = SMOKE_ITERATIONS if ctx.smoke else ITERATIONS
    report = DemoReport("cloning", TITLE, GUIDE, {"users": users, "seconds": seconds, "cores": cores,
                                                  "iterations": iterations, "smoke": ctx.smoke})  # fmt: skip

    def spec(host: str) -> LoadSpec:
        return LoadSpec("CloningUser", host, users, seconds, tags=("cpu",),
                        env={"SCALECUBE_CPU_ITERATIONS": str(iterations)})  # fmt: skip

    one, cluster_name = "1 process", f"cluster ({cores} workers)"
    if ctx.target:
        phase = Phase("target", ctx.load("target", spec(ctx.target)), note=f"{ctx.target}, as it runs")
        report.phases = [Phase(one, note="skipped: --target (needs local processes)"),
                         Phase(cluster_name, note="skipped: --target (needs local processes)"), phase]  # fmt: skip
        report.claims = [claims.skipped(CLAIM, "needs a single process and a cluster started by the demo "
                                               "(not with --target)", RATIO, "×")]  # fmt: skip
        return report

    with ctx.workdir() as workdir:
        with ctx.rig(workdir, "single") as rig:
            ctx.say("starting one api process (uvicorn, no cluster)")
            url = rig.single_process()
            report.phases.append(_measured(ctx, rig, one, spec(url), "plain uvicorn: one process, one core"))
        with ctx.rig(workdir, "cluster") as rig:
            ctx.say(f"starting a cluster of {cores} workers")
            cluster = rig.cluster(cores)
            report.phases.append(_measured(ctx, rig, cluster_name, spec(cluster.url),
                                           f"scalecube serve --workers {cores}"))  # fmt: skip
        with ctx.rig(workdir, "replicas") as rig:
            per_replica = 1 if ctx.smoke else cores  # smoke: fewer processes to start, same picture
            rig.replicas("api", HOSTS[:REPLICAS], per_replica)
            balancer = rig.balancer("api", REPLICAS)
            ctx.say(f"started {REPLICAS} clusters × {per_replica} workers behind {balancer.kind}")
            name = f"{REPLICAS} clusters + {balancer.kind}"
            report.phases.append(_measured(ctx, rig, name, spec(balancer.url),
                                           f"{REPLICAS} replicas × {per_replica} workers, same {cores} cores"))  # fmt: skip

    single, many = report.result(one), report.result(cluster_name)
    assert single is not None and many is not None
    judge, why_not = not ctx.smoke and cores >= 2, ("--smoke: too little load to measure throughput" if ctx.smoke
                                                    else f"needs ≥ 2 cores, this machine gives {cores}")  # fmt: skip
    report.claims = [claims.ratio_at_least(CLAIM, many.rps, single.rps, RATIO, what="cluster", baseline_what="one process",
                                           judge=judge, why_not=why_not)]  # fmt: skip
    balanced = report.phases[-1].result
    if balanced is not None and single.rps > 0:
        report.notes.append(f"{report.phases[-1].name}: {balanced.rps / single.rps:.2f}× one process — "
                            f"{REPLICAS} replicas on the same {cores} cores add no CPU; across machines each adds its own.")  # fmt: skip
    report.notes.append("Locust runs on the same cores as the servers; other work on the machine makes the numbers noisy: "
                        "read the ratios, measured side by side in one run, not the absolute req/s.")  # fmt: skip
    return report


def _measured(ctx: DemoContext, rig: Rig, name: str, spec: LoadSpec, note: str) -> Phase:
    result = ctx.load(name, spec)
    return Phase(name, result, note=note, replica_of=rig.watcher.replica_of(result.served_by))
