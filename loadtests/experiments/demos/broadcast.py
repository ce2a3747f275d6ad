"""``scalecube demo broadcast``: how often the slow source is read, with 1, 2, 4 workers, two ways.

The api answers ``GET /users/count`` from a value it refreshes every interval from a slow
"database" (services/api/users_count.py) that counts its reads in Redis. ``broadcast``: the
master reads once per interval and sends the value to every worker (the cluster's
``on_master`` hook). ``worker``: each worker polls the source itself. The reads are counted
at the source (the Redis counter) around a phase of ``GET /users/count`` load: requests are
answered from memory, so the load must not change the count — the workers do.

``--docker``: the compose stack's api containers share one Redis, so the source counts every
container's reads, and by which process (``READERS_KEY``: pid -> reads; each container's master is
its PID 1). Under ``GET /users/count`` load through the balancer, for at least two of the stack's
intervals, the mode it runs (``USERS_COUNT_MODE``, broadcast unless set) is judged per container:
broadcast — ~1 read per interval per container, all of them by the masters (PID 1), none by a
worker; worker — ~N reads per interval per container of N workers.
"""

from __future__ import annotations

import time

import httpx
import redis

from infra.local.processes import ClusterProcess, wait_until
from loadtests.experiments import claims
from loadtests.experiments.context import DemoContext
from loadtests.experiments.get_load import get_spec, load_gets
from loadtests.experiments.results import DemoReport, Phase
from loadtests.experiments.rigs import READY_TIMEOUT, Rig
from services.api.settings import ApiSettings
from services.api.users_count import READERS_KEY, READS_KEY

TITLE = "Broadcast: source reads per interval, the master reading for every worker vs each worker reading"
GUIDE = (
    "The master reads the slow source once per interval and broadcasts the value to its workers: one read "
    "per interval however many workers there are; each worker reading on its own costs one read per worker."
)
WORKERS = (1, 2, 4)
SMOKE_WORKERS = (1, 2)
INTERVAL = 1.0  # seconds between refreshes (USERS_COUNT_INTERVAL)
SMOKE_INTERVAL = 0.5
SOURCE_DELAY = 0.05  # the source's cost per read (USERS_SOURCE_DELAY): a worker polls every interval + this
# "about 1" and "about N": a phase is a few intervals, its edges cut one read more or less.
BROADCAST_MAX, BROADCAST_MIN = 1.5, 0.5
# Each-worker mode: at least 0.6 × N reads per interval (a worker's period is the interval plus its read, so
# at most ~0.9 × N here, less on a busy machine).
WORKER_SHARE = 0.6
MODES = {"broadcast": "master broadcast", "worker": "worker poll"}  # USERS_COUNT_MODE -> the answer's "source"
BROADCAST_CLAIM = "broadcast: ~1 source read per interval, whatever the workers"
WORKER_CLAIM = "each worker reading: ~N source reads per interval"


def run(ctx: DemoContext) -> DemoReport:
    users, seconds = ctx.users(8), ctx.seconds(10)
    counts = SMOKE_WORKERS if ctx.smoke else WORKERS
    interval = SMOKE_INTERVAL if ctx.smoke else INTERVAL
    report = DemoReport(
        "broadcast",
        TITLE,
        GUIDE,
        {"users": users, "seconds": seconds, "workers": list(counts), "interval_s": interval, "smoke": ctx.smoke},
    )
    names = {(mode, n): f"{mode}, {n} worker{'s' if n > 1 else ''}" for mode in MODES for n in counts}

    if ctx.docker_project:
        return _against_compose(ctx, report, names, users, seconds)
    if ctx.target:
        reason = "the reads are counted in the Redis of a cluster the demo starts; not with --target"
        report.phases = [Phase(name, note=f"skipped: {reason}") for name in names.values()]
        result = load_gets(ctx, "target", get_spec(ctx.target, ["/users/count"], users, seconds))
        report.phases.append(Phase("target", result, note=f"{ctx.target}, as it runs{_answer_source(ctx.target)}"))
        report.claims = [
            claims.skipped(BROADCAST_CLAIM, reason, BROADCAST_MAX, "reads/interval"),
            claims.skipped(WORKER_CLAIM, reason, WORKER_SHARE, "× N"),
        ]
        return report

    with ctx.workdir() as workdir, ctx.rig(workdir, "clusters") as rig:
        assert rig.redis is not None
        ctx.say(
            f"starting {len(names)} clusters together ({', '.join(names.values())}), refreshing every "
            f"{interval:g}s, each counting its reads in its own Redis database"
        )
        started = {key: _start(rig, db, *key, interval) for db, key in enumerate(names, start=1)}
        for key, name in names.items():
            cluster, counter = started[key]
            try:
                report.phases.append(_measured(ctx, rig, cluster, counter, name, interval, users, seconds))
            finally:
                cluster.stop()  # the next phase gets the cores to itself
                counter.close()

    per_interval = {key: report.phase(name).facts["reads_per_interval"] for key, name in names.items()}
    report.claims = [
        _unless_unloaded(report, "broadcast", _broadcast_claim(per_interval, counts)),
        _unless_unloaded(report, "worker", _worker_claim(per_interval, counts)),
    ]
    report.notes.append(
        f"Reads counted at the source (Redis INCR {READS_KEY}) between just before and just after each "
        f"phase, divided by the {interval:g}s interval; requests are answered from the worker's "
        "memory, so the load itself never reads the source."
    )
    report.notes.append(
        "Each worker polls 'read, then sleep the interval' (a slow read stretches its period); "
        "the master reads on a fixed cadence."
    )
    return report


def _start(rig: Rig, db: int, mode: str, workers: int, interval: float) -> tuple[ClusterProcess, redis.Redis]:
    """A cluster (not waited for) using Redis database ``db``, and a client of that database."""
    assert rig.redis is not None
    url = f"{rig.redis.url.rsplit('/', 1)[0]}/{db}"
    env = {
        "REDIS_URL": url,
        "USERS_COUNT_MODE": mode,
        "USERS_COUNT_INTERVAL": str(interval),
        "USERS_SOURCE_DELAY": str(SOURCE_DELAY),
    }
    return rig.cluster(workers, env=env, wait=False), redis.Redis.from_url(url)


def _measured(
    ctx: DemoContext,
    rig: Rig,
    cluster: ClusterProcess,
    counter: redis.Redis,
    name: str,
    interval: float,
    users: int,
    seconds: float,
) -> Phase:
    cluster.wait_ready(timeout=READY_TIMEOUT)
    source = _wait_for_count(cluster.url)
    before, started = int(counter.get(READS_KEY) or 0), time.monotonic()
    result = load_gets(ctx, name, get_spec(cluster.url, ["/users/count"], users, seconds))
    reads, elapsed = int(counter.get(READS_KEY) or 0) - before, time.monotonic() - started
    intervals = elapsed / interval
    per_interval = reads / intervals
    note = (
        f"{reads} source reads in {elapsed:.1f}s = {per_interval:.2f} per {interval:g}s interval "
        f"(answers say source: {source!r})"
    )
    return Phase(
        name,
        result,
        note=note,
        replica_of=rig.watcher.replica_of(result.served_by),
        facts={
            "workers": cluster.workers,
            "source_reads": reads,
            "intervals": round(intervals, 2),
            "reads_per_interval": round(per_interval, 3),
        },
    )


def _wait_for_count(url: str) -> str:
    """Until a worker has a value to answer with (before that: 503); returns where it says it came from."""
    seen: list[str] = []

    def answered() -> bool:
        response = httpx.get(url + "/users/count", timeout=2.0)
        if response.status_code == 200:
            seen.append(str(response.json().get("source")))
        return bool(seen)

    wait_until(answered, READY_TIMEOUT, interval=0.1, what="the first users count")
    return seen[0]


def _answer_source(url: str) -> str:
    try:
        source = httpx.get(url + "/users/count", timeout=2.0).json().get("source")
    except (httpx.HTTPError, ValueError, AttributeError):
        return ""
    return f"; its answers say source: {source!r}" if source else ""


def _broadcast_claim(per_interval: dict[tuple[str, int], float], counts: tuple[int, ...]) -> claims.Claim:
    values = {n: per_interval[("broadcast", n)] for n in counts}
    worst = max(values.values(), key=lambda value: abs(value - 1))
    ok = all(BROADCAST_MIN <= value <= BROADCAST_MAX for value in values.values())
    text = (
        ", ".join(f"{n} worker(s): {value:.2f}" for n, value in values.items())
        + f" reads per interval (needs {BROADCAST_MIN:g} to {BROADCAST_MAX:g} for every N)"
    )
    return claims.Claim(
        BROADCAST_CLAIM,
        round(worst, 3),
        BROADCAST_MAX,
        claims.Verdict.HOLDS if ok else claims.Verdict.FAILS,
        text,
        "reads/interval",
    )


def _worker_claim(per_interval: dict[tuple[str, int], float], counts: tuple[int, ...]) -> claims.Claim:
    shares = {n: per_interval[("worker", n)] / n for n in counts}
    worst = min(shares.values())
    text = (
        ", ".join(f"{n} worker(s): {per_interval[('worker', n)]:.2f} ({share:.2f} × N)" for n, share in shares.items())
        + f" reads per interval (needs ≥ {WORKER_SHARE:g} × N for every N)"
    )
    return claims.Claim(
        WORKER_CLAIM,
        round(worst, 3),
        WORKER_SHARE,
        claims.Verdict.HOLDS if worst >= WORKER_SHARE else claims.Verdict.FAILS,
        text,
        "× N",
    )


def _unless_unloaded(report: DemoReport, mode: str, claim: claims.Claim) -> claims.Claim:
    """Reads counted without the load proves nothing about serving from memory: a phase with no request fails."""
    idle = [
        phase.name
        for phase in report.phases
        if phase.name.startswith(f"{mode},") and (phase.result is None or phase.result.requests == 0)
    ]
    if not idle:
        return claim
    return claims.Claim(
        claim.name,
        claim.measured,
        claim.threshold,
        claims.Verdict.FAILS,
        f"no request measured in {', '.join(idle)} ({claim.text})",
        claim.unit,
    )


MASTERS_CLAIM = "broadcast: only the masters read the source, no worker"
MASTER_PID = "1"  # in a container the cluster master is PID 1 (compose's init: false)


def _against_compose(
    ctx: DemoContext, report: DemoReport, names: dict[tuple[str, int], str], users: int, seconds: float
) -> DemoReport:
    """Source reads of the compose stack's api containers, counted in their shared Redis around a load phase."""
    from loadtests.experiments.docker_stack import DockerStack

    stack = DockerStack.of(ctx)
    stack.require("api", "lb", "redis", why="the api containers count their source reads in the stack's Redis")
    assert ctx.target is not None
    env = stack.env("api")
    defaults = ApiSettings.model_fields  # what the containers run with when compose sets nothing
    mode = env.get("USERS_COUNT_MODE") or defaults["users_count_mode"].default
    interval = float(env.get("USERS_COUNT_INTERVAL") or defaults["users_count_interval"].default)
    workers = stack.workers("api")
    containers, per_container = len(workers), min(workers.values() or [0])
    # At least two intervals: each container's count in a window of k intervals is k ± 1 (its cadence's phase).
    seconds = max(seconds, 2 * interval + 1)
    report.settings.update(
        interval_s=interval, containers=containers, workers=per_container, seconds=seconds, mode=mode
    )
    url = stack.redis_url("redis")
    reason = (
        f"the compose stack runs USERS_COUNT_MODE={mode}: judge the other mode with the stack started "
        f"with USERS_COUNT_MODE={'worker' if mode == 'broadcast' else 'broadcast'}"
    )
    name = f"compose: {mode}, {containers} containers × {per_container} workers"
    with redis.Redis.from_url(url, decode_responses=True) as counter:
        _wait_for_count(ctx.target)
        before, readers_before, started = (
            int(counter.get(READS_KEY) or 0),
            counter.hgetall(READERS_KEY),
            time.monotonic(),
        )
        result = load_gets(ctx, name, get_spec(ctx.target, ["/users/count"], users, seconds))
        reads, elapsed = int(counter.get(READS_KEY) or 0) - before, time.monotonic() - started
        readers_after = counter.hgetall(READERS_KEY)
    by_pid = {pid: int(n) - int(readers_before.get(pid, 0)) for pid, n in readers_after.items()}
    by_pid = {pid: n for pid, n in by_pid.items() if n > 0}
    intervals = elapsed / interval
    per_interval = reads / intervals / max(1, containers)
    source = _answer_source(ctx.target)
    report.phases = [Phase(n, note=f"skipped: {reason}") for n in names.values()]
    report.phases.append(
        Phase(
            name,
            result,
            note=f"{reads} source reads in {elapsed:.1f}s by {containers} containers = "
            f"{per_interval:.2f} per {interval:g}s interval per container{source}",
            facts={
                "source_reads": reads,
                "intervals": round(intervals, 2),
                "reads_per_interval_per_container": round(per_interval, 3),
            },
        )
    )
    readers = ", ".join(f"pid {pid}: {n}" for pid, n in sorted(by_pid.items())) or "none"
    if mode == "broadcast":
        ok = BROADCAST_MIN <= per_interval <= BROADCAST_MAX
        text = (
            f"{reads} reads in {intervals:.2f} intervals by {containers} containers: {per_interval:.2f} per interval "
            f"per container of {per_container} workers (needs {BROADCAST_MIN:g} to {BROADCAST_MAX:g})"
        )
        masters = set(by_pid) == {MASTER_PID}
        judged = [
            claims.Claim(
                BROADCAST_CLAIM,
                round(per_interval, 3),
                BROADCAST_MAX,
                claims.Verdict.HOLDS if ok else claims.Verdict.FAILS,
                text,
                "reads/interval",
            ),
            claims.Claim(
                MASTERS_CLAIM,
                len(by_pid),
                1,
                claims.Verdict.HOLDS if masters else claims.Verdict.FAILS,
                f"reads by process during the phase: {readers} (needs every read by PID 1, each container's master)",
                "reader pids",
            ),
            claims.skipped(WORKER_CLAIM, reason, WORKER_SHARE, "× N"),
        ]
    else:
        share = per_interval / max(1, per_container)
        text = (
            f"{reads} reads in {intervals:.2f} intervals by {containers} containers: {per_interval:.2f} per interval "
            f"per container of {per_container} workers = {share:.2f} × N (needs ≥ {WORKER_SHARE:g} × N); {readers}"
        )
        judged = [
            claims.skipped(BROADCAST_CLAIM, reason, BROADCAST_MAX, "reads/interval"),
            claims.Claim(
                WORKER_CLAIM,
                round(share, 3),
                WORKER_SHARE,
                claims.Verdict.HOLDS if share >= WORKER_SHARE else claims.Verdict.FAILS,
                text,
                "× N",
            ),
        ]
    if result.requests == 0:  # reads counted without the load prove nothing about serving from memory
        judged = [
            claims.Claim(
                c.name, c.measured, c.threshold, claims.Verdict.FAILS, f"no request measured ({c.text})", c.unit
            )
            if c.judged
            else c
            for c in judged
        ]
    report.claims = judged
    report.notes.append(
        f"Reads counted at the source, the stack's Redis (INCR {READS_KEY}, HINCRBY {READERS_KEY} "
        "by pid), read directly at its container's address before and after the phase."
    )
    return report
