"""``scalecube demo node-loss``: a machine lost under mixed load, the stack spread over several Docker engines.

The target is the deployment ``scalecube nodes up --nodes 3`` + ``scalecube docker swarm-deploy --nodes CLUSTER``
makes (``--cluster``, ``--stack``: the defaults those commands use); without it, exit 2 naming those commands.
What runs where is read from the Swarm (``loadtests/experiments/node_stack.py``). The node lost by default is the
sessions Redis primary's (``spread_over`` pins it to node-2, away from the balancer; each node holds one data node
and one Sentinel): Redis HA is there to survive exactly that. ``--node NAME`` picks another node with api replicas;
the balancer's node (node-1, its host-mode port the demo's only way in) is refused (exit 2).

Under load through the balancer — GET / loops, and visitors asking ``/session/me`` with their sessions (every
10th request a new login) — the node's engine container is SIGKILLed (``scalecube nodes kill``: the machine and
every task on it gone at once). Swarm marks it down, starts its api replicas on the survivors, and the balancer
(``server-template`` over the api's DNS) sends to them once they answer. Claims:

1. 0 failed GET / through the balancer: a GET the balancer had sent to the lost node before it could know the node
   was gone gets no answer (a vanished machine sends no reset; HAProxy retries no response timeout, on purpose) — it
   ends as a 504 after ``timeout server`` or cut mid-body. Those are counted apart, at most one per GET thread: the
   ones sent before the kill, and the ones sent until the balancer's checks marked the node's api servers DOWN
   (read from its log: ``ejected_at``) — until then a request may still go out on a kept-alive connection to the
   dead machine. Any other failure fails;
2. the api back to its replica count, all on surviving nodes, each serving through the balancer, within
   ``RESCHEDULE_LIMIT_S`` — measured from the kill to the Swarm's running tasks, and to the last new replica's
   first answer;
3. no session lost: every session logged in before the kill, and those logged in under load, answer ``/session/me``
   afterwards (each login was WAITed onto a replica before it was answered);
4. logins work once the api is back: none refused after the recovery (a login WAITs for one replica: with two
   replicas on two other machines, one is always left);
5. when the primary's node is the one lost: the Sentinels left (two of three: the quorum and the majority) promote
   a replica on a surviving node, and the session routes answer again within the failover demo's bound
   (``WINDOW_LIMIT_S``) — from the kill to the last session request refused with a 503 naming redis.

Then the node is started again (``scalecube nodes start``): its engine rejoins the Swarm and the services pinned
to it (a data node, a Sentinel) run there again — an old primary as a replica of the new one. The api replicas stay
where Swarm moved them (Swarm does not rebalance; ``docker service update --force STACK_api`` spreads them again).

Not in ``demo all``: that runs each demo locally or against the compose stack (``--docker``); this one needs
several engines in one Swarm, which ``demo all``'s stacks are not — and starting three engines would double its time.
"""

from __future__ import annotations

import csv
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from infra.local.sentinel import DOWN_AFTER_MS
from loadtests.experiments import claims
from loadtests.experiments.context import DemoContext
from loadtests.experiments.demos.failover import WINDOW_LIMIT_S, Accounts, _accounts, _cookie, _login_all, _lost
from loadtests.experiments.locust_runner import LoadResult, SeriesPoint
from loadtests.experiments.results import DemoReport, Phase, Table

TITLE = "Node loss: a machine of the Swarm dies under load, its api replicas come back on the others"
GUIDE = (
    "Clones behind a balancer over several machines survive losing one: requests go to the clones left, the "
    "orchestrator starts the lost clones elsewhere, and shared state (sessions in Redis) loses nothing."
)
RESCHEDULE_LIMIT_S = 90.0  # kill → the api's count running on the survivors and each new one serving, at most
RESCHEDULE_TIMEOUT = 180.0
CLIENT_TIMEOUT = 30.0  # longer than HAProxy's `timeout server` (10 s): an in-flight GET ends as its 504
LOAD_LIMIT_S, SMOKE_LOAD_LIMIT_S = 420.0, 240.0  # every load thread stops by then, whatever happens
MAX_REQUESTS = 50_000  # per thread
BEFORE_S, SMOKE_BEFORE_S = 10.0, 2.0  # load before the kill
AFTER_S, SMOKE_AFTER_S = 10.0, 2.0  # load after the api is back
GETTERS, SMOKE_GETTERS = 4, 3
VISITORS, SMOKE_VISITORS = 3, 1
SESSIONS, SMOKE_SESSIONS = 100, 10
RESTART_TIMEOUT = 120.0
SETTLE_TIMEOUT = 240.0  # a stack just deployed: its tasks running and healthy, the Redis group linked
CUT = ("RemoteProtocolError", "ReadError")  # a response cut mid-body by the machine's loss
GET_ROUTE, ME, LOGIN = "/", "/session/me", "/session/login"
SESSION_ROUTES = (ME, LOGIN)


@dataclass
class Event:
    sent: float  # time.time()
    t: float  # answered (or failed)
    route: str
    outcome: str  # "200", another status, or the exception's name
    served_by: str = ""  # X-Served-By: host/pid (the host: the container's id)


class Load:
    """GET / loops and session visitors through the balancer, every request an ``Event``; bounded in time and count."""

    def __init__(self, url: str, sessions: list[str], accounts: Accounts, getters: int, visitors: int, limit: float):
        self.url, self.sessions, self.accounts = url, sessions, accounts
        self.getters, self.visitors, self.limit = getters, visitors, limit
        self.events: list[Event] = []
        self.logins: list[str] = []  # sessions logged in under load
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Load:
        targets = [self._get] * self.getters + [self._visit] * self.visitors
        self._threads = [threading.Thread(target=t, args=(n,), daemon=True) for n, t in enumerate(targets)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(CLIENT_TIMEOUT + 5)

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)

    def _running(self, deadline: float, count: int) -> bool:
        return not self._stop.is_set() and time.monotonic() < deadline and count < MAX_REQUESTS

    def _call(self, route: str, call: Callable[[], httpx.Response]) -> httpx.Response | None:
        sent = time.time()
        response = None
        try:
            response = call()
            outcome = _outcome(response)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        served_by = response.headers.get("x-served-by", "") if response is not None else ""
        with self._lock:
            self.events.append(Event(sent, time.time(), route, outcome, served_by))
        return response

    def _get(self, _: int) -> None:
        deadline = time.monotonic() + self.limit
        with httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT) as http:
            count = 0
            while self._running(deadline, count):
                count += 1
                self._call(GET_ROUTE, lambda: http.get(GET_ROUTE))
                time.sleep(0.01)

    def _visit(self, n: int) -> None:
        deadline = time.monotonic() + self.limit
        with httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT) as http:
            count = 0
            while self._running(deadline, count):
                count += 1
                http.cookies.clear()  # no jar: a login carrying an older session would log that one out
                if count % 10 == 0:
                    body = self.accounts.login(n + count)
                    response = self._call(LOGIN, lambda: http.post(LOGIN, json=body))
                    if response is not None and response.status_code == 200:
                        with self._lock:
                            self.logins.append(_cookie(response))
                else:
                    cookie = self.sessions[(n + count) % len(self.sessions)]
                    response = self._call(ME, lambda: http.get(ME, headers={"Cookie": cookie}))
                time.sleep(0.02 if response is not None and response.status_code == 200 else 0.1)


def _outcome(response: httpx.Response) -> str:
    """The status, and for a 503 the dependency its JSON names ("503 redis", "503 auth"): which one was out."""
    if response.status_code != 503:
        return str(response.status_code)
    try:
        dependency = response.json().get("dependency")
    except (ValueError, AttributeError):
        dependency = None
    return f"503 {dependency}" if isinstance(dependency, str) and dependency else "503"


# -- what was recorded, and the judge (pure) -----------------------------------------------------------------------


@dataclass
class Record:
    node: str  # the node lost
    also_lost: list[str]  # the services that ran on it
    api_before: dict[str, int]  # node -> api replicas
    replicas: int  # the api's replica count
    getters: int
    kill_started: float = 0.0  # time.time() around the SIGKILL
    killed_at: float = 0.0
    tasks_back_at: float | None = None  # the Swarm reports `replicas` running api tasks, none on the lost node
    served_back_at: float | None = None  # and each of them has answered through the balancer
    api_after: dict[str, int] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    node_of: dict[str, str] = field(default_factory=dict)  # container id (hostname) -> node
    sessions_checked: int = 0
    under_load: int = 0
    lost: int = 0
    primary_before: str = ""  # the sessions Redis primary's node before the kill
    primary_after: str = ""  # and after the recovery ("" if none found): on a survivor when the primary's was lost
    roles_after: str = ""  # the data nodes' roles once the node is back: "redis slave, redis-replica master, ..."
    restored_s: float | None = None  # the node started again, ready in the Swarm, its pinned services running
    restore_problem: str = ""
    ejected_at: float | None = None  # the balancer's checks marked the lost node's api servers DOWN (its log)
    warning: str = ""
    sentinel_log: str = ""  # the surviving Sentinels' logs from just before the kill (sentinels.log)
    balancer_log: str = ""  # the balancer's, timestamped by the engine (balancer.log)

    def node_serving(self, served_by: str) -> str:
        return self.node_of.get(served_by.rsplit("/", 1)[0], "?") if served_by else ""

    @property
    def primary_lost(self) -> bool:
        return self.primary_before == self.node

    @property
    def ejected_s(self) -> float | None:
        return None if self.ejected_at is None else self.ejected_at - self.killed_at

    @property
    def reschedule_s(self) -> float | None:
        return None if self.tasks_back_at is None else self.tasks_back_at - self.killed_at

    @property
    def served_s(self) -> float | None:
        return None if self.served_back_at is None else self.served_back_at - self.killed_at


def in_flight(record: Record) -> list[Event]:
    """GETs answered after the SIGKILL began, ending as a 504 or cut mid-body, and sent before the balancer could
    know the node was gone: before the kill landed, or before its checks ejected the node's api servers when its
    log says when (``ejected_at``). The ones the lost node held: no answer ever came."""
    known = max(record.killed_at, record.ejected_at or 0.0)
    return [
        e
        for e in record.events
        if e.route == GET_ROUTE
        and e.sent <= known
        and e.t > record.kill_started
        and (e.outcome == "504" or e.outcome in CUT)
    ]


def ejected_at(log: str, since: float, backend: str = "api") -> float | None:
    """When the balancer marked its last ``backend`` server DOWN after ``since`` (epoch seconds), from its log
    with the engine's timestamps (``NodeStack.balancer_log``): HAProxy 2.8 writes ``2026-12-07T15:14:10.050258874Z
    Server api/api2 is DOWN. 2 active and 0 backup servers left. 2 sessions active, ...`` (``is DOWN, reason: ...``
    when the check gives one). A slot DNS emptied ("enters maintenance", "is going DOWN for maintenance") and the
    panic twin (``api_panic``) are not ejections by the checks. None when no line says so."""
    found = None
    down = re.compile(rf"Server {re.escape(backend)}/\S+ is DOWN[.,]")
    for line in log.splitlines():
        stamp, _, text = line.partition(" ")
        if not down.match(text):
            continue
        try:
            at = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
        except ValueError:
            continue
        if at >= since:
            found = at if found is None else max(found, at)
    return found


REDIS_OUT = "503 redis"  # a session request refused because the sessions Redis was out (its 503 names it)


def refused_sessions(record: Record) -> list[Event]:
    """Session requests (``/session/me``, logins) that failed, answered after the kill began."""
    return [e for e in record.events if e.route in SESSION_ROUTES and e.outcome != "200" and e.t >= record.kill_started]


def session_window(record: Record) -> float:
    """From the kill to the last session request refused with a 503 naming redis: how long the sessions Redis was
    out; 0 when none was. (Another dependency's 503 — auth's, whose replica may have been on the lost node — is
    counted in the failures, not here.)"""
    last = max((e.t for e in refused_sessions(record) if e.outcome == REDIS_OUT), default=record.killed_at)
    return max(0.0, last - record.killed_at)


def judge(record: Record) -> list[claims.Claim]:
    gets = [e for e in record.events if e.route == GET_ROUTE]
    during = [
        e
        for e in gets
        if e.t >= record.kill_started and (record.served_back_at is None or e.sent <= record.served_back_at)
    ]
    cut = in_flight(record)
    failed = [e for e in gets if e.outcome != "200" and e not in cut]
    get_ok = bool(during) and not failed and len(cut) <= record.getters
    why = Counter(e.outcome for e in failed)
    get_claim = claims.Claim(
        "0 failed GET / through the balancer",
        len(failed),
        0,
        claims.Verdict.HOLDS if get_ok else claims.Verdict.FAILS,
        f"{len(gets) - len(failed) - len(cut):,} of {len(gets):,} GET / answered 200, {len(during):,} of them between "
        f"the kill and the api's recovery; {len(cut)} in flight to {record.node} when it died or before the "
        f"balancer ejected it ({_ejected(record)}; 504 / cut, counted apart, at most {record.getters}: one per GET "
        "thread)"
        + (f"; failed: {', '.join(f'{n}× {w}' for w, n in why.items())}" if failed else "")
        + ("" if during else "; no GET was sent while the node was lost: nothing measured"),
        "failed",
    )
    served = record.served_s
    after = sum(record.api_after.values())
    back_ok = (
        served is not None
        and served <= RESCHEDULE_LIMIT_S
        and after == record.replicas
        and record.node not in record.api_after
    )
    placed = ", ".join(f"{node} {n}" for node, n in sorted(record.api_after.items())) or "none"
    reschedule = record.reschedule_s
    back_claim = claims.Claim(
        f"api back to {record.replicas} replicas on the survivors ≤ {RESCHEDULE_LIMIT_S:g} s",
        None if served is None else round(served, 1),
        RESCHEDULE_LIMIT_S,
        claims.Verdict.HOLDS if back_ok else claims.Verdict.FAILS,
        (
            f"{record.replicas} api tasks running off {record.node} {reschedule:.1f} s after the kill"
            if reschedule is not None
            else f"the api not back to {record.replicas} running tasks off {record.node} within {RESCHEDULE_TIMEOUT:g} s"
        )
        + (
            f", each serving through the balancer at {served:.1f} s"
            if served is not None
            else ", not every one serving"
        )
        + f"; api per node after: {placed}",
        "s",
    )
    sessions_claim = claims.loses_no_sessions("0 sessions lost", record.sessions_checked, record.lost)
    sessions_claim = claims.Claim(
        sessions_claim.name,
        record.lost,
        0,
        sessions_claim.verdict,
        f"{record.lost} of {record.sessions_checked} sessions ({record.under_load} logged in under load) no longer "
        "answer /session/me after the loss"
        if record.sessions_checked
        else sessions_claim.text,
        "sessions",
    )
    logins = [e for e in record.events if e.route == LOGIN]
    recovered = record.served_back_at
    late = [e for e in logins if recovered is not None and e.sent > recovered]
    late_failed = [e for e in late if e.outcome != "200"]
    early_failed = [e for e in logins if e.outcome != "200" and e not in late]
    login_ok = bool(late) and not late_failed
    login_claim = claims.Claim(
        "logins answered once the api is back",
        len(late_failed),
        0,
        claims.Verdict.HOLDS if login_ok else claims.Verdict.FAILS,
        f"{len(late) - len(late_failed)} of {len(late)} logins after the recovery answered 200 "
        f"({len(early_failed)} of {len(logins) - len(late)} before it failed: "
        f"{', '.join(f'{n}× {w}' for w, n in Counter(e.outcome for e in early_failed).items()) or 'none'})"
        + ("" if late else "; no login after the recovery: nothing measured")
        + (f"; {record.warning}" if record.warning else ""),
        "failed",
    )
    found = [get_claim, back_claim, sessions_claim, login_claim]
    if record.primary_lost:
        found.append(failover_claim(record))
    return found


def _ejected(record: Record) -> str:
    """When the balancer ejected the lost node, for the claim and the notes."""
    ejected = record.ejected_s
    if ejected is None:
        return "its log names no ejection: only GETs sent before the kill count"
    return f"ejected {ejected:.1f} s after the kill, balancer.log"


def failover_claim(record: Record) -> claims.Claim:
    """Claim 5: the primary's node lost, a replica on a survivor promoted, the session routes back in the bound."""
    window = session_window(record)
    others = Counter(e.outcome for e in refused_sessions(record) if e.outcome != REDIS_OUT)
    moved = bool(record.primary_after) and record.primary_after != record.node
    ok = moved and window <= WINDOW_LIMIT_S
    return claims.Claim(
        f"primary's node lost: a replica promoted, session routes back ≤ {WINDOW_LIMIT_S:g} s",
        round(window, 1),
        WINDOW_LIMIT_S,
        claims.Verdict.HOLDS if ok else claims.Verdict.FAILS,
        (
            f"the primary moved {record.node} → {record.primary_after}"
            if moved
            else f"no primary on a surviving node after the recovery (found: {record.primary_after or 'none'})"
        )
        + f"; session requests refused naming redis until {window:.1f} s after the kill"
        + (f" ({', '.join(f'{n}× {w}' for w, n in others.items())} besides)" if others else ""),
        "s",
    )


def per_node_series(record: Record, start: float) -> dict[str, list[tuple[float, float]]]:
    """Responses per second served by each node (and the failures), from ``start``: the chart's lines."""
    seconds = int(max((e.t for e in record.events), default=start) - start) + 1
    lines: dict[str, list[float]] = {}
    for event in record.events:
        if event.t < start:
            continue
        name = record.node_serving(event.served_by) if event.outcome == "200" else "failed"
        series = lines.setdefault(name or "?", [0.0] * seconds)
        series[min(int(event.t - start), seconds - 1)] += 1
    return {name: [(float(s), v) for s, v in enumerate(values)] for name, values in sorted(lines.items())}


def result(name: str, events: list[Event], record: Record) -> LoadResult:
    out = LoadResult(name)
    if not events:
        return out
    start = min(e.sent for e in events)
    out.requests = len(events)
    out.failures = sum(e.outcome != "200" for e in events)
    out.seconds = max(0.001, max(e.t for e in events) - start)
    out.requests_by_name = dict(Counter(e.route for e in events))
    out.failures_by_name = dict(Counter(e.route for e in events if e.outcome != "200"))
    cut = in_flight(record)
    out.failures_by_error = dict(
        Counter(
            f"{e.route} {e.outcome}" + (" (in flight to the lost node)" if e in cut else "")
            for e in events
            if e.outcome != "200"
        )
    )
    out.served_by = dict(Counter(e.served_by for e in events if e.served_by and e.outcome == "200"))
    out.p50_ms, out.p95_ms, out.p99_ms = _percentiles(events)
    by_second: dict[int, list[Event]] = {}
    for event in events:
        by_second.setdefault(int(event.t - start), []).append(event)
    out.series = [
        SeriesPoint(
            float(s),
            0,
            float(len(by_second.get(s, []))),
            float(sum(e.outcome != "200" for e in by_second.get(s, []))),
            *_percentiles(by_second.get(s, [])),
        )
        for s in range(int(out.seconds) + 1)
    ]
    return out


def _percentiles(events: list[Event]) -> tuple[float | None, float | None, float | None]:
    """p50, p95, p99 of the answered requests' latencies (ms); None when none was answered."""
    latencies = sorted((e.t - e.sent) * 1000 for e in events if e.outcome == "200")
    if not latencies:
        return None, None, None
    p50, p95, p99 = (latencies[min(len(latencies) - 1, int(q * len(latencies)))] for q in (0.5, 0.95, 0.99))
    return p50, p95, p99


# -- the run --------------------------------------------------------------------------------------------------------


def run(ctx: DemoContext) -> DemoReport:
    from infra.docker.engine import engine_client
    from loadtests.experiments.node_stack import NodeStack, choose_node

    smoke = ctx.smoke
    options = ctx.options
    stack = NodeStack(engine_client(), options.nodes_cluster, options.nodes_stack)
    stack.check()
    ctx.say(f"waiting for {stack.stack} on {stack.cluster} to settle (api replicas, balancer, Redis roles)")
    placement = stack.settled(SETTLE_TIMEOUT)
    node, warning = choose_node(placement, options.kill_node)
    getters = SMOKE_GETTERS if smoke else GETTERS
    visitors = options.users or (SMOKE_VISITORS if smoke else VISITORS)
    n_sessions = SMOKE_SESSIONS if smoke else SESSIONS
    report = DemoReport(
        "node-loss",
        TITLE,
        GUIDE,
        {
            "cluster": stack.cluster,
            "stack": stack.stack,
            "node": node,
            "get threads": getters,
            "visitors": visitors,
            "sessions": n_sessions,
            "smoke": smoke,
        },
    )
    record = Record(node, placement.on(node), placement.api_per_node(), stack.api_replicas(), getters, warning=warning)
    record.primary_before = placement.redis_node("master") or ""
    url = stack.balancer_url(placement)
    where = ", ".join(f"{n}: {', '.join(placement.on(n)) or 'nothing'}" for n in placement.nodes)
    ctx.say(f"{stack.stack} over {stack.cluster}, balancer {url}; {where}")
    ctx.say(f"losing {node} (runs {', '.join(record.also_lost)})" + (f" — {warning}" if warning else ""))
    pinned = stack.pinned_to(node)
    accounts = _accounts(url, auth=True)
    sessions = _login_all(url, n_sessions, accounts)
    record.node_of = stack.containers()
    before_s = ctx.seconds(BEFORE_S, SMOKE_BEFORE_S)
    after_s = ctx.seconds(AFTER_S, SMOKE_AFTER_S)
    started = time.time()
    try:
        with Load(url, sessions, accounts, getters, visitors, SMOKE_LOAD_LIMIT_S if smoke else LOAD_LIMIT_S) as load:
            _wait(lambda: time.time() - started >= before_s and len(load.snapshot()) >= 20, 60, "the load under way")
            ctx.say(f"SIGKILL {node}'s engine container (scalecube nodes kill {node})")
            record.kill_started = time.time()
            stack.kill(node)
            record.killed_at = time.time()
            _await_recovery(ctx, stack, load, record)
            record.primary_after = _primary(stack, node)
            if record.primary_lost:
                ctx.say(f"the sessions Redis primary: {record.primary_before} → {record.primary_after or 'none found'}")
            end = time.time() + after_s
            _wait(lambda: time.time() >= end, after_s + 5, "the load after the recovery")
        record.events = load.snapshot()
        record.sentinel_log = stack.sentinel_events(record.kill_started - 5, without=node)
        record.balancer_log = stack.balancer_log(record.kill_started - 5, without=node)
        record.ejected_at = ejected_at(record.balancer_log, record.kill_started)
        record.node_of = {**record.node_of, **stack.containers()}
        checked = sessions + load.logins
        record.sessions_checked, record.under_load = len(checked), len(load.logins)
        record.lost = _lost(url, checked)
    finally:
        _restore(ctx, stack, record, pinned)
    _report(ctx, report, record, placement.nodes, started)
    return report


def _wait(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _await_recovery(ctx: DemoContext, stack, load: Load, record: Record) -> None:  # noqa: ANN001 - NodeStack
    """The Swarm's running api tasks back to the count, none on the lost node; then each of them answering through
    the balancer (its first 200 in the load's events). Bounded; a timeout leaves the times unset (claim 2 fails)."""
    deadline = time.monotonic() + RESCHEDULE_TIMEOUT
    running: list[str] = []
    while time.monotonic() < deadline:
        try:
            tasks = [t for t in stack.tasks("api") if t.running]
        except Exception:  # noqa: BLE001 - managers electing, a slow answer: ask again
            tasks = []
        if len(tasks) == record.replicas and all(t.node != record.node for t in tasks):
            record.tasks_back_at = time.time()
            record.api_after = dict(Counter(t.node for t in tasks))
            record.node_of = {**record.node_of, **{t.container: t.node for t in tasks}}
            running = [t.container for t in tasks]
            break
        time.sleep(0.5)
    if record.tasks_back_at is None:
        ctx.say(f"the api is not back to {record.replicas} running tasks within {RESCHEDULE_TIMEOUT:g} s")
        return
    ctx.say(
        f"{record.replicas} api tasks running off {record.node} after {record.reschedule_s:.1f} s: {record.api_after}"
    )
    while time.monotonic() < deadline:
        firsts = {}
        for event in load.snapshot():
            host = event.served_by.rsplit("/", 1)[0]
            if event.outcome == "200" and host in running and host not in firsts:
                firsts[host] = event.t
        if len(firsts) == len(running):
            record.served_back_at = max(record.tasks_back_at, *firsts.values())
            ctx.say(f"every api replica serving through the balancer {record.served_s:.1f} s after the kill")
            return
        time.sleep(0.5)
    ctx.say("not every api replica served through the balancer in time")


def _primary(stack, lost: str) -> str:  # noqa: ANN001 - NodeStack
    """The sessions Redis primary's node, asked of the data nodes off the ``lost`` node; "" if none answers so."""
    try:
        return stack.placement(without=lost).redis_node("master") or ""
    except Exception:  # noqa: BLE001 - the manager busy: reported as none found, and claim 5 says so
        return ""


def _restore(ctx: DemoContext, stack, record: Record, pinned: list[str]) -> None:  # noqa: ANN001 - NodeStack
    """The lost node started again, ready in the Swarm, the services pinned to it running there; else say how."""
    from infra.docker.nodes import CLUSTER

    if not record.killed_at:
        return
    again = f"scalecube nodes start {record.node}" + ("" if stack.cluster == CLUSTER else f" --cluster {stack.cluster}")
    ctx.say(f"putting the stack back: {again}" + (f", then {', '.join(pinned)} running there" if pinned else ""))
    started = time.monotonic()
    try:
        stack.start(record.node)
        _wait(lambda: stack.running_on(record.node, pinned), RESTART_TIMEOUT, f"{', '.join(pinned)} on {record.node}")
        record.restored_s = time.monotonic() - started
        record.roles_after = ", ".join(f"{service} {role}" for service, role in stack.placement().redis_roles)
    except Exception as exc:  # noqa: BLE001 - reported, with the command that brings it back
        record.restore_problem = f"{record.node} not back ({exc}); bring it back with: {again}"
        ctx.say(record.restore_problem)


# The Sentinel events that tell how a failover went: its steps, and what delays one (TILT: the Sentinel's own timer
# ran late, so it acts on nothing for 30 s; an abort for want of a good replica; a vote with no majority).
FAILOVER_EVENTS = (
    "+tilt",
    "-tilt",
    "+sdown master",
    "+odown",
    "+try-failover",
    "+elected-leader",
    "-failover-abort",
    "+selected-slave",
    "+switch-master",
)


def failover_steps(log: str) -> list[str]:
    """``"sentinel-2 04:04:28.789 +odown master scalecube redis 6379 #quorum 2/2"``, ... from ``sentinels.log``."""
    steps, service = [], ""
    for line in log.splitlines():
        if line.startswith("== "):
            service = line[3:].split(" ", 1)[0]
            continue
        # "1:X 07 Dec 2026 04:04:28.789 # +odown ...": the clock is the fifth word, the event after "# " or "* "
        words = line.split(" ", 6)
        if len(words) == 7 and words[5] in ("#", "*") and words[6].startswith(FAILOVER_EVENTS):
            steps.append(f"{service} {words[4]} {words[6]}")
    return steps


def _report(ctx: DemoContext, report: DemoReport, record: Record, nodes: tuple[str, ...], started: float) -> None:
    recovered = record.served_back_at or record.tasks_back_at or record.killed_at
    windows = (
        ("before the kill", started, record.kill_started),
        (f"{record.node} lost → api back", record.kill_started, recovered),
        ("after the recovery", recovered, float("inf")),
    )
    replica_of = {
        served_by: f"{record.node_serving(served_by)} {served_by.rsplit('/', 1)[0]}"
        for served_by in {e.served_by for e in record.events if e.served_by}
    }
    for name, start, end in windows:
        events = [e for e in record.events if start <= e.sent < end]
        report.phases.append(Phase(name, result(name, events, record), replica_of=replica_of))
    report.claims = judge(record)
    cut = in_flight(record)
    gets = [e for e in record.events if e.route == GET_ROUTE]
    logins = [e for e in record.events if e.route == LOGIN]
    me = [e for e in record.events if e.route == ME]
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    per = lambda counts: ", ".join(f"{n} {c}" for n, c in sorted(counts.items())) or "none"  # noqa: E731
    table = Table(
        "node-loss",
        [
            "node lost",
            "also on it",
            "api before",
            "api after",
            "tasks back s",
            "serving s",
            "GET /",
            "GET failed",
            "in flight (504/cut)",
            "/session/me failed",
            "logins ok/failed",
            "Redis primary",
            "sessions out s",
            "sessions checked",
            "lost",
            "node back s",
        ],
    )
    table.rows.append(
        [
            record.node,
            ", ".join(s for s in record.also_lost if not s.startswith("api")) or "-",
            per(record.api_before),
            per(record.api_after),
            fmt(record.reschedule_s),
            fmt(record.served_s),
            f"{len(gets):,}",
            str(sum(e.outcome != "200" for e in gets) - len(cut)),
            str(len(cut)),
            str(sum(e.outcome != "200" for e in me)),
            f"{sum(e.outcome == '200' for e in logins)}/{sum(e.outcome != '200' for e in logins)}",
            f"{record.primary_before} → {record.primary_after or '?'}"
            if record.primary_lost
            else record.primary_before,
            f"{session_window(record):.1f}",
            str(record.sessions_checked),
            str(record.lost),
            fmt(record.restored_s) if not record.restore_problem else "not back",
        ]
    )
    report.tables.append(table)
    series = per_node_series(record, started)
    report.lines[
        f"responses per second by the node that served them (t = 0: load start; {record.node} killed at "
        f"{record.killed_at - started:.1f} s)"
    ] = series
    _write_series(ctx.out, series, nodes)
    report.notes += [
        f"{record.node} was SIGKILLed (its engine container: the machine and every task on it at once); it also ran "
        f"{', '.join(record.also_lost)}. The balancer is pinned to node-1; the sessions Redis group one service "
        "per node from node-2 (infra/docker/swarm.py: spread_over): the primary on node-2, its replicas on node-3 "
        "and node-1, a Sentinel on each node.",
        "sessions out: from the kill to the last session request (/session/me or a login) refused with a 503 naming "
        f"redis — the Sentinels noticing the primary gone (down after {DOWN_AFTER_MS / 1000:g} s), electing "
        "a leader and promoting a replica, then the api's Sentinel client finding it"
        + (
            ""
            if record.primary_lost
            else "; the primary was not on the lost node, so it stays 0 unless a login found no replica to WAIT for"
        )
        + ".",
        "tasks back: from the kill to the Swarm reporting the api's replica count running, none on the lost node "
        "(a task is running once its healthcheck passes); serving: to the last new replica's first 200 through "
        "the balancer. Most of it is the Swarm noticing the node is gone (its heartbeats), then starting the tasks.",
        "in flight: GETs the lost node held — sent before the kill landed, or after it but before the balancer's "
        f"checks marked the node's api servers DOWN ({_ejected(record)}), on a kept-alive connection to the dead "
        "machine. No answer comes from a vanished machine and HAProxy does not retry a response timeout "
        "(lb/haproxy/haproxy.cfg), so each ends as a 504 after `timeout server` (10 s) or cut mid-body; "
        "counted apart, at most one per GET thread (it waits that long on it).",
        (
            f"Put back: {record.node} started again and ready in the Swarm in {record.restored_s:.1f} s "
            f"(scalecube nodes start), its pinned services running there again; the api replicas stay where Swarm "
            "moved them (it does not rebalance: `docker service update --force STACK_api` spreads them again)."
            if record.restored_s is not None
            else record.restore_problem or "the node was not killed"
        ),
    ]
    if record.roles_after:
        report.notes.append(f"The sessions Redis once the node is back: {record.roles_after}.")
    if record.balancer_log:
        (ctx.out / "balancer.log").write_text(record.balancer_log + "\n")
    if record.sentinel_log:
        (ctx.out / "sentinels.log").write_text(record.sentinel_log + "\n")
        steps = failover_steps(record.sentinel_log)
        if steps:
            report.notes.append(
                "The Sentinels' failover, in their words (sentinels.log has the whole of it): " + "; ".join(steps)
            )
    if record.warning:
        report.notes.append(record.warning)


def _write_series(out: Path, series: dict[str, list[tuple[float, float]]], nodes: tuple[str, ...]) -> None:
    """``served_by_node.csv``: one row per second, one column per node (and the failures)."""
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in nodes if n in series] + [n for n in series if n not in nodes]
    seconds = max((len(points) for points in series.values()), default=0)
    with open(out / "served_by_node.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["second", *names])
        for s in range(seconds):
            writer.writerow([s, *(int(series[n][s][1]) if s < len(series[n]) else 0 for n in names)])
