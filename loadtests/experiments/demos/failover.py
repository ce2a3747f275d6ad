"""``scalecube demo failover``: the sessions Redis as a primary, a replica and three Sentinels; the primary dies.

Locally, a stack of the demo's own (``scalecube up -d --services api --redis sentinel``: one api cluster, the
sessions Redis as ``redis`` + ``redis-replica`` + ``redis-sentinel-1..3``, quorum 2); with ``--docker``, the
running compose project's (the same five services, the api × N behind HAProxy). Visitors log in (in compose,
as accounts the demo registers at auth first: the api checks passwords there), then each keeps asking
``/session/me`` with its cookie (and now and then logs in again), while another loop asks ``/``, all through
the stack's balancer. Two rounds, each killing whichever node the Sentinels name the primary (SIGKILL; locally
the supervisor starts it again, in compose Docker's restart policy — both the Sentinel-managed way, as a
replica of the one promoted; ``loadtests/experiments/failover_stacks.py``):

1. ``primary killed``: the plain failover;
2. ``primary killed, 1 sentinel down``: the same with one Sentinel frozen (SIGSTOP; in compose its container
   paused) — two of three still make the quorum and the majority that elects a leader, so nothing should change.

Claims, per round, counted from the requests' own answers (events, not a tightly timed window):

- 0 sessions lost: every session acknowledged before the kill still answers ``/session/me`` afterwards
  (a login is answered only once the replica holds it: ``WAIT 1``);
- the session routes are unavailable ≤ 10 s: from the kill to the last failed session request of the round;
- during it, only 503s naming redis with a ``Retry-After`` — never a 401 (a lost session), a 500 or a timeout;
- ``/`` (no Redis) unaffected: every answer a 200;
- the old primary is back as a replica of the new one, its link up (its ``INFO replication``).

Two failovers bring the first primary back: the stack ends as it was found (in compose: every Sentinel
unpaused, every node running, the group settled). ``--target`` cannot kill anything: the claims are skipped.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

from infra.local.sentinel import DOWN_AFTER_MS
from loadtests.experiments import claims
from loadtests.experiments.context import DemoContext
from loadtests.experiments.failover_stacks import ComposeSentinels, FailoverStack, LocalSentinels
from loadtests.experiments.locust_runner import LoadResult, SeriesPoint
from loadtests.experiments.results import DemoReport, Phase, Table

TITLE = "Failover: the sessions Redis loses its primary, Sentinel promotes the replica"
GUIDE = (
    "Shared state makes every worker interchangeable, and one Redis the single point of failure: a primary "
    "with a replica and Sentinels (Redis's own HA engine) should lose no acknowledged session and make the "
    "session routes answer 503 for a few seconds only, while the routes that need no Redis do not notice."
)
WINDOW_LIMIT_S = 10.0
CLIENT_TIMEOUT = 5.0  # a session request not answered in this long counts as a timeout (a failure)
RECOVERY_TIMEOUT = 90.0  # per round: session routes answering again and the old primary a replica, at most
SESSIONS, SMOKE_SESSIONS = 200, 30  # logged in before the first kill
VISITORS, SMOKE_VISITORS = 6, 3  # threads asking /session/me (and logging in now and then)
ACCOUNTS = 10  # whom the sessions log in as, each many times (with auth: registered first, an argon2 hash each)
AFTER_REQUESTS = 100  # successful session requests after the recovery before a round ends
SESSION_ROUTES = ("/session/me", "/session/login")
ROOT = "/"
ROUNDS = (("primary killed", False), ("primary killed, 1 sentinel down", True))


@dataclass
class Event:
    t: float  # time.time()
    route: str
    status: int  # 0: no answer (timeout, refused)
    retry_after: bool = False
    dependency: str | None = None
    served_by: str = ""


@dataclass
class Round:
    name: str
    sentinel_down: bool
    killed: str = ""  # the node killed: the primary the Sentinels named (the local component, compose's service)
    action: str = ""  # how it was killed and who restarts it, in words
    new_primary: str | None = None  # the node every Sentinel names afterwards
    elections: int | None = None  # the Sentinels' epoch across the round: one per leader election they tried
    frozen: str = ""  # the Sentinel frozen (paused) meanwhile
    started: float = 0.0  # the load's events of this round: [started, ended)
    killed_at: float = 0.0
    ended: float = 0.0
    sessions_before: int = 0
    under_load: int = 0  # of which logged in by the visitors under load
    lost: int = 0
    rejoined: str = ""  # INFO replication of the old primary, in words
    rejoined_ok: bool = False
    problem: str = ""
    events: list[Event] = field(default_factory=list)


class Load:
    """Visitors with sessions asking /session/me (every 10th request a new login) and one loop asking /,
    each request recorded as an ``Event``. Threads, bounded by ``stop()`` and their own request timeout."""

    def __init__(self, url: str, sessions: list[str], visitors: int, accounts: Accounts) -> None:
        self.url = url
        self.sessions = sessions  # Cookie header values, one per session
        self.visitors = visitors
        self.accounts = accounts
        self.events: list[Event] = []
        self.logins: list[tuple[float, str]] = []  # (answered at, Cookie header) of each login made under load
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for n in range(self.visitors):
            self._threads.append(threading.Thread(target=self._visitor, args=(n,), daemon=True))
        self._threads.append(threading.Thread(target=self._root, daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(CLIENT_TIMEOUT * 3)

    def logins_before(self, t: float) -> list[str]:
        with self._lock:
            return [cookie for answered, cookie in self.logins if answered < t]

    def since(self, t: float) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.t >= t]

    def _record(self, route: str, response: httpx.Response | None) -> None:
        event = Event(time.time(), route, 0)
        if response is not None:
            event.status = response.status_code
            event.retry_after = bool(response.headers.get("retry-after"))
            event.served_by = response.headers.get("x-served-by", "")
            if response.status_code == 503:
                with contextlib.suppress(ValueError, AttributeError):
                    event.dependency = response.json().get("dependency")
        with self._lock:
            self.events.append(event)

    def _visitor(self, n: int) -> None:
        with httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT) as http:
            i = n
            while not self._stop.is_set():
                i += self.visitors
                http.cookies.clear()  # no jar: a login carrying an older session would log that one out
                if i % 10 == 0:
                    body = self.accounts.login(i // 10)
                    route, call = "/session/login", lambda: http.post("/session/login", json=body)
                else:
                    cookie = self.sessions[i % len(self.sessions)]
                    route, call = "/session/me", lambda: http.get("/session/me", headers={"Cookie": cookie})
                try:
                    response = call()
                except httpx.HTTPError:
                    response = None
                self._record(route, response)
                if route == "/session/login" and response is not None and response.status_code == 200:
                    with self._lock:
                        self.logins.append((time.time(), _cookie(response)))
                if response is None or response.status_code != 200:
                    time.sleep(0.05)

    def _root(self) -> None:
        with httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT) as http:
            while not self._stop.is_set():
                try:
                    response = http.get(ROOT)
                except httpx.HTTPError:
                    response = None
                self._record(ROOT, response)
                time.sleep(0.02)


def run(ctx: DemoContext) -> DemoReport:
    smoke = ctx.smoke
    n_sessions = SMOKE_SESSIONS if smoke else SESSIONS
    visitors = ctx.options.users or (SMOKE_VISITORS if smoke else VISITORS)
    report = DemoReport(
        "failover",
        TITLE,
        GUIDE,
        {"sessions": n_sessions, "visitors": visitors, "smoke": smoke, "window_limit_s": WINDOW_LIMIT_S},
    )
    names = [f"{name}: {what}" for name, _ in ROUNDS for what in _CLAIMS]
    if ctx.target and not ctx.docker_project:
        report.phases = [Phase(name, note="skipped: --target (nothing to kill)") for name, _ in ROUNDS]
        report.claims = [
            claims.skipped(name, "--target: the demo kills the stack's Redis primary; run it locally or --docker")
            for name in names
        ]
        return report
    if ctx.docker_project:
        from docker.errors import DockerException

        compose = ComposeSentinels.of(ctx)
        started = time.time()
        try:
            rounds = _rounds(ctx, report, compose, n_sessions, visitors, auth=compose.auth)
        except DockerException as exc:  # the engine refused a pause, a kill...: exit 2 with the reason
            raise RuntimeError(f"--docker: {exc}") from exc
        finally:
            ctx.say("putting the stack back as found: every Sentinel unpaused, every node running, the group settled")
            compose.restore()
            compose.keep_logs(ctx.out / "logs" / "failover", since=started - 1)
    else:
        with ctx.workdir() as workdir:
            local = LocalSentinels(workdir, workers=2, keep_logs=ctx.out / "logs" / "failover")
            try:
                ctx.say("starting the stack: scalecube up -d --services api --redis sentinel")
                local.up()
                rounds = _rounds(ctx, report, local, n_sessions, visitors, auth=False)
            finally:
                local.down()
    _judge(report, rounds)
    return report


def _rounds(
    ctx: DemoContext, report: DemoReport, stack: FailoverStack, n_sessions: int, visitors: int, *, auth: bool
) -> list[Round]:
    """Sessions logged in, the visitors' load started, then each round in turn; the load stopped on the way out."""
    report.settings["where"] = stack.where
    accounts = _accounts(stack.url, auth)
    ctx.say(f"{stack.where} at {stack.url}: logging in {n_sessions} sessions")
    sessions = _login_all(stack.url, n_sessions, accounts)
    load = Load(stack.url, sessions, visitors, accounts)
    load.start()
    try:
        return [_round(ctx, stack, load, sessions, name, sentinel_down) for name, sentinel_down in ROUNDS]
    finally:
        load.stop()


_CLAIMS = (
    "0 sessions lost",
    f"session routes unavailable ≤ {WINDOW_LIMIT_S:g} s",
    "only 503 + Retry-After naming redis meanwhile",
    "/ unaffected",
    "old primary rejoins as a replica",
)


@dataclass(frozen=True)
class Accounts:
    """Whom the sessions log in as: a few names, each logged in many times (each login is a session of its
    own). With auth (compose: the api checks passwords at auth) they are registered first, with a password of
    the run's; without, a name is enough."""

    names: tuple[str, ...]
    password: str | None = None

    def login(self, n: int) -> dict[str, str]:
        return {"user": self.names[n % len(self.names)], **({"password": self.password} if self.password else {})}


def _accounts(url: str, auth: bool) -> Accounts:
    run = uuid.uuid4().hex[:8]
    names = tuple(f"failover-{run}-{n}" for n in range(ACCOUNTS))
    if not auth:
        return Accounts(names)
    password = f"failover-demo-{uuid.uuid4().hex}"  # auth's policy: 10 to 128 characters, not a common one
    with httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT * 2) as http:
        for name in names:
            status = 0
            for _ in range(10):  # a busy machine: a registration (an argon2 hash) may time out once; bounded
                try:
                    status = http.post("/auth/register", json={"username": name, "password": password}).status_code
                except httpx.HTTPError:
                    continue
                if status in (201, 409):  # 409: the try before was answered after all
                    break
                time.sleep(0.2)
            if status not in (201, 409):
                raise RuntimeError(
                    f"could not register the demo's account {name} through {url}: {status or 'no answer'}"
                )
    return Accounts(names, password)


def _cookie(response: httpx.Response) -> str:
    """The session cookie a login set, as a Cookie header value."""
    name, value = next(iter(response.cookies.items()))
    return f"{name}={value}"


def _login_all(url: str, n: int, accounts: Accounts) -> list[str]:
    sessions = []
    with httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT) as http:
        for i in range(n):
            for _ in range(20):  # a busy machine: a login may time out once; bounded
                http.cookies.clear()  # each login a new client: one carrying a session would log it out
                try:
                    response = http.post("/session/login", json=accounts.login(i))
                except httpx.HTTPError:
                    continue
                if response.status_code == 200:
                    sessions.append(_cookie(response))
                    break
                time.sleep(0.1)
    if len(sessions) < n:
        raise RuntimeError(f"only {len(sessions)} of {n} logins succeeded before any fault")
    return sessions


def _round(
    ctx: DemoContext, stack: FailoverStack, load: Load, sessions: list[str], name: str, sentinel_down: bool
) -> Round:
    current = Round(name, sentinel_down, started=time.time())
    _wait_successes(load, current.started, 50)  # the routes answering as usual before the fault
    current.killed = stack.watch.settled(RECOVERY_TIMEOUT)
    restarts_before = stack.restarts(current.killed)
    epoch_before = stack.watch.epoch()
    try:
        if sentinel_down:
            current.frozen = stack.sentinel_names()[0]
            stack.freeze(current.frozen)
            ctx.say(f"{name}: {current.frozen} {stack.freezes}")
        current.killed_at = time.time()
        ctx.say(f"{name}: SIGKILL {current.killed} (the primary the Sentinels name)")
        current.action = stack.kill(current.killed)
        current.problem = _wait_recovered(stack, load, current)
    finally:
        if current.frozen:
            stack.thaw(current.frozen)
    current.ended = time.time()
    current.events = [e for e in load.since(current.started) if e.t < current.ended]
    # Every session acknowledged before the kill: those logged in first, and those the visitors' logins got
    # up to the kill — the ones asynchronous replication alone could have lost.
    under_load = load.logins_before(current.killed_at)
    current.sessions_before = len(sessions) + len(under_load)
    current.under_load = len(under_load)
    current.lost = _lost(stack.url, sessions + under_load)
    # Judged once every Sentinel agrees and the old primary follows the one they name (bounded): a thawed
    # Sentinel names the old primary until it catches up, and a replica may be seen linked a moment later.
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    current.new_primary = stack.watch.agreed()
    while time.monotonic() < deadline and (
        current.new_primary is None or not stack.watch.follows(current.killed, current.new_primary)
    ):
        time.sleep(0.2)
        current.new_primary = stack.watch.agreed()
    epoch_after = stack.watch.epoch()
    if epoch_before is not None and epoch_after is not None:
        current.elections = epoch_after - epoch_before
    info = stack.watch.replication(current.killed) or {}
    restarts_after = stack.restarts(current.killed)
    brought_back = (
        f"; restarts {restarts_before} → {restarts_after}"
        if restarts_before is not None and restarts_after is not None
        else ""
    )
    current.rejoined = (
        f"{current.killed}: role {info.get('role', '?')}, master {info.get('master_host', '?')}:"
        f"{info.get('master_port', '?')}, link {info.get('master_link_status', '?')}{brought_back}"
    )
    current.rejoined_ok = (
        current.new_primary is not None
        and current.new_primary != current.killed
        and stack.watch.follows(current.killed, current.new_primary)
    )
    ctx.say(f"{name}: {_window(current):.1f} s unavailable, {current.lost} sessions lost; {current.rejoined}")
    return current


def _wait_successes(load: Load, since: float, count: int, timeout: float = RECOVERY_TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 for e in load.since(since) if e.route in SESSION_ROUTES and e.status == 200) >= count:
            return True
        time.sleep(0.1)
    return False


def _wait_recovered(stack: FailoverStack, load: Load, current: Round) -> str:
    """Until a session request failed, then the session routes answered ``AFTER_REQUESTS`` times more in a row
    (any failure starts the count again) and the old primary is a replica with its link up; bounded."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while time.monotonic() < deadline:
        events = [e for e in load.since(current.killed_at) if e.route in SESSION_ROUTES]
        failed = [i for i, e in enumerate(events) if e.status != 200]
        streak = len(events) - (failed[-1] + 1) if failed else 0
        info = stack.watch.replication(current.killed) or {}
        if failed and streak >= AFTER_REQUESTS and info.get("master_link_status") == "up":
            return ""
        time.sleep(0.2)
    return f"not recovered within {RECOVERY_TIMEOUT:g}s"


def _lost(url: str, sessions: list[str]) -> int:
    """Sessions that no longer answer: a 401 (a 503 is asked again, bounded)."""
    lost = 0
    with httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT) as http:
        for cookie in sessions:
            for _ in range(20):
                http.cookies.clear()
                try:
                    status = http.get("/session/me", headers={"Cookie": cookie}).status_code
                except httpx.HTTPError:
                    status = 0
                if status in (200, 401):
                    break
                time.sleep(0.2)
            lost += status != 200
    return lost


def _window(current: Round) -> float:
    """From the kill to the last failed session request of the round (0: none failed)."""
    failed = [e.t for e in current.events if e.route in SESSION_ROUTES and e.status != 200 and e.t >= current.killed_at]
    return max(failed) - current.killed_at if failed else 0.0


def _result(current: Round) -> LoadResult:
    """The round's events as a LoadResult: totals, and one point per second for the report's charts."""
    events = current.events
    result = LoadResult(current.name)
    if not events:
        return result
    start = events[0].t
    result.requests = len(events)
    result.failures = sum(e.status != 200 for e in events)
    result.seconds = max(0.001, events[-1].t - start)
    result.requests_by_name = dict(Counter(e.route for e in events))
    result.failures_by_name = dict(Counter(e.route for e in events if e.status != 200))
    result.failures_by_error = dict(
        Counter(f"{e.route} {e.status or 'no answer'} {e.dependency or ''}".strip() for e in events if e.status != 200)
    )
    result.served_by = dict(Counter(e.served_by for e in events if e.served_by))
    by_second: dict[int, list[Event]] = {}
    for event in events:
        by_second.setdefault(int(event.t - start), []).append(event)
    result.series = [
        SeriesPoint(
            float(s),
            0,
            float(len(by_second.get(s, []))),
            float(sum(e.status != 200 for e in by_second.get(s, []))),
            None,
            None,
            None,
        )
        for s in range(int(result.seconds) + 1)
    ]
    return result


def _judge(report: DemoReport, rounds: list[Round]) -> None:
    table = Table(
        "failover",
        [
            "round",
            "killed",
            "new primary",
            "sentinel frozen",
            "sentinel elections",
            "sessions before",
            "lost",
            "unavailable s",
            "session requests",
            "503 + Retry-After",
            "other failures",
            "/ requests",
            "/ failures",
            "old primary now",
        ],
    )
    for current in rounds:
        after_kill = [e for e in current.events if e.t >= current.killed_at]
        session = [e for e in after_kill if e.route in SESSION_ROUTES]
        failed = [e for e in session if e.status != 200]
        proper = [e for e in failed if e.status == 503 and e.retry_after and e.dependency == "redis"]
        root = [e for e in current.events if e.route == ROOT]
        root_failed = [e for e in root if e.status != 200]
        window = _window(current)
        other = Counter(f"{e.route} {e.status or 'no answer'}" for e in failed if e not in proper)
        table.rows.append(
            [
                current.name,
                current.killed,
                current.new_primary or "?",
                current.frozen or "-",
                "?" if current.elections is None else str(current.elections),
                str(current.sessions_before),
                str(current.lost),
                f"{window:.1f}",
                str(len(session)),
                str(len(proper)),
                ", ".join(f"{n}× {what}" for what, n in other.items()) or "0",
                str(len(root)),
                str(len(root_failed)),
                current.rejoined,
            ]
        )
        report.phases.append(
            Phase(
                current.name,
                _result(current),
                note=f"SIGKILL {current.killed}: {current.action}"
                + (f"; {current.frozen} frozen" if current.frozen else ""),
                facts={"unavailable_s": round(window, 2), "lost": current.lost},
            )
        )
        prefix = f"{current.name}: "
        problem = f" ({current.problem})" if current.problem else ""
        report.claims += [
            claims.Claim(
                prefix + _CLAIMS[0],
                current.lost,
                0,
                claims.Verdict.HOLDS if current.lost == 0 and current.sessions_before else claims.Verdict.FAILS,
                f"{current.lost} of {current.sessions_before} sessions acknowledged before the kill "
                f"({current.under_load} of them logged in under load) no longer answer /session/me",
                "sessions",
            ),
            claims.Claim(
                prefix + _CLAIMS[1],
                round(window, 2),
                WINDOW_LIMIT_S,
                claims.Verdict.HOLDS
                if failed and window <= WINDOW_LIMIT_S and not current.problem
                else claims.Verdict.FAILS,
                f"from the SIGKILL to the last failed session request: {window:.1f} s; {len(failed)} of "
                f"{len(session)} session requests failed after the kill"
                + ("" if failed else " — none failed: was the primary killed?")
                + problem,
                "s",
            ),
            claims.Claim(
                prefix + _CLAIMS[2],
                len(failed) - len(proper),
                0,
                claims.Verdict.HOLDS if failed and len(proper) == len(failed) else claims.Verdict.FAILS,
                f"{len(proper)} of {len(failed)} failed session requests were 503 + Retry-After naming redis"
                + (f"; the others: {', '.join(f'{n}× {w}' for w, n in other.items())}" if other else ""),
                "requests",
            ),
            claims.Claim(
                prefix + _CLAIMS[3],
                len(root_failed),
                0,
                claims.Verdict.HOLDS if root and not root_failed else claims.Verdict.FAILS,
                f"{len(root) - len(root_failed)} of {len(root)} GET / answered 200 during the round",
                "requests",
            ),
            claims.Claim(
                prefix + _CLAIMS[4],
                None,
                None,
                claims.Verdict.HOLDS if current.rejoined_ok else claims.Verdict.FAILS,
                current.rejoined
                + (f" (new primary {current.new_primary})" if current.new_primary else "")
                + ("" if current.elections in (None, 1) else f"; {current.elections} Sentinel elections in the round"),
            ),
        ]
    report.tables.append(table)
    report.notes += [
        "Each round kills whichever node the Sentinels name the primary; its supervisor (locally scalecube's, in "
        "compose Docker's restart policy) starts it again, and it waits until the Sentinels have promoted the "
        "replica, then starts as that one's replica (infra/local/sentinel.py: primary_for_restart; "
        "docker-compose.yml: x-sessions-redis). How each was killed and brought back: "
        + "; ".join(f"{current.name}: {current.action}" for current in rounds)
        + ".",
        "The window runs from the SIGKILL to the last failed session request: it holds the Sentinels' "
        f"down-after ({DOWN_AFTER_MS / 1000:g} s), the election and the promotion, and the logins refused until the old primary is a "
        "replica again (a login waits for one replica: WAIT 1). GET / needs no Redis.",
        "sentinel elections: how far the Sentinels' epoch moved across the round, one per leader election they "
        "tried — 1 is a clean failover; more is a split vote tried again (likelier with one Sentinel down) or a "
        f"second failover (down-after {DOWN_AFTER_MS / 1000:g} s: a node that stalls on a loaded machine looks dead).",
        "Round 2 freezes one of the three Sentinels (SIGSTOP; in compose its container paused) before the kill: "
        "the two left make the quorum (2) "
        "and the majority that elects the leader, so the failover is the same.",
    ]
