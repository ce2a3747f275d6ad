"""``scalecube demo cache``: a slow report served through each worker's own memory vs one shared Redis.

The api serves ``GET /report`` through a read-through cache (``services/api/report.py``); each
computation of a report is counted at its source (Redis INCR ``REPORT_READS_KEY``, and by process in
``REPORT_READERS_KEY``). Two stacks of the same shape, ``REPLICAS`` replicas × N workers behind a
balancer, one per ``CACHE_BACKEND``:

- **load**: Locust asks for the same report flat out for the phase. A memory cache is computed again by
  every worker process once per TTL period (``CACHE_TTL_SECONDS`` + the computation itself: a period
  starts when the new value is written); the Redis cache once per period for the whole stack.
- **bursts**: ``BURST`` (200, the guides' ``ab -c200``) requests at once, over connections opened
  beforehand so that they arrive together: on a hot key just past its TTL (the Redis cache serves the
  previous value while exactly one caller recomputes), and on a key never computed (nothing to serve:
  everyone waits for the one computation). The memory cache is shown on a cold key too: one computation
  per worker process it reached.

Computations are counted, never timed. The one time judged is each burst request's wait, against one
computation plus ``WAIT_BOUND`` (generous: 200 requests through a balancer on a shared 2-core machine).

``--docker``: the compose stack runs one backend (its api's ``CACHE_BACKEND``, redis unless set): its
claims are judged through the balancer with the stack's TTL, counting in the stack's Redis; the other
backend's are skipped, saying how to start the stack to judge them.
"""

from __future__ import annotations

import asyncio
import collections
import json
import statistics
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis

from loadtests.experiments import claims
from loadtests.experiments.context import DemoContext
from loadtests.experiments.get_load import get_spec, load_gets
from loadtests.experiments.locust_runner import LoadResult
from loadtests.experiments.results import DemoReport, Phase, Table
from loadtests.experiments.rigs import HOSTS, Rig
from services.api.report import REPORT_READERS_KEY, REPORT_READS_KEY
from services.api.settings import ApiSettings

TITLE = "Cache: every worker's own memory vs one shared Redis; one recomputation per expiry under 200 at once"
GUIDE = (
    "Every worker has its own memory: a cache kept there is computed again by every worker (and every "
    "container); a shared store such as Redis keeps one copy for all of them."
)
BACKENDS = {"memory": "memcache", "redis": "rediscache"}  # CACHE_BACKEND -> the replicas' DNS service name
REPLICAS = 2
WORKERS, SMOKE_WORKERS = 2, 1
TTL, SMOKE_TTL = 2.0, 1.5  # CACHE_TTL_SECONDS
DELAY, SMOKE_DELAY = 0.5, 0.3  # REPORT_SOURCE_DELAY: one computation of the report
BURST = 200
WAIT_BOUND = 5.0  # seconds a burst request may wait beyond one computation
BURST_TIMEOUT = 60.0  # a request of a burst with no answer by then is counted as not answered
LOW_SHARE = 0.5  # a loaded machine stretches each period: at least half the expected count
LOAD_KEY, HOT_KEY, COLD_KEY = "daily", "hot", "cold"

MEMORY_CLAIM = "memory: ~1 computation per worker process per TTL period"
REDIS_CLAIM = "redis: ~1 computation per TTL period for the whole stack"
HOT_CLAIM = f"redis: a hot key expiring under {BURST} at once is recomputed exactly once"
COLD_CLAIM = f"redis: a key never computed, {BURST} at once: computed exactly once, the others wait for it"
MEMORY_BURST_CLAIM = f"memory: {BURST} at once on a cold key: one computation per worker process reached"
WAIT_CLAIM = f"every burst request answered 200, none waiting longer than one computation + {WAIT_BOUND:g} s"


Answer = tuple[int, str, str, float]  # status (0: no answer), outcome (or the error), X-Served-By, wait (s)


class _Connection:
    """One keep-alive HTTP/1.1 connection, by hand: ``BURST`` of them answer at once, where a client library's
    pool of 200 connections costs more time than the requests it sends (its latencies would be its own)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, url: str) -> _Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80, limit=2**20)
        return cls(reader, writer, parts.netloc)

    async def get(self, path: str) -> Answer:
        started = time.monotonic()
        try:
            self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nAccept: */*\r\n\r\n".encode())
            await self.writer.drain()
            head = (await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), BURST_TIMEOUT)).decode("latin-1")
            lines = head.split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
            status = int(lines[0].split()[1])
        except (OSError, ValueError, IndexError, TimeoutError, asyncio.IncompleteReadError) as exc:
            return 0, type(exc).__name__, "", time.monotonic() - started
        waited = time.monotonic() - started
        try:
            outcome = str(json.loads(body).get("outcome", "?")) if status == 200 else "error"
        except ValueError:
            outcome = "undecodable"
        return status, outcome, headers.get("x-served-by", ""), waited

    def close(self) -> None:
        self.writer.close()


@dataclass
class Burst:
    name: str
    backend: str
    kind: str  # hot: a key just past its TTL; cold: a key never computed
    result: LoadResult
    computations: int
    by_reader: dict[str, int]
    outcomes: dict[str, int]
    max_wait_s: float


def run(ctx: DemoContext) -> DemoReport:
    users, seconds = ctx.users(16), ctx.seconds(20)
    workers = SMOKE_WORKERS if ctx.smoke else WORKERS
    ttl, delay = (SMOKE_TTL, SMOKE_DELAY) if ctx.smoke else (TTL, DELAY)
    report = DemoReport(
        "cache",
        TITLE,
        GUIDE,
        {
            "users": users,
            "seconds": seconds,
            "replicas": REPLICAS,
            "workers_per_replica": workers,
            "ttl_s": ttl,
            "computation_s": delay,
            "burst": BURST,
            "smoke": ctx.smoke,
        },
    )
    if ctx.docker_project:
        return _against_compose(ctx, report, users, seconds)
    if ctx.target:
        reason = "the computations are counted in the Redis of stacks the demo starts; not with --target"
        report.phases = [Phase(f"{backend} cache", note=f"skipped: {reason}") for backend in BACKENDS]
        result = load_gets(ctx, "target", get_spec(ctx.target, [f"/report?key={LOAD_KEY}"], users, seconds))
        report.phases.append(Phase("target", result, note=f"{ctx.target}, as it runs"))
        report.claims = [
            claims.skipped(name, reason)
            for name in (MEMORY_CLAIM, REDIS_CLAIM, HOT_CLAIM, COLD_CLAIM, MEMORY_BURST_CLAIM, WAIT_CLAIM)
        ]
        return report

    loads: dict[str, Phase] = {}
    bursts: list[Burst] = []
    with ctx.workdir() as workdir, ctx.rig(workdir, "stack") as rig:
        assert rig.redis is not None
        hosts = iter(HOSTS)
        urls = {}
        for db, (backend, service) in enumerate(BACKENDS.items(), start=1):  # every replica first: they start together
            urls[backend] = f"{rig.redis.url.rsplit('/', 1)[0]}/{db}"  # each stack counts in its own database
            env = {
                "REDIS_URL": urls[backend],
                "CACHE_BACKEND": backend,
                "CACHE_TTL_SECONDS": str(ttl),
                "REPORT_SOURCE_DELAY": str(delay),
            }
            for _ in range(REPLICAS):
                rig.replica(service, next(hosts), workers, env=env)
        ctx.say(
            f"starting {REPLICAS} replicas × {workers} worker(s) per cache backend ({', '.join(BACKENDS)}), "
            f"TTL {ttl:g} s, each computation {delay:g} s"
        )
        rig.topology.wait_ready(timeout=120)
        for backend, service in BACKENDS.items():
            balancer = rig.balancer(service, REPLICAS)
            try:
                with redis.Redis.from_url(urls[backend], decode_responses=True) as counter:
                    name = f"{backend} cache: {REPLICAS} replicas × {workers} worker(s)"
                    loads[backend] = _load(ctx, rig, counter, balancer.url, name, users, seconds, ttl, delay)
                    bursts += _bursts(ctx, counter, balancer.url, backend, ttl, delay)
            finally:
                balancer.stop()  # one balancer at a time: fewer processes sharing the cores

        burst_phases = [
            Phase(b.name, b.result, note=_burst_note(b), replica_of=rig.watcher.replica_of(b.result.served_by))
            for b in bursts
        ]
    report.phases = [*loads.values(), *burst_phases]
    report.tables = [_computations_table(loads, ttl, delay), _bursts_table(bursts)]
    report.bars = _bars(loads, bursts)
    report.claims = [
        _periods_claim(MEMORY_CLAIM, loads["memory"], per_process=True),
        _periods_claim(REDIS_CLAIM, loads["redis"], per_process=False),
        *_burst_claims(bursts, delay, ttl),
    ]
    _explain(report, ttl, delay)
    return report


# -- measuring ------------------------------------------------------------------------------------


def _counts(counter: redis.Redis) -> tuple[int, dict[str, int]]:
    readers = {reader: int(n) for reader, n in counter.hgetall(REPORT_READERS_KEY).items()}
    return int(counter.get(REPORT_READS_KEY) or 0), readers


def _since(before: tuple[int, dict[str, int]], after: tuple[int, dict[str, int]]) -> tuple[int, dict[str, int]]:
    by_reader = {reader: n - before[1].get(reader, 0) for reader, n in after[1].items()}
    return after[0] - before[0], {reader: n for reader, n in by_reader.items() if n > 0}


def _load(
    ctx: DemoContext,
    rig: Rig | None,
    counter: redis.Redis,
    url: str,
    name: str,
    users: int,
    seconds: float,
    ttl: float,
    delay: float,
) -> Phase:
    """Locust on one report for ``seconds``; its computations counted at the source around the phase."""
    before, started = _counts(counter), time.monotonic()
    result = load_gets(ctx, name, get_spec(url, [f"/report?key={LOAD_KEY}"], users, seconds, name="/report"))
    elapsed = time.monotonic() - started
    computations, by_reader = _since(before, _counts(counter))
    periods = elapsed / (ttl + delay)
    processes = len(result.served_by)
    return Phase(
        name,
        result,
        note=f"{computations} computations in {elapsed:.1f} s = {periods:.1f} TTL periods of {ttl + delay:g} s, "
        f"by {len(by_reader)} process(es); {processes} served",
        replica_of=rig.watcher.replica_of(result.served_by) if rig else {},
        facts={
            "computations": computations,
            "periods": round(periods, 2),
            "processes_served": processes,
            "processes_computed": len(by_reader),
            "per_process_max": max(by_reader.values(), default=0),
        },
    )


def _bursts(ctx: DemoContext, counter: redis.Redis, url: str, backend: str, ttl: float, delay: float) -> list[Burst]:
    tag = f"{int(time.time() * 1000) % 10**8}"  # keys of their own: never computed before this run
    if backend == "memory":
        return [_burst(ctx, counter, url, f"memory: {BURST} at once, cold key", backend, "cold", f"{COLD_KEY}-{tag}")]
    hot = f"{HOT_KEY}-{tag}"
    primed = asyncio.run(_get_once(url, f"/report?key={hot}"))  # computed once, now cached
    if primed[0] != 200:
        raise RuntimeError(f"GET /report?key={hot} through {url} answered {primed[0] or primed[1]}")
    return [
        _burst(
            ctx, counter, url, f"redis: {BURST} at once, hot key just expired", backend, "hot", hot, expire_after=ttl
        ),
        _burst(ctx, counter, url, f"redis: {BURST} at once, cold key", backend, "cold", f"{COLD_KEY}-{tag}"),
    ]


async def _get_once(url: str, path: str) -> Answer:
    connection = await _Connection.open(url)
    try:
        return await connection.get(path)
    finally:
        connection.close()


def _burst(
    ctx: DemoContext,
    counter: redis.Redis,
    url: str,
    name: str,
    backend: str,
    kind: str,
    key: str,
    *,
    expire_after: float | None = None,
) -> Burst:
    """``BURST`` requests for ``key`` at once over connections opened beforehand; after ``expire_after``
    seconds from now (the hot key's TTL) when given."""
    ctx.say(f"{name}: {BURST} requests at once")
    expires = time.monotonic() + expire_after if expire_after is not None else None

    async def fire() -> tuple[list[Answer], float]:
        connections = await asyncio.gather(*(_Connection.open(url) for _ in range(BURST)))
        try:
            await asyncio.gather(*(c.get("/healthz") for c in connections))  # each connection up and answering
            if expires is not None:
                await asyncio.sleep(max(0.0, expires - time.monotonic()) + 0.1)  # past the soft expiry
            started = time.monotonic()
            answers = await asyncio.gather(*(c.get(f"/report?key={key}") for c in connections))
            return list(answers), time.monotonic() - started
        finally:
            for connection in connections:
                connection.close()

    before = _counts(counter)
    answers, seconds = asyncio.run(fire())
    computations, by_reader = _since(before, _counts(counter))
    waits = sorted(wait for *_, wait in answers)
    failed = [(status, outcome) for status, outcome, _, _ in answers if status != 200]
    result = LoadResult(
        label=name,
        requests=len(answers),
        failures=len(failed),
        seconds=seconds,
        p50_ms=1000 * statistics.median(waits),
        p95_ms=1000 * waits[int(0.95 * (len(waits) - 1))],
        p99_ms=1000 * waits[int(0.99 * (len(waits) - 1))],
        avg_ms=1000 * statistics.fmean(waits),
        failures_by_error=dict(collections.Counter(f"{status} {outcome}" for status, outcome in failed)),
        served_by=dict(collections.Counter(served for status, _, served, _ in answers if status == 200 and served)),
    )
    outcomes = collections.Counter(outcome for status, outcome, _, _ in answers if status == 200)
    return Burst(name, backend, kind, result, computations, by_reader, dict(outcomes), waits[-1])


# -- judging --------------------------------------------------------------------------------------


def _periods_claim(name: str, phase: Phase, *, per_process: bool) -> claims.Claim:
    """Computations against ``units`` × TTL periods: at least ``LOW_SHARE`` of it (a loaded machine stretches
    each period), at most one more per unit (the window's edges: each unit's first computation)."""
    facts, result = phase.facts, phase.result
    computations, periods = facts["computations"], facts["periods"]
    units = int(facts["processes_served"]) if per_process else 1
    expected = units * periods
    low, high = LOW_SHARE * expected, expected + units
    measured = round(computations / expected, 2) if expected else 0.0
    who = f"{units} worker processes served" if per_process else "one cache for the whole stack"
    ok = low <= computations <= high
    text = (
        f"{computations} computations in {periods:g} TTL periods, {who}: expected ~{expected:.1f} "
        f"(holds from {low:.1f} to {high:.1f}: ≥ {LOW_SHARE:g} × expected, ≤ expected + 1 per "
        f"{'process' if per_process else 'stack'})"
    )
    if per_process and units < 2:
        ok, text = False, f"only {units} worker process served the load: nothing to compare ({text})"
    if result is None or result.requests == 0:
        ok, text = False, f"no request measured ({text})"
    return claims.Claim(name, measured, 1.0, claims.Verdict.HOLDS if ok else claims.Verdict.FAILS, text, "× expected")


def _burst_claims(bursts: list[Burst], delay: float, ttl: float) -> list[claims.Claim]:
    by_name = {f"{b.backend}: {b.kind}": b for b in bursts}
    judged = []
    for claim, key in ((HOT_CLAIM, "redis: hot"), (COLD_CLAIM, "redis: cold")):
        burst = by_name.get(key)
        if burst is None:
            judged.append(claims.skipped(claim, "not run", 1, "computations"))
            continue
        overlapped = sum(n for outcome, n in burst.outcomes.items() if outcome in ("stale", "waited"))
        ok = burst.computations == 1 and burst.result.failures == 0
        # A burst longer than a TTL period may see the key expire again: two computations would then be right.
        outlasted = burst.result.seconds > ttl + delay
        judged.append(
            claims.Claim(
                claim,
                burst.computations,
                1,
                claims.Verdict.HOLDS if ok else claims.Verdict.FAILS,
                f"{burst.computations} computation(s) at the source for {burst.result.requests} requests "
                f"({_outcomes(burst)}): {overlapped} answered while it ran (served stale, or waited for it); "
                f"the burst took {burst.result.seconds:.2f} s"
                + (f", longer than a TTL period ({ttl + delay:g} s): not a test of one expiry" if outlasted else ""),
                "computations",
            )
        )
    memory = by_name.get("memory: cold")
    if memory is None:
        judged.append(claims.skipped(MEMORY_BURST_CLAIM, "not run", 1, "per process"))
    else:
        reached = len(memory.result.served_by)
        most = max(memory.by_reader.values(), default=0)
        ok = most == 1 and memory.computations == len(memory.by_reader) == reached and memory.result.failures == 0
        judged.append(
            claims.Claim(
                MEMORY_BURST_CLAIM,
                most,
                1,
                claims.Verdict.HOLDS if ok else claims.Verdict.FAILS,
                f"{memory.computations} computations by {len(memory.by_reader)} process(es), at most {most} each; "
                f"{reached} process(es) answered (needs exactly one per process reached): {_outcomes(memory)}",
                "per process",
            )
        )
    if bursts:
        worst = max(b.max_wait_s for b in bursts)
        failed = sum(b.result.failures for b in bursts)
        bound = delay + WAIT_BOUND
        judged.append(
            claims.Claim(
                WAIT_CLAIM,
                round(worst, 3),
                round(bound, 3),
                claims.Verdict.HOLDS if failed == 0 and worst <= bound else claims.Verdict.FAILS,
                f"longest wait {worst:.2f} s over {len(bursts)} bursts (bound: the {delay:g} s computation + "
                f"{WAIT_BOUND:g} s, generous for a shared 2-core machine); {failed} not answered 200",
                "s",
            )
        )
    return judged


def _outcomes(burst: Burst) -> str:
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(burst.outcomes.items(), key=lambda kv: -kv[1]))


def _burst_note(burst: Burst) -> str:
    return (
        f"{burst.computations} computation(s) at the source; answers: {_outcomes(burst) or 'none'}; "
        f"{burst.result.seconds:.2f} s for the burst, longest wait {burst.max_wait_s:.2f} s"
    )


def _computations_table(loads: dict[str, Phase], ttl: float, delay: float) -> Table:
    table = Table(
        "computations",
        ["cache", "processes served", "TTL periods", "computations", "per period", "by process (most)"],
    )
    for backend, phase in loads.items():
        facts = phase.facts
        table.rows.append(
            [
                backend,
                str(int(facts["processes_served"])),
                f"{facts['periods']:g} × {ttl + delay:g} s",
                str(int(facts["computations"])),
                f"{facts['computations'] / facts['periods']:.2f}" if facts["periods"] else "—",
                f"{int(facts['processes_computed'])} ({int(facts['per_process_max'])})",
            ]
        )
    return table


def _bursts_table(bursts: list[Burst]) -> Table:
    table = Table("bursts", ["burst", "requests", "answered 200", "computations", "answers", "longest wait"])
    for burst in bursts:
        table.rows.append(
            [
                burst.name,
                str(burst.result.requests),
                str(burst.result.requests - burst.result.failures),
                str(burst.computations),
                _outcomes(burst),
                f"{burst.max_wait_s:.2f} s",
            ]
        )
    return table


def _bars(loads: dict[str, Phase], bursts: list[Burst]) -> dict[str, list[tuple[str, float]]]:
    """The computations counted at the source: per load phase and per burst."""
    return {
        "computations at the source, load phase": [
            (f"{backend} cache", phase.facts["computations"]) for backend, phase in loads.items()
        ],
        f"computations at the source, {BURST} at once": [
            (f"{burst.backend}, {burst.kind} key", burst.computations) for burst in bursts
        ],
    }


def _explain(report: DemoReport, ttl: float, delay: float) -> None:
    report.notes.append(
        f"Computations counted at the source (Redis INCR {REPORT_READS_KEY}, by host/pid in {REPORT_READERS_KEY}) "
        "just before and just after each phase and burst, never timed. A TTL period is the TTL plus one "
        f"computation ({ttl:g} + {delay:g} s): a value is fresh for the TTL from when it is written."
    )
    report.notes.append(
        "Answers say how each value was got: hit (fresh), stale (the previous value, served while one caller "
        "recomputes), waited (another caller's new value), computed (this request paid for it)."
    )


# -- against the compose stack --------------------------------------------------------------------


def _against_compose(ctx: DemoContext, report: DemoReport, users: int, seconds: float) -> DemoReport:
    """The backend the compose stack's api runs, judged through its balancer; the other one skipped."""
    from loadtests.experiments.docker_stack import DockerStack

    stack = DockerStack.of(ctx)
    stack.require("api", "lb", "redis", why="the api counts its report computations in the stack's Redis")
    assert ctx.target is not None
    env, defaults = stack.env("api"), ApiSettings.model_fields
    backend = env.get("CACHE_BACKEND") or defaults["cache_backend"].default
    ttl = float(env.get("CACHE_TTL_SECONDS") or defaults["cache_ttl_seconds"].default)
    delay = float(env.get("REPORT_SOURCE_DELAY") or defaults["report_source_delay"].default)
    workers = stack.workers("api")
    seconds = max(seconds, (2 if ctx.smoke else 3) * (ttl + delay) + 1)  # a few periods, whatever the stack's TTL
    report.settings.update(
        containers=len(workers),
        workers_per_replica=min(workers.values() or [0]),
        ttl_s=ttl,
        computation_s=delay,
        seconds=seconds,
        backend=backend,
    )
    hosts = stack.hostnames("api")
    name = f"compose: {backend} cache, {len(workers)} containers × {min(workers.values() or [0])} workers"
    with redis.Redis.from_url(stack.redis_url("redis"), decode_responses=True) as counter:
        load = _load(ctx, None, counter, ctx.target, name, users, seconds, ttl, delay)
        bursts = _bursts(ctx, counter, ctx.target, backend, ttl, delay)
    load.replica_of = {s: hosts[s.rsplit("/", 1)[0]] for s in load.result.served_by if s.rsplit("/", 1)[0] in hosts}
    report.phases = [load, *(Phase(f"compose: {b.name}", b.result, note=_burst_note(b)) for b in bursts)]
    report.tables = [_computations_table({backend: load}, ttl, delay), _bursts_table(bursts)]
    report.bars = _bars({backend: load}, bursts)
    other = "memory" if backend == "redis" else "redis"
    how = (
        f"the compose stack runs CACHE_BACKEND={backend}: judge the {other} cache with the stack started with "
        f"CACHE_BACKEND={other} docker compose up -d"
    )
    judged = {
        "memory": [_periods_claim(MEMORY_CLAIM, load, per_process=True)],
        "redis": [_periods_claim(REDIS_CLAIM, load, per_process=False)],
    }
    burst_claims = {claim.name: claim for claim in _burst_claims(bursts, delay, ttl)}
    judged["memory"].append(burst_claims[MEMORY_BURST_CLAIM])
    judged["redis"] += [burst_claims[HOT_CLAIM], burst_claims[COLD_CLAIM]]
    report.claims = [
        *(
            claim if owner == backend else claims.skipped(claim.name, how)
            for owner in BACKENDS
            for claim in judged[owner]
        ),
        burst_claims[WAIT_CLAIM],
    ]
    _explain(report, ttl, delay)
    return report
