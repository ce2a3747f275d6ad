"""``scalecube demo sessions``: memory vs Redis sessions × sticky off/on, several workers and replicas.

Each Locust user logs in once, then asks ``/session/me`` again and again; a check that
finds no session is a failure named ``lost session``. A memory session lives in the one
worker that created it: without sticky balancing most checks land elsewhere. A sticky
cookie pins a client to a *replica*, not to a worker — so the guides' "memory + sticky
loses nothing" is judged with one worker per replica. With two, it depends on the
balancer: a connection to a replica stays with one worker, so a balancer that keeps
reusing the client's connection keeps it on that worker too; that variant is shown with
what it measured, not judged.
"""

from __future__ import annotations

from loadtests.experiments import claims
from loadtests.experiments.context import DemoContext
from loadtests.experiments.locust_runner import LoadResult, LoadSpec
from loadtests.experiments.results import DemoReport, Phase
from loadtests.experiments.rigs import HOSTS

TITLE = "Sessions: memory vs Redis × sticky balancing off/on"
GUIDE = ("Sessions kept in a worker's memory are lost when the next request lands on another worker or "
         "container; a shared store (Redis) or sticky sessions fix it (the guides).")  # fmt: skip
LOST = "lost session"  # the name the locustfile gives a /session/me that found no session (a failure)
CHECK = "/session/me"
REPLICAS = 2
WORKERS = 2


def run(ctx: DemoContext) -> DemoReport:
    users, seconds = ctx.users(8), ctx.seconds(10)
    report = DemoReport("sessions", TITLE, GUIDE, {"users": users, "seconds": seconds, "replicas": REPLICAS,
                                                  "workers_per_replica": WORKERS, "smoke": ctx.smoke})  # fmt: skip
    # name -> (session backend, sticky, workers per replica, DNS service name, which claim)
    variants = {
        "memory, sticky off": ("memory", False, WORKERS, "mem", "loses"),
        "memory, sticky on, 1 worker/replica": ("memory", True, 1, "mem1", "keeps"),
        f"memory, sticky on, {WORKERS} workers/replica": ("memory", True, WORKERS, "mem", "shown"),
        "redis, sticky off": ("redis", False, WORKERS, "redis", "keeps"),
        "redis, sticky on": ("redis", True, WORKERS, "redis", "keeps"),
    }  # fmt: skip

    def spec(url: str) -> LoadSpec:
        return LoadSpec("SessionUser", url, users, seconds)

    if ctx.target:
        report.phases = [Phase(name, note="skipped: --target (the demo starts each variant)") for name in variants]
        report.phases.append(Phase("target", ctx.load("target", spec(ctx.target)), note=f"{ctx.target}, as it runs"))
        report.claims = [claims.skipped(_claim_name(name, kind), "the demo starts each variant; not with --target")
                         for name, (_, _, _, _, kind) in variants.items()]  # fmt: skip
        target = report.phases[-1].result
        assert target is not None
        report.notes.append(f"target: {lost(target):,} of {checked(target):,} session checks lost "
                            f"({100 * lost(target) / max(1, checked(target)):.1f}%)")  # fmt: skip
        return report

    with ctx.workdir() as workdir, ctx.rig(workdir, "stack") as rig:
        hosts = iter(HOSTS)
        services: dict[str, tuple[str, int]] = {}  # service -> (backend, workers)
        for backend, _, workers, service, _ in variants.values():
            services.setdefault(service, (backend, workers))
        for service, (backend, workers) in services.items():  # every replica first, so they start together
            for _ in range(REPLICAS):
                rig.replica(service, next(hosts), workers, env={"SESSION_BACKEND": backend})
        ctx.say(f"starting {REPLICAS * len(services)} replicas: {', '.join(services)}")
        rig.topology.wait_ready(timeout=120)
        for name, (backend, sticky, workers, service, _) in variants.items():
            balancer = rig.balancer(service, REPLICAS, sticky=sticky)
            result = ctx.load(name, spec(balancer.url))
            report.phases.append(Phase(name, result, replica_of=rig.watcher.replica_of(result.served_by),
                                       note=f"{REPLICAS} replicas × {workers} worker(s), {backend} sessions, "
                                            f"{balancer.kind}{' + sticky cookie' if sticky else ''}"))  # fmt: skip
            balancer.stop()  # one balancer at a time: fewer processes sharing the cores

    for phase, (_, _, _, _, kind) in zip(report.phases, variants.values(), strict=True):
        result = phase.result
        assert result is not None
        name = _claim_name(phase.name, kind)
        if kind == "loses":
            report.claims.append(claims.loses_sessions(name, checked(result), lost(result)))
        elif kind == "keeps":
            report.claims.append(claims.loses_no_sessions(name, checked(result), lost(result)))
        else:
            report.claims.append(claims.loses_sessions(name, checked(result), lost(result), judge=False,
                                                       why_not="shown, not the guides' claim"))  # fmt: skip
    report.notes.append("A sticky cookie pins a client to a replica, not to a worker: the guides' memory + sticky claim "
                        f"is judged with 1 worker per replica. With {WORKERS}, a session survives only while the "
                        "balancer reuses a connection that a worker holds (the cluster hands each connection to one "
                        "worker): shown with what it measured, not judged.")  # fmt: skip
    report.notes.append("Redis sessions need no stickiness: any worker of any replica finds them.")
    return report


def _claim_name(variant: str, kind: str) -> str:
    return f"{variant}: {'loses sessions' if kind != 'keeps' else 'loses none'}"


def checked(result: LoadResult) -> int:
    """Requests that checked the session: the ``/session/me`` that found it, and those renamed ``lost session``."""
    return result.requests_by_name.get(CHECK, 0) + result.requests_by_name.get(LOST, 0)


def lost(result: LoadResult) -> int:
    return result.failures_named(LOST)
