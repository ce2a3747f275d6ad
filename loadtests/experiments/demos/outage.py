"""``scalecube demo outage``: one part of the stack fails at a time, under mixed load; the rest keeps serving.

A full stack of the demo's own (``scalecube up -d``: two api replicas behind the balancer, auth, the
router and two shards, each with its own Redis), a mixed Locust load over every route
(``loadtests/locust/outage.py``: each request named by what it needs), and four parts failed in turn:
the sessions Redis, auth, one shard and the router's directory Redis. Each is first frozen (SIGSTOP to
its process group for T seconds, then SIGCONT: a hung process keeps its sockets, so callers wait on it)
and then killed (SIGKILL; the local supervisor restarts it). For each fault:

- the routes that do not need the failed part keep succeeding (≥ 99.9 % of the requests in flight
  during the fault);
- the routes that do need it fail only with a 503 naming it (``"dependency": "redis"``) — never a 500,
  never an answer later than the client's timeout. Auth's own routes are the exception the balancer
  makes: it sends ``/auth/*`` straight to auth, so when auth is gone the balancer answers (its own
  502/503/504, which names nothing); those are counted apart;
- it is back ≤ 2 s after the fault ends (SIGCONT sent, or the restarted part answering its own
  readiness check): the time to the first success of a probe loop asking an affected route ten times
  a second (``loadtests/experiments/probe.py``), so the recovery is measured from events, not slept;
- after a SIGKILL, ``scalecube status`` counts one restart more.

``--docker`` does the same to the running compose stack's containers (pause/unpause, kill);
``--target`` cannot fail anything: it runs the mixed load and judges the error contract only.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

import loadtests
from infra.local.processes import wait_until
from loadtests.experiments import claims
from loadtests.experiments.context import DemoContext
from loadtests.experiments.faults import ComposeStack, Faults, LocalStack, wait_ready
from loadtests.experiments.locust_runner import LoadResult, LoadSpec, safe_name
from loadtests.experiments.probe import Answer, Probe
from loadtests.experiments.results import DemoReport, Phase, Table
from loadtests.locust.dependencies import (
    AUTH,
    CLIENT_TIMEOUT,
    DIRECTORY_REDIS,
    REQUEST_LOG_ENV,
    SERVED_BY_BALANCER,
    SESSIONS_REDIS,
    RequestRecord,
    needs,
    read_records,
    route_of,
    shards,
)
from loadtests.locust.target import probe as probe_target

TITLE = "Outage: a dependency fails, the rest keeps serving"
GUIDE = (
    "Split into services and shared stores, an app loses one part at a time: the requests that need it should "
    "fail fast and say which part is missing, the others should not notice, and all of it should come back "
    "by itself when the part does."
)
LOCUSTFILE = Path(loadtests.__file__).resolve().parent / "locust" / "outage.py"
USER_CLASS = "OutageUser"
SUCCESS_PCT = 99.9
RECOVERY_S = 2.0
STOP_SECONDS, SMOKE_STOP_SECONDS = 10.0, 3.0  # how long a part stays frozen (--seconds)
BEFORE, SMOKE_BEFORE = 2.0, 1.0  # load before each fault: the routes answering as usual
AFTER, SMOKE_AFTER = 2.0, 1.0  # load after the first success: the routes answering again
RESTART_TIMEOUT = 90.0  # a killed part answering again: the supervisor's restart on a busy 2-core machine
RECOVERY_WAIT = 30.0  # the first success after the fault ended, at most: past it, "not back"
SETTLE_TIMEOUT = 120.0  # before each fault, every route answers again (the balancers' checks after a restart)
USERS = 10
# The visitors' pacing (the knobs' defaults, 50-250 ms between tasks; an empty value means the default):
# an outage is about what users see, not about capacity, which flat-out load on 2 cores would be.
VISITORS = {"SCALECUBE_WAIT_MIN": "", "SCALECUBE_WAIT_MAX": ""}
STOP, KILL = "STOP", "KILL"
PASSWORD = "outage-demo-visitor"  # the demo's own account at auth (its policy: 10 to 128 characters, not common)
CONTRACT_CLAIM = "every answer a success, or a 503 naming its dependency (no 500, none past the client timeout)"


@dataclass(frozen=True)
class Part:
    name: str  # the local stack's component, compose's service
    title: str
    dependency: str  # what the 503s of the routes that need it name
    probe: str  # what the probe loop asks: "session" (/session/me) or a shard's user (/users/{id})


PARTS = (
    Part(SESSIONS_REDIS, "sessions Redis", "redis", "session"),
    Part(AUTH, "auth", "auth", "session"),
    Part("shard-a", "shard-a", "shard-a", "shard-a"),
    Part(DIRECTORY_REDIS, "directory Redis", "redis", "shard-b"),  # a shard-b user: only the directory is down
)


def plan(smoke: bool) -> list[tuple[Part, str]]:
    """Each part frozen, then killed; ``--smoke``: one of each, a Redis frozen and a cluster killed."""
    if smoke:
        return [(PARTS[0], STOP), (PARTS[2], KILL)]
    return [(part, how) for part in PARTS for how in (STOP, KILL)]


@dataclass
class FaultRun:
    """One fault and what was seen of it. Times are seconds since the epoch, as Locust records them."""

    part: Part
    how: str
    label: str  # "SIGSTOP 10 s", "SIGKILL", "pause 10 s", "kill"
    started: float = 0.0
    ended: float | None = None  # SIGCONT sent / unpaused, or the killed part answering again
    first_outage: float | None = None  # the first 503 naming the part (or the balancer's, for auth's own routes)
    first_success: float | None = None  # the first success of the probe after ``ended``
    action: str = ""  # what was done, in words
    problem: str = ""  # what did not happen in time
    restarts: tuple[int, int] | None = None  # before, after (None: nobody counts them, Docker)
    records: list[RequestRecord] = field(default_factory=list)
    probes: list[Answer] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.part.title} {self.how}"

    @property
    def window_end(self) -> float:
        return self.ended if self.ended is not None else time.time()

    @property
    def recovery(self) -> float | None:
        if self.ended is None or self.first_success is None:
            return None
        return self.first_success - self.ended

    def during(self) -> list[RequestRecord]:
        return [r for r in self.records if r.overlaps(self.started, self.window_end)]

    def probes_during(self) -> list[Answer]:
        return [a for a in self.probes if a.sent <= self.window_end and a.done >= self.started]

    def needing(self) -> tuple[list[RequestRecord], list[RequestRecord]]:
        """The requests in flight during the fault: (those that need the part, the others)."""
        need, others = [], []
        for record in self.during():
            (need if self.part.name in needs(record.name) else others).append(record)
        return need, others


# -- how an answer of a route that needs the failed part is read ----------------------------------------


def outage_answer(part: Part, status: int, dependency: str | None, route: str | None = None) -> bool:
    """The answers a route that needs ``part`` may give while it is down: a 503 naming it; for a route the
    balancer sends straight to the part, the balancer's own 502/503/504."""
    if status == 503 and dependency == part.dependency:
        return True
    return dependency is None and status in (502, 503, 504) and SERVED_BY_BALANCER.get(route or "") == part.name


def describe(
    part: Part, status: int, ok: bool, dependency: str | None, error: str | None, route: str | None = None
) -> str:
    if ok:
        return "ok"
    if outage_answer(part, status, dependency, route):
        return f"{status} {dependency}" if dependency else f"{status} from the balancer"
    if status == 0:
        return f"no answer ({(error or '?').split(':')[0]})"
    return f"{status} {dependency or error or ''}".strip()


def tally(part: Part, records: Iterable[RequestRecord], answers: Iterable[Answer]) -> tuple[Counter[str], Counter[str]]:
    """(Locust's requests, the probe's) that needed the part, counted by what they got."""
    locust = Counter(describe(part, r.status, r.ok, r.dependency, r.error, route_of(r.name)) for r in records)
    probe = Counter(describe(part, a.status, a.ok, a.dependency, a.error) for a in answers)
    return locust, probe


def acceptable(part: Part, label: str) -> bool:
    return label == "ok" or label == f"503 {part.dependency}" or label.endswith("from the balancer")


def counts_text(counter: Counter[str]) -> str:
    return ", ".join(f"{n:,}× {label}" for label, n in counter.most_common()) or "none"


# -- the demo ---------------------------------------------------------------------------------------


def run(ctx: DemoContext) -> DemoReport:
    users = ctx.users(USERS)
    seconds = ctx.seconds(STOP_SECONDS, smoke=SMOKE_STOP_SECONDS)
    faults = plan(ctx.smoke)
    report = DemoReport(
        "outage", TITLE, GUIDE, {"users": users, "stop_seconds": seconds, "faults": len(faults), "smoke": ctx.smoke}
    )
    if ctx.target and not ctx.docker_project:
        return _against_target(ctx, report, users, faults)
    if ctx.docker_project:
        return _against_compose(ctx, report, ctx.docker_project, faults, users, seconds)
    with ctx.workdir() as workdir:
        stack = LocalStack(workdir, keep_logs=ctx.out / "logs" / "stack")
        try:
            ctx.say("starting the full local stack (scalecube up -d: 2 api replicas, balancer, auth, router, shards)")
            url = stack.up()
            _run_faults(ctx, report, stack, url, faults, users, seconds, docker=False)
        finally:
            ctx.say("stopping the stack (scalecube down)")
            stack.down()
    return report


def _against_compose(
    ctx: DemoContext, report: DemoReport, project: str, faults: list[tuple[Part, str]], users: int, seconds: float
) -> DemoReport:
    from docker.errors import DockerException

    from infra.docker.engine import DockerError

    assert ctx.target is not None
    try:
        compose = ComposeStack.connect(project)
        try:
            _run_faults(ctx, report, compose, ctx.target, faults, users, seconds, docker=True)
        finally:
            compose.restore(part.name for part, _ in faults)
    except (DockerError, DockerException) as exc:  # the CLI's "missing part": exit 2 with the reason
        raise RuntimeError(f"--docker: {exc}") from exc
    return report


def _run_faults(
    ctx: DemoContext,
    report: DemoReport,
    stack: Faults,
    url: str,
    faults: list[tuple[Part, str]],
    users: int,
    seconds: float,
    *,
    docker: bool,
) -> None:
    report.settings["where"] = stack.where
    runs: list[FaultRun] = []
    with Visitor(url) as visitor:
        ctx.say(f"{stack.where} at {url}: a visitor registers, logs in and creates a user on each shard")
        wait_until(visitor.setup, SETTLE_TIMEOUT, interval=0.5, what="the stack to register, log in and create users")
        for part, how in faults:
            ctx.say(f"waiting until every route answers, then: {part.title} {how}")
            wait_until(
                lambda: visitor.every_route_answers() and stack.all_running(),
                SETTLE_TIMEOUT,
                interval=0.5,
                what="every route to answer before the next fault",
            )
            fault_run, result = _one_fault(ctx, stack, visitor, part, how, users, seconds, docker=docker)
            runs.append(fault_run)
            report.phases.append(Phase(fault_run.name, result, note=_timeline_text(fault_run)))
    report.tables.append(_faults_table(runs))
    for fault_run in runs:
        report.claims += _judge(fault_run, docker=docker)
    report.notes += _notes(docker)


def _one_fault(
    ctx: DemoContext, stack: Faults, visitor: Visitor, part: Part, how: str, users: int, seconds: float, *, docker: bool
) -> tuple[FaultRun, LoadResult]:
    label = (
        (f"pause {seconds:g} s" if docker else f"SIGSTOP {seconds:g} s")
        if how == STOP
        else ("kill" if docker else "SIGKILL")
    )
    fault = FaultRun(part, how, label)
    before, after = (SMOKE_BEFORE, SMOKE_AFTER) if ctx.smoke else (BEFORE, AFTER)
    probe = Probe(visitor.probe_url(part.probe), cookies=visitor.cookies)

    def inject() -> None:
        time.sleep(before)  # the routes answering as usual first (shown in the charts; not a measured bound)
        restarts_before = stack.restarts(part.name)  # (also where the stack finds the part's pid)
        ctx.say(f"{fault.name}: {label}")
        if how == STOP:
            fault.started = time.time()
            stack.freeze(part.name)
            try:
                time.sleep(seconds)
            finally:
                stack.thaw(part.name)
                fault.ended = time.time()
            fault.action = f"{label}, then {'unpause' if docker else 'SIGCONT'}"
        else:
            fault.started = time.time()
            fault.action = stack.kill(part.name)
            try:
                fault.ended = wait_ready(stack, part.name, RESTART_TIMEOUT)
            except TimeoutError:
                fault.problem = f"not answering {RESTART_TIMEOUT:g}s after the kill"
                return
        found = _wait_for(lambda: probe.first(lambda a: a.ok, after=fault.window_end), RECOVERY_WAIT)
        if found is None:
            fault.problem = f"no success within {RECOVERY_WAIT:g}s after the fault ended"
        if how == KILL and restarts_before is not None:  # the supervisor's count, once it has noticed
            _wait_for(lambda: (stack.restarts(part.name) or 0) > restarts_before, RECOVERY_WAIT)
            fault.restarts = (restarts_before, stack.restarts(part.name) or 0)

    log = ctx.out / "locust" / f"{safe_name(fault.name)}_requests.jsonl"
    env = {**VISITORS, REQUEST_LOG_ENV: str(log), "SCALECUBE_AUTH_PASSWORDS": "1"}
    bound = before + max(seconds, RESTART_TIMEOUT) + 2 * RECOVERY_WAIT + after
    spec = LoadSpec(USER_CLASS, visitor.url, users, bound, env=env)
    with probe:
        result = ctx.load(
            fault.name,
            spec,
            during=inject,
            end_after_during=after,
            locustfile=LOCUSTFILE,
            expected=before + (seconds if how == STOP else 10) + after + 5,
        )
    fault.probes = probe.answers()
    fault.records = read_records(log)
    _timeline(fault)
    return fault, result


def _wait_for(predicate: Callable[[], object], timeout: float) -> object | None:
    try:
        return wait_until(predicate, timeout, interval=0.05)
    except TimeoutError:
        return None


def _timeline(fault: FaultRun) -> None:
    """The first outage answer (any client) after the fault began, the probe's first success after it ended."""
    need, _ = fault.needing()
    seen = [r.done for r in need if not r.ok and outage_answer(fault.part, r.status, r.dependency, route_of(r.name))]
    seen += [
        a.done for a in fault.probes if a.done >= fault.started and outage_answer(fault.part, a.status, a.dependency)
    ]
    fault.first_outage = min((t for t in seen if t >= fault.started), default=None)
    if fault.ended is not None:
        success = next((a for a in fault.probes if a.ok and a.done >= fault.ended), None)
        fault.first_success = success.done if success else None


def _at(fault: FaultRun, moment: float | None) -> str:
    return "—" if moment is None else f"+{moment - fault.started:.2f} s"


def _timeline_text(fault: FaultRun) -> str:
    recovery = fault.recovery
    text = (
        f"{fault.action}; first outage answer {_at(fault, fault.first_outage)}, ended {_at(fault, fault.ended)}, "
        f"first success {_at(fault, fault.first_success)}"
        + (f" (back {recovery:.2f} s after)" if recovery is not None else "")
    )
    return f"{text}; {fault.problem}" if fault.problem else text


def _faults_table(runs: list[FaultRun]) -> Table:
    table = Table(
        "faults",
        [
            "fault",
            "what was done",
            "first 503",
            "fault ended",
            "first success",
            "back after",
            "other routes: ok",
            "routes that need it (Locust)",
            "probe",
            "restarts",
        ],
    )
    for fault in runs:
        need, others = fault.needing()
        locust, probe = tally(fault.part, need, fault.probes_during())
        ok = sum(r.ok for r in others)
        table.rows.append(
            [
                fault.name,
                fault.action,
                _at(fault, fault.first_outage),
                _at(fault, fault.ended),
                _at(fault, fault.first_success),
                "—" if fault.recovery is None else f"{fault.recovery:.2f} s",
                f"{ok:,} of {len(others):,}",
                counts_text(locust),
                counts_text(probe),
                "—" if fault.restarts is None else f"{fault.restarts[0]} → {fault.restarts[1]}",
            ]
        )
    return table


def _judge(fault: FaultRun, *, docker: bool) -> list[claims.Claim]:
    need, others = fault.needing()
    failed_others = sum(not r.ok for r in others)
    found = claims.success_at_least(
        f"{fault.name}: routes that don't need it ≥ {SUCCESS_PCT:g}% succeed", len(others), failed_others, SUCCESS_PCT
    )
    if failed_others:
        worst = Counter(describe(fault.part, r.status, r.ok, r.dependency, r.error) for r in others if not r.ok)
        found = _with_text(found, f"{found.text}; failures: {counts_text(worst)}")
    judged = [found, _needing_claim(fault, need), _recovery_claim(fault)]
    if fault.how == KILL:
        judged.append(_restart_claim(fault, docker=docker))
    return judged


def _with_text(claim: claims.Claim, text: str) -> claims.Claim:
    return claims.Claim(claim.name, claim.measured, claim.threshold, claim.verdict, text, claim.unit)


def _needing_claim(fault: FaultRun, need: list[RequestRecord]) -> claims.Claim:
    name = f"{fault.name}: routes that need it fail only with a 503 naming {fault.part.dependency}"
    locust, probe = tally(fault.part, need, fault.probes_during())
    answered = locust + probe
    # A KILL cuts what the killed process was doing: no one can answer those (the availability demo's rule).
    cut = sum(n for label, n in answered.items() if fault.how == KILL and label.startswith("no answer"))
    wrong = sum(n for label, n in answered.items() if not acceptable(fault.part, label)) - cut
    text = f"Locust: {counts_text(locust)}; probe: {counts_text(probe)}"
    if cut:
        text += f"; {cut:,} cut in flight by the kill itself (reported, not counted)"
    if not answered:  # nothing that needs the part was asked while it was down: nothing was tested
        return claims.Claim(name, None, 0, claims.Verdict.FAILS, "no request that needs it was in flight", "wrong")
    if answered["ok"] == sum(answered.values()):  # the fault itself was seen (stopped, paused, exited)
        text += " — every one succeeded: its callers' retries rode the outage out"
    verdict = claims.Verdict.HOLDS if wrong == 0 else claims.Verdict.FAILS
    return claims.Claim(name, wrong, 0, verdict, f"{text} ({wrong:,} other failures; needs 0)", "wrong")


def _recovery_claim(fault: FaultRun) -> claims.Claim:
    name = f"{fault.name}: back ≤ {RECOVERY_S:g} s after the fault ends"
    recovery = fault.recovery
    if recovery is None:
        why = fault.problem or "no end or no success seen"
        return claims.Claim(name, None, RECOVERY_S, claims.Verdict.FAILS, why, "s")
    text = (
        f"ended {_at(fault, fault.ended)} ({'SIGCONT/unpause' if fault.how == STOP else 'answering again'}), "
        f"first success of the probe {_at(fault, fault.first_success)}: {recovery:.2f} s (needs ≤ {RECOVERY_S:g} s)"
    )
    verdict = claims.Verdict.HOLDS if recovery <= RECOVERY_S else claims.Verdict.FAILS
    return claims.Claim(name, round(recovery, 3), RECOVERY_S, verdict, text, "s")


def _restart_claim(fault: FaultRun, *, docker: bool) -> claims.Claim:
    name = f"{fault.name}: {'Docker' if docker else 'the supervisor'} restarted it"
    if fault.restarts is None:
        if docker:  # an engine elsewhere: the demo restarted the container itself
            return claims.skipped(name, f"compose: {fault.action}")
        return claims.Claim(name, None, 1, claims.Verdict.FAILS, "no restart count read", "restarts")
    before, after = fault.restarts
    verdict = claims.Verdict.HOLDS if after > before else claims.Verdict.FAILS
    source = "the container's RestartCount (its restart policy)" if docker else "scalecube status: restarts"
    return claims.Claim(name, after - before, 1, verdict, f"{source} {before} → {after}", "restarts")


def _notes(docker: bool) -> list[str]:
    notes = [
        "A request counts for a fault when it was in flight at some moment between the fault's start and its end "
        "(SIGCONT, or the killed part answering its own check again). 'Routes that need it': loadtests/locust/"
        "dependencies.py; /session/* need the sessions Redis and auth, /users/[id] and POST /users the directory "
        "Redis and the user's shard, a listing only the shard (the router routes on its cached map).",
        "The probe asks one affected route every 0.1 s without waiting for earlier answers (/session/me for the "
        "sessions Redis and auth, a shard-a user for shard-a, a shard-b user for the directory Redis); "
        "'back after' is the time from the fault's end to its first success.",
        "/auth/* go from the balancer straight to auth: while auth is down the balancer answers for it (HAProxy: "
        "an HTML 503 when auth refuses connections, a 504 after its 10 s server timeout when auth is frozen: "
        "panic mode keeps routing to the only, frozen, server). Counted as 'from the balancer', apart from the 503s "
        "naming auth that the api gives.",
        "'no answer (HTTPConnectionClosed)' on /auth/login when auth dies: HAProxy had reused a keep-alive connection "
        "to auth's draining worker, and answers a reused connection closed under a request by closing the client's "
        "(http-reuse safe: the client may retry, as after a keep-alive race); Locust does not retry a POST.",
        "A KILL cuts the requests the killed process held; they get no answer (counted apart, like the availability "
        "demo's responses cut mid-body). Requests parked on a frozen part do not hold a worker's hand-off credits "
        "(those count connections not yet taken), so routes that do not need the part keep being served.",
    ]
    if docker:
        notes.append(
            "Docker: pause/unpause freeze a whole container; a kill is SIGKILL to the container's main "
            "process by its pid on this host, a crash to the engine, which restarts it by the service's "
            "restart policy (unless-stopped). A kill through the engine (docker kill) would count as "
            "stopped by the user and stay down: with an engine elsewhere the demo does that and starts "
            "the container itself, and says so in the row."
        )
    return notes


# -- --target: nothing can be failed; the error contract is judged --------------------------------------


def _against_target(ctx: DemoContext, report: DemoReport, users: int, faults: list[tuple[Part, str]]) -> DemoReport:
    assert ctx.target is not None
    # What the target routes, told as `scalecube locust` tells it (public paths: /shards and the like are internal).
    routed = {name: not part.missing for name, part in probe_target(ctx.target).parts.items()}
    missing = [name for name, there in routed.items() if not there]
    log = ctx.out / "locust" / "target_requests.jsonl"
    env = {**VISITORS, REQUEST_LOG_ENV: str(log), "SCALECUBE_AUTH_PASSWORDS": "1" if routed["auth"] else "0"}
    seconds = ctx.seconds(20, smoke=3)
    spec = LoadSpec(
        USER_CLASS,
        ctx.target,
        users,
        seconds,
        env=env,
        tags=tuple(tag for tag in ("api", "sessions", "auth", "router") if tag not in missing),
    )
    result = ctx.load("target", spec, locustfile=LOCUSTFILE)
    records = read_records(log)
    wrong = Counter(
        f"{r.status} {r.dependency or r.error or ''}".strip() if r.status else f"no answer ({r.error})"
        for r in records
        if not r.ok and not (r.status == 503 and r.dependency)
    )
    without = f" (it routes no {', no '.join(missing)}: those tasks left out)" if missing else ""
    report.phases = [Phase("target", result, note=f"{ctx.target}, as it runs{without}")]
    contract = claims.no_failures(CONTRACT_CLAIM, len(records), sum(wrong.values()), what="answers")
    if wrong:
        contract = _with_text(contract, f"{contract.text}: {counts_text(wrong)}")
    reason = "fails parts of the stack by pid or container (SIGSTOP, SIGKILL): not with --target; --docker does it to compose"
    report.claims = [contract]
    for part, how in faults:
        name = f"{part.title} {how}"
        report.claims += [
            claims.skipped(f"{name}: routes that don't need it ≥ {SUCCESS_PCT:g}% succeed", reason),
            claims.skipped(f"{name}: routes that need it fail only with a 503 naming {part.dependency}", reason),
            claims.skipped(f"{name}: back ≤ {RECOVERY_S:g} s after the fault ends", reason),
        ]
    report.notes.append(
        "Against --target nothing is failed: the mixed load runs and every answer is judged by the "
        "error contract (a success, or a 503 naming the dependency that is missing)."
    )
    return report


# -- the demo's own visitor: an account, a session, a user on each shard ----------------------------------


class Visitor:
    """Through the stack's front door, like any client: what the probes need (a session cookie, a user id on
    each shard), and one request per route to tell that the stack serves everything again."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.username = f"outage-{uuid.uuid4().hex[:16]}"
        self.client = httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT, trust_env=False)
        self.user_ids: dict[str, str] = {}
        self._lock = threading.Lock()
        self._registered = False

    def __enter__(self) -> Visitor:
        return self

    def __exit__(self, *_: object) -> None:
        self.client.close()

    @property
    def cookies(self) -> httpx.Cookies:
        return self.client.cookies

    def setup(self) -> bool:
        """Register, log in, create a user on each shard; False until all of it worked (the stack may be starting)."""
        with self._lock:
            if not self._registered:
                registered = self.client.post("/auth/register", json={"username": self.username, "password": PASSWORD})
                self._registered = registered.status_code in (201, 409)
                if not self._registered:
                    return False
            login = self.client.post("/session/login", json={"user": self.username, "password": PASSWORD})
            if login.status_code != 200:
                return False
            for shard, countries in shards().items():
                if shard not in self.user_ids:
                    created = self.client.post(
                        "/users", json={"name": f"outage probe {shard}", "country": countries[0]}
                    )
                    if created.status_code != 201:
                        return False
                    self.user_ids[shard] = created.json()["id"]
            return True

    def probe_url(self, probe: str) -> str:
        return f"{self.url}/session/me" if probe == "session" else f"{self.url}/users/{self.user_ids[probe]}"

    def every_route_answers(self) -> bool:
        """One request per route, each a success: the stack serves everything (a restarted part included).

        A session login too, not only a session read: with the sessions Redis in a Sentinel group, a login
        writes to the primary and waits for the replica (WAIT), so it succeeds only once the group has settled
        (a paused primary may have been failed over and is then resyncing as a replica), which a read does
        not show. The next fault starts from a settled stack, not inside the last one's aftermath."""
        with self._lock:
            gets = [
                "/",
                "/session/me",
                *(f"/users/{user_id}" for user_id in self.user_ids.values()),
                *(f"/users?country={countries[0]}&limit=1" for countries in shards().values()),
            ]
            if not all(self.client.get(path).is_success for path in gets):
                return False
            login = self.client.post("/auth/login", json={"username": self.username, "password": PASSWORD})
            if not login.is_success:
                return False
            session = self.client.post("/session/login", json={"user": self.username, "password": PASSWORD})
            return session.status_code == 200
