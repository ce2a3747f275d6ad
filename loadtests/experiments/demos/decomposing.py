"""``scalecube demo decomposing``: auth scaled on its own, apart from the api.

Logging in is expensive on purpose (argon2, ~20 ms of CPU per hash), so the auth service is
its own cluster with its own replicas behind the balancer: login throughput with 1 replica,
then with 2 (1 worker and 1 hashing thread each: one core each). While 2 auth replicas are
saturated with logins, the api — a separate process — keeps answering ``GET /`` quickly:
what a monolith hashing passwords in its own workers could not promise.

``--docker``: the compose stack's auth scaled to 1 container, then 2, behind its balancer (the
``/auth/`` route), then back to the count the demo found, under the same logins: the stack's login
limits stay on at their defaults (they count failed logins only). Judged: both auth containers
serve, and the api's ``GET /`` through the same balancer keeps its p95 meanwhile; the throughput
ratio only when the containers have cores of their own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from loadtests.experiments import claims
from loadtests.experiments.context import DemoContext
from loadtests.experiments.locust_runner import LoadResult, LoadSpec, run_load
from loadtests.experiments.results import DemoReport, Phase
from loadtests.experiments.rigs import HOSTS, READY_TIMEOUT

TITLE = "Decomposing: the auth service scaled on its own; the api unaffected by its load"
GUIDE = (
    "Split a costly function (password hashing) into its own service and scale it apart: more auth replicas, "
    "more logins per second, while the rest of the app keeps answering as before."
)
AUTH_APP = "services.auth.app:app"
LOGIN = "/auth/login"
RATIO = 1.3
P95_MS = 500.0  # generous: GET / takes a few ms on an idle machine
LOGIN_CLAIM = f"login throughput, 2 auth replicas ≥ {RATIO:g}× 1"
API_CLAIM = f"the api answers GET / with p95 ≤ {P95_MS:g} ms while auth is saturated"
# The login limits stay at their defaults: they count failed logins only, and Locust's logins succeed.
AUTH_ENV = {
    "HASH_THREADS": "1",  # one hashing thread per worker: a 1-worker replica uses one core, as on its own machine
}
API_USERS = 4  # visitors of the api's home page, each waiting 50-250 ms between requests (the locustfile's default)


def run(ctx: DemoContext) -> DemoReport:
    from cluster.cpus import available_cpus

    cores = available_cpus()
    users, seconds = ctx.users(8), ctx.seconds(15)
    report = DemoReport(
        "decomposing",
        TITLE,
        GUIDE,
        {"users": users, "seconds": seconds, "cores": cores, "api_users": API_USERS, "smoke": ctx.smoke},
    )
    one, two = "auth × 1 replica", "auth × 2 replicas"

    def auth_spec(url: str) -> LoadSpec:
        return LoadSpec("AuthUser", url, users, seconds, tags=("auth-login",))

    def api_spec(url: str) -> LoadSpec:
        return LoadSpec("CloningUser", url, API_USERS, seconds, tags=("root",))

    if ctx.docker_project:
        return _against_compose(ctx, report, api_spec, cores, users, seconds)
    if ctx.target:
        reason = "starts the auth replicas and the api itself; not with --target"
        report.phases = [
            Phase(one, note=f"skipped: {reason}"),
            Phase(two, note=f"skipped: {reason}"),
            Phase("target GET /", ctx.load("target GET /", api_spec(ctx.target)), note=f"{ctx.target}, as it runs"),
        ]
        report.claims = [
            claims.skipped(LOGIN_CLAIM, reason, RATIO, "×"),
            claims.skipped(API_CLAIM, reason, P95_MS, "ms"),
        ]
        return report

    with ctx.workdir() as workdir, ctx.rig(workdir, "services") as rig:
        ctx.say("starting 2 auth replicas (1 worker each, own Redis) and the api (1 worker), apart")
        env = {"AUTH_REDIS_URL": rig.another_redis().url, **AUTH_ENV}
        api = rig.cluster(1, wait=False)
        rig.replicas("auth", HOSTS[:2], 1, env=env, app=AUTH_APP)  # both named "auth"; "auth1" names the first
        rig.topology.publish("auth1", HOSTS[0])
        api.wait_ready(timeout=READY_TIMEOUT)
        results: dict[str, LoadResult] = {}
        for name, service, replicas in ((one, "auth1", 1), (two, "auth", 2)):
            balancer = rig.balancer(service, replicas)
            ctx.say(f"{name} behind {balancer.kind}; {API_USERS} visitors ask the api for GET / meanwhile")
            visitors = Visitors(ctx, api_spec(api.url), f"api GET / during {name}")
            with visitors:
                results[name] = ctx.load(name, auth_spec(balancer.url))
            results[visitors.name] = visitors.result
            auth, visited = results[name], visitors.result
            report.phases += [
                Phase(
                    name,
                    auth,
                    replica_of=rig.watcher.replica_of(auth.served_by),
                    note=f"{login_rps(auth):.1f} logins/s; {replicas} replica(s) × 1 worker behind {balancer.kind}",
                ),
                Phase(
                    visitors.name,
                    visited,
                    replica_of=rig.watcher.replica_of(visited.served_by),
                    note="the api (1 worker), its own process",
                ),
            ]
            balancer.stop()  # one balancer at a time: fewer processes sharing the cores

    judge, why_not = (
        not ctx.smoke and cores >= 2,
        (
            "--smoke: too little load to measure throughput"
            if ctx.smoke
            else f"needs ≥ 2 cores, this machine gives {cores}"
        ),
    )
    single, double = results[one], results[two]
    report.claims = [
        claims.ratio_at_least(
            LOGIN_CLAIM,
            login_rps(double),
            login_rps(single),
            RATIO,
            what="2 replicas: logins",
            baseline_what="1 replica",
            judge=judge,
            why_not=why_not,
        ),
        _api_claim([results[f"api GET / during {name}"] for name in (one, two)]),
    ]
    report.notes.append(
        "Login throughput counts successful POST /auth/login per second (each is an argon2 verify); "
        "the rate limits are on, at their defaults: they count failed logins only, and these succeed."
    )
    report.notes.append(
        f"{cores} cores here, shared by the replicas, the api, the balancer and Locust: 2 replicas can at "
        "best double a 1-core replica; on their own machines each replica brings its own core."
    )
    return report


def login_rps(result: LoadResult) -> float:
    logins = result.requests_by_name.get(LOGIN, 0) - result.failures_by_name.get(LOGIN, 0)
    return logins / result.seconds if result.seconds > 0 else 0.0


class Visitors:
    """Locust's GET / visitors of the api in a thread, alongside the auth load (``with``: start, then wait)."""

    def __init__(self, ctx: DemoContext, spec: LoadSpec, name: str) -> None:
        self.name = name
        self._run = lambda: run_load(spec, ctx.out / "locust", name, locustfile=ctx.options.locustfile)
        self._results: list[LoadResult] = []
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._target, name="api-visitors", daemon=True)

    def _target(self) -> None:
        try:
            self._results.append(self._run())
        except BaseException as exc:  # raised again in the demo's thread
            self._errors.append(exc)

    def __enter__(self) -> Visitors:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._thread.join()
        if self._errors:
            raise self._errors[0]

    @property
    def result(self) -> LoadResult:
        return self._results[0]


def _api_claim(visits: list[LoadResult]) -> claims.Claim:
    if any(result.requests == 0 or result.p95_ms is None for result in visits):
        return claims.Claim(API_CLAIM, None, P95_MS, claims.Verdict.FAILS, "a phase measured no GET /", "ms")
    worst = max(visits, key=lambda result: result.p95_ms or 0.0)
    assert worst.p95_ms is not None and worst.p50_ms is not None
    failed = sum(result.failures for result in visits)
    ok = worst.p95_ms <= P95_MS and failed == 0
    text = (
        f"{sum(r.requests for r in visits):,} GET / ({failed:,} failed); the worst phase: p50 {worst.p50_ms:.0f} ms, "
        f"p95 {worst.p95_ms:.0f} ms (needs ≤ {P95_MS:g} ms and none failed)"
    )
    return claims.Claim(
        API_CLAIM, worst.p95_ms, P95_MS, claims.Verdict.HOLDS if ok else claims.Verdict.FAILS, text, "ms"
    )


DOCKER_LOGIN_CLAIM = f"login throughput, 2 auth containers ≥ {RATIO:g}× 1, given the cores"
SERVED_CLAIM = "the balancer spreads the hashing over every auth container"


def _against_compose(
    ctx: DemoContext, report: DemoReport, api_spec: Callable[[str], LoadSpec], cores: int, users: int, seconds: float
) -> DemoReport:
    """auth at 1 container, then 2, under logins through the compose stack's balancer; the api beside."""
    from loadtests.experiments.docker_stack import DockerStack

    stack = DockerStack.of(ctx)
    stack.require("auth", "auth-redis", "api", "lb", why="the demo scales auth behind the balancer, beside the api")
    assert ctx.target is not None
    target = ctx.target
    results: dict[int, tuple[Phase, Phase]] = {}
    with stack.restoring("auth") as found:
        for count in (1, 2):
            stack.scale("auth", count)
            stack.wait_in_balancer("auth", count)
            hosts = stack.hostnames("auth")
            per_container = min(stack.workers("auth").values() or [0])
            name = f"compose: auth × {count} container{'s' if count > 1 else ''}"
            ctx.say(f"{name}, logins through the balancer; {API_USERS} visitors ask the api for GET / meanwhile")
            visitors = Visitors(ctx, api_spec(target), f"api GET / during {name}")
            with visitors:
                hashed = ctx.load(name, LoadSpec("AuthUser", target, users, seconds, tags=("auth-login",)))
            replica_of = {
                served: hosts[served.rsplit("/", 1)[0]]
                for served in hashed.served_by
                if served.rsplit("/", 1)[0] in hosts
            }
            results[count] = (
                Phase(
                    name,
                    hashed,
                    replica_of=replica_of,
                    facts={"workers_per_container": per_container},
                    note=f"{login_rps(hashed):.1f} logins/s; {count} container(s) × {per_container} "
                    f"workers behind the stack's balancer",
                ),
                Phase(visitors.name, visitors.result, note="the api containers, through the same balancer"),
            )
    report.phases = [phase for pair in results.values() for phase in pair]
    (one, one_visits), (two, two_visits) = results[1], results[2]
    assert one.result is not None and two.result is not None
    per_container = int(one.facts["workers_per_container"])
    judge = not ctx.smoke and cores >= 2 * per_container
    why_not = (
        "--smoke: too little load to measure throughput"
        if ctx.smoke
        else f"each auth container runs {per_container} workers, one per core of this machine's {cores}: a second "
        "container on the same cores adds no CPU (across machines it adds its own)"
    )
    report.claims = [
        claims.every_one_serves(SERVED_CLAIM, set(two.replica_of.values()), 2, "auth containers", two.result.requests),
        _api_claim([phase.result for phase in (one_visits, two_visits) if phase.result is not None]),
        claims.ratio_at_least(
            DOCKER_LOGIN_CLAIM,
            login_rps(two.result),
            login_rps(one.result),
            RATIO,
            what="2 containers: logins",
            baseline_what="1 container",
            judge=judge,
            why_not=why_not,
        ),
    ]
    report.notes.append(
        f"auth was scaled with docker compose up --scale auth=N (scalecube docker scale), then back "
        f"to the {found} container(s) it ran."
    )
    return report
