"""``scalecube demo sessions``: memory vs Redis sessions × sticky off/on, several workers and replicas.

Each Locust user logs in once, then asks ``/session/me`` again and again; a check that
finds no session is a failure named ``lost session``. A memory session lives in the one
worker that created it: without sticky balancing most checks land elsewhere. A sticky
cookie pins a client to a *replica*, not to a worker — so the guides' "memory + sticky
loses nothing" is judged with one worker per replica. With two, it depends on the
balancer: a connection to a replica stays with one worker, so a balancer that keeps
reusing the client's connection keeps it on that worker too; that variant is shown with
what it measured, not judged.

``--docker``: the compose stack runs one of these variants (its api's ``SESSION_BACKEND``, its
balancer's ``LB_STICKY``; by default Redis, not sticky): that one is judged under the same load
through its balancer, and its checks must have reached more than one container (else nothing was
tested); the others are skipped, saying how to start the stack to judge them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from loadtests.experiments import claims
from loadtests.experiments.context import DemoContext
from loadtests.experiments.locust_runner import LoadResult, LoadSpec
from loadtests.experiments.results import DemoReport, Phase
from loadtests.experiments.rigs import HOSTS

TITLE = "Sessions: memory vs Redis × sticky balancing off/on"
GUIDE = (
    "Sessions kept in a worker's memory are lost when the next request lands on another worker or "
    "container; a shared store (Redis) or sticky sessions fix it (the guides)."
)
LOST = "lost session"  # the name the locustfile gives a /session/me that found no session (a failure)
CHECK = "/session/me"
AUTH_PASSWORDS_ENV = "SCALECUBE_AUTH_PASSWORDS"  # loadtests/locust/options.py: register, then log in with a password
REPLICAS = 2
WORKERS = 2


def run(ctx: DemoContext) -> DemoReport:
    users, seconds = ctx.users(8), ctx.seconds(10)
    report = DemoReport(
        "sessions",
        TITLE,
        GUIDE,
        {"users": users, "seconds": seconds, "replicas": REPLICAS, "workers_per_replica": WORKERS, "smoke": ctx.smoke},
    )
    # name -> (session backend, sticky, workers per replica, DNS service name, which claim)
    variants = {
        "memory, sticky off": ("memory", False, WORKERS, "mem", "loses"),
        "memory, sticky on, 1 worker/replica": ("memory", True, 1, "mem1", "keeps"),
        f"memory, sticky on, {WORKERS} workers/replica": ("memory", True, WORKERS, "mem", "shown"),
        "redis, sticky off": ("redis", False, WORKERS, "redis", "keeps"),
        "redis, sticky on": ("redis", True, WORKERS, "redis", "keeps"),
    }

    def spec(url: str) -> LoadSpec:
        return LoadSpec("SessionUser", url, users, seconds)

    if ctx.docker_project:
        return _against_compose(ctx, report, variants, spec)
    if ctx.target:
        report.phases = [Phase(name, note="skipped: --target (the demo starts each variant)") for name in variants]
        report.phases.append(Phase("target", ctx.load("target", spec(ctx.target)), note=f"{ctx.target}, as it runs"))
        report.claims = [
            claims.skipped(_claim_name(name, kind), "the demo starts each variant; not with --target")
            for name, (_, _, _, _, kind) in variants.items()
        ]
        target = report.phases[-1].result
        assert target is not None
        report.notes.append(
            f"target: {lost(target):,} of {checked(target):,} session checks lost "
            f"({100 * lost(target) / max(1, checked(target)):.1f}%)"
        )
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
            report.phases.append(
                Phase(
                    name,
                    result,
                    replica_of=rig.watcher.replica_of(result.served_by),
                    note=f"{REPLICAS} replicas × {workers} worker(s), {backend} sessions, "
                    f"{balancer.kind}{' + sticky cookie' if sticky else ''}",
                )
            )
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
            report.claims.append(
                claims.loses_sessions(
                    name, checked(result), lost(result), judge=False, why_not="shown, not the guides' claim"
                )
            )
    report.notes.append(
        "A sticky cookie pins a client to a replica, not to a worker: the guides' memory + sticky claim "
        f"is judged with 1 worker per replica. With {WORKERS}, a session survives only while the "
        "balancer reuses a connection that a worker holds (the cluster hands each connection to one "
        "worker): shown with what it measured, not judged."
    )
    report.notes.append("Redis sessions need no stickiness: any worker of any replica finds them.")
    return report


def _claim_name(variant: str, kind: str) -> str:
    return f"{variant}: {'loses sessions' if kind != 'keeps' else 'loses none'}"


def checked(result: LoadResult) -> int:
    """Requests that checked the session: the ``/session/me`` that found it, and those renamed ``lost session``."""
    return result.requests_by_name.get(CHECK, 0) + result.requests_by_name.get(LOST, 0)


def lost(result: LoadResult) -> int:
    return result.failures_named(LOST)


Variants = dict[str, tuple[str, bool, int, str, str]]


def _against_compose(
    ctx: DemoContext, report: DemoReport, variants: Variants, spec: Callable[[str], LoadSpec]
) -> DemoReport:
    """The variant the compose stack runs, judged through its balancer; the others skipped with how to run them."""
    from loadtests.experiments.docker_stack import DockerStack

    stack = DockerStack.of(ctx)
    stack.require("api", "lb", "auth", why="sessions are made by logging in through the api (auth checks the password)")
    assert ctx.target is not None
    from services.common.settings import ServiceSettings

    backend = stack.env("api").get("SESSION_BACKEND") or ServiceSettings.model_fields["session_backend"].default
    sticky = stack.env("lb").get("LB_STICKY") == "1"  # lb/haproxy/haproxy.cfg: 0 or 1
    hosts = stack.hostnames("api")
    workers = min(stack.workers("api").values() or [0])
    running = next(
        (
            name
            for name, (b, s, w, _, _) in variants.items()
            if b == backend and s == sticky and (backend == "redis" or not sticky or (w == 1) == (workers == 1))
        ),
        None,
    )
    if running is None:
        raise RuntimeError(
            f"--docker: the compose stack's api runs SESSION_BACKEND={backend!r}: no variant of the demo"
        )
    how = f"the compose stack runs {backend} sessions, LB_STICKY={int(sticky)}, {len(hosts)} api containers × {workers} workers"
    load = spec(ctx.target)
    if stack.env("api").get("AUTH_URL"):  # the api checks passwords at auth: each user registers first
        load = replace(load, env={**load.env, AUTH_PASSWORDS_ENV: "1"})
    result = ctx.load(f"compose: {running}", load)
    replica_of = {
        served: hosts[served.rsplit("/", 1)[0]] for served in result.served_by if served.rsplit("/", 1)[0] in hosts
    }
    phase = Phase(f"compose: {running}", result, replica_of=replica_of, note=how)
    report.phases = [phase]
    report.settings.update(replicas=len(hosts), workers_per_replica=workers)
    for name, (_, _, _, _, kind) in variants.items():
        claim_name = _claim_name(name, kind)
        if name != running:
            report.claims.append(
                claims.skipped(
                    claim_name,
                    f"{how}; to judge this one, start it as this variant "
                    "(SESSION_BACKEND=memory|redis, LB_STICKY=0|1, "
                    "API_WORKERS=1|N docker compose up -d)",
                )
            )
        elif kind == "loses":
            report.claims.append(claims.loses_sessions(claim_name, checked(result), lost(result)))
        elif kind == "keeps":
            report.claims.append(
                _across(
                    claims.loses_no_sessions(claim_name, checked(result), lost(result)),
                    set(replica_of.values()),
                    sticky,
                )
            )
        else:
            report.claims.append(
                claims.loses_sessions(
                    claim_name, checked(result), lost(result), judge=False, why_not="shown, not the guides' claim"
                )
            )
    if backend == "redis" and not sticky:
        report.claims.append(_valid_via_all(ctx.target, hosts))
    else:
        report.claims.append(
            claims.skipped(
                VIA_ALL_CLAIM,
                f"{how}: only a shared store without a sticky cookie lets one client's requests reach every container",
            )
        )
    report.notes.append(
        f"Only the variant the stack runs is judged ({how}); the others need the stack started otherwise."
    )
    return report


VIA_ALL_CLAIM = "a session made through one container is valid through every one"
VIA_ALL_PASSWORD = "correct-horse-battery-staple"


def _valid_via_all(url: str, hosts: dict[str, str]) -> claims.Claim:
    """One client logs in through the balancer once, then asks ``/session/me`` on a new connection each time
    until every api container has answered (bounded): each must know the session."""
    import uuid

    import httpx

    user = f"demo-{uuid.uuid4().hex[:10]}"
    answered: dict[str, int] = {}  # container -> status of its answers (the last one)
    with httpx.Client(base_url=url, timeout=10) as http:
        registered = http.post("/auth/register", json={"username": user, "password": VIA_ALL_PASSWORD})
        login = http.post("/session/login", json={"user": user, "password": VIA_ALL_PASSWORD})
        if registered.status_code != 201 or login.status_code != 200:
            return claims.Claim(
                VIA_ALL_CLAIM,
                None,
                len(hosts),
                claims.Verdict.FAILS,
                f"could not log in through the balancer: register {registered.status_code}, login "
                f"{login.status_code} {login.text[:120]}",
                "containers",
            )
        wrong: list[str] = []
        for _ in range(20 * len(hosts)):
            me = http.get("/session/me", headers={"Connection": "close"})
            host = hosts.get(me.headers.get("x-served-by", "?").split("/")[0], "?")
            answered[host] = me.status_code
            if me.status_code != 200 or me.json().get("user") != user:
                wrong.append(f"{host}: {me.status_code}")
            if set(hosts.values()) <= set(answered):
                break
    valid = sorted(host for host, status in answered.items() if status == 200 and host != "?")
    ok = not wrong and set(valid) == set(hosts.values())
    text = (
        f"logged in once, then /session/me on new connections until {len(answered)} of {len(hosts)} containers "
        f"answered: valid via {', '.join(valid) or 'none'}" + (f"; not: {', '.join(wrong[:5])}" if wrong else "")
    )
    return claims.Claim(
        VIA_ALL_CLAIM, len(valid), len(hosts), claims.Verdict.HOLDS if ok else claims.Verdict.FAILS, text, "containers"
    )


def _across(claim: claims.Claim, containers: set[str], sticky: bool) -> claims.Claim:
    """Without a sticky cookie, a session that is never lost was read through more than one container: if one
    container answered everything, sharing was not tested and the claim fails, saying so."""
    if sticky or not claim.judged or len(containers) > 1:
        return claim
    return claims.Claim(
        claim.name,
        claim.measured,
        claim.threshold,
        claims.Verdict.FAILS,
        f"every request went to {', '.join(sorted(containers)) or 'no container'}: no session was "
        f"read through another container ({claim.text})",
        claim.unit,
    )
