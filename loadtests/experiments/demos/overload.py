"""``scalecube demo overload``: heavy requests must not starve cheap ones, nor take a replica out.

Cheap ``GET /`` load (a new connection per request, as browsers and the guides' ``ab``
make them) runs alone, then beside a stream of heavy ``/cpu`` requests (the guides' 1e7
loop, ~0.35 s each), on the same app served three ways in one run: the cluster with
``rr``, the cluster with ``least`` (join-shortest-queue: cluster/policies.py), and
``uvicorn --workers N`` (the kernel decides). With fewer heavy requests in flight than
workers, one worker is always free: a cheap request should never wait behind a heavy
one. ``rr`` and the kernel can still put it there; ``least`` should not.

At saturation (more heavy requests than workers) every worker is busy: cheap requests
wait in the master's queue until a worker frees (``queued``), or get a fast 503 when the
queue is full or too slow (``shed``) — measured, not judged.

Through each balancer: the burst that used to eject every replica (eight heavy requests
at once, health checks timing out on busy workers). Claims: no cheap request fails and
no replica is ever marked down (sampled four times a second from the balancer's stats).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from loadtests.drivers import LoadSummary, run_wrk
from loadtests.experiments import claims
from loadtests.experiments.context import DemoContext
from loadtests.experiments.locust_runner import LoadResult
from loadtests.experiments.results import DemoReport, Phase
from loadtests.experiments.rigs import HOSTS, Rig, backend_up, haproxy_installed

TITLE = "Overload: heavy requests beside cheap ones, straight to a cluster and through each balancer"
GUIDE = (
    "A cluster exists so that one busy process does not make everyone wait: with a worker free, a cheap "
    "request should be answered at once, and a busy replica is not a dead one."
)
HEAVY = 10_000_000  # the guides' loop, /cpu's upper bound
CHEAP_CLIENTS = 4
BURST = 8  # the eight parallel heavy requests, through a balancer
P99_SELF = 3.0  # least's cheap p99 with the burst ≤ 3× its p99 without
P99_PEER = 0.5  # ... and ≤ 0.5× uvicorn's in the same run
REPLICAS = 2
SERVERS = ("rr", "least", "uvicorn")


def run(ctx: DemoContext) -> DemoReport:
    from cluster.cpus import available_cpus

    workers = max(2, available_cpus())
    seconds = ctx.seconds(10, smoke=4)
    report = DemoReport(
        "overload",
        TITLE,
        GUIDE,
        {
            "workers": workers,
            "seconds": seconds,
            "heavy_iterations": HEAVY,
            "cheap_clients": CHEAP_CLIENTS,
            "smoke": ctx.smoke,
        },
    )
    if ctx.target:
        return _against_target(ctx, report, workers, seconds)

    p99: dict[tuple[str, str], float | None] = {}
    cheap_failures = 0
    cheap_requests = 0
    with ctx.workdir() as workdir:
        for server in SERVERS:
            with ctx.rig(workdir, server) as rig:
                url = _start(rig, server, workers)
                runs = [("alone", 0), ("burst", workers - 1)]
                if server == "least":
                    runs.append(("saturated", workers + 1))
                for label, heavy in runs:
                    name = f"{server}, {label}" + (f" ({heavy} heavy in flight)" if heavy else "")
                    before = _master_stats(rig)
                    result = _cheap_beside_heavy(ctx, name, url, heavy, seconds)
                    after = _master_stats(rig)
                    p99[(server, label)] = result.p99_ms
                    cheap_failures += result.failures
                    cheap_requests += result.requests
                    facts = {k: after.get(k, 0) - before.get(k, 0) for k in ("shed", "reclaimed")}
                    note = f"{heavy} heavy /cpu in flight at all times" if heavy else "cheap load only"
                    if server == "least" and label == "saturated":
                        note += (
                            f"; every worker busy: cheap requests wait in the master, p99 {_ms(result.p99_ms)}, "
                            f"{facts['shed']:g} shed with a 503 (queue timeout or full)"
                        )
                    report.phases.append(Phase(name, result, note=note, facts=facts))

        balanced: list[tuple[str, LoadResult, int]] = []
        kinds = ["haproxy", "python-lb"] if haproxy_installed() else ["python-lb"]
        for kind in kinds:
            with ctx.rig(workdir, f"balanced-{kind}") as rig:
                rig.replicas("api", HOSTS[:REPLICAS], workers)
                balancer = rig.balancer("api", REPLICAS, kind=kind)
                addresses = [f"{host}:{rig.topology.port}" for host in HOSTS[:REPLICAS]]
                name = f"{REPLICAS} replicas + {kind}, {BURST} heavy at once"
                with _sampling(lambda: all(backend_up(balancer, a) for a in addresses)) as down_samples:
                    result = _cheap_beside_heavy(ctx, name, balancer.url, BURST, seconds)
                balanced.append((kind, result, down_samples[0]))
                report.phases.append(
                    Phase(
                        name,
                        result,
                        note=f"{down_samples[0]} of {down_samples[1]} samples saw a replica marked down",
                        facts={"down_samples": down_samples[0]},
                    )
                )

    report.claims = _judge(workers, p99, cheap_requests, cheap_failures, balanced, ctx.smoke)
    report.notes += [
        "Cheap load: wrk, a new connection per request to GET /. Heavy: wrk, a new connection per /cpu request "
        f"({HEAVY:,} iterations), as many connections as heavy requests in flight.",
        "least counts what each worker holds exactly for a new connection per request; on keep-alive connections "
        "it uses the worker's own report (once a second), and the balancers' least-outstanding choice does the rest.",
    ]
    return report


def _against_target(ctx: DemoContext, report: DemoReport, workers: int, seconds: float) -> DemoReport:
    """A running stack (``--target``, ``--docker``): only its balancer's part, judged the same way; with
    ``--docker`` the replicas' state comes from HAProxy's stats, else it is not sampled (said so)."""
    names = _claim_names(workers)
    reason = "compares servers the demo starts itself (not with --target/--docker)"
    report.claims = [claims.skipped(name, reason) for name in names[:3]]
    target = ctx.target
    assert target is not None
    up: Callable[[], bool] | None = None
    if ctx.docker_project:
        from infra.docker.ops.balancer import Balancer as ComposeBalancer
        from infra.docker.ops.project import Project
        from infra.paths import REPO

        stats = ComposeBalancer.of(Project.connect(REPO, ctx.docker_project))
        if stats is not None:
            up = lambda: all(s.status.startswith("UP") for s in stats.servers("api") if s.address)  # noqa: E731
    name = f"{target}, {BURST} heavy at once"
    with _sampling(up or (lambda: True)) as down_samples:
        result = _cheap_beside_heavy(ctx, name, target, BURST, seconds)
    report.phases.append(Phase(name, result, note="the running stack"))
    report.claims.append(
        claims.no_failures(
            names[3], result.requests, result.failures, what="cheap requests answered through the balancer"
        )
    )
    if up is None:
        report.claims.append(claims.skipped(names[4], "only with --docker (reads the compose HAProxy's stats)"))
    else:
        report.claims.append(
            claims.Claim(
                names[4],
                down_samples[0],
                0,
                claims.Verdict.HOLDS if down_samples[1] and down_samples[0] == 0 else claims.Verdict.FAILS,
                f"{down_samples[0]} of {down_samples[1]} samples saw an api replica not UP",
                "samples",
            )
        )
    return report


def _claim_names(workers: int) -> list[str]:
    return [
        f"least: cheap p99 with {workers - 1} heavy ≤ {P99_SELF:g}× without",
        f"least: cheap p99 with {workers - 1} heavy ≤ {P99_PEER:g}× uvicorn's",
        "0 failed cheap requests, straight to a cluster",
        f"0 failed cheap requests through the balancers, {BURST} heavy at once",
        "no replica marked down during the burst",
    ]


def _judge(
    workers: int,
    p99: dict[tuple[str, str], float | None],
    requests: int,
    failures: int,
    balanced: list[tuple[str, LoadResult, int]],
    smoke: bool,
) -> list[claims.Claim]:
    names = _claim_names(workers)
    why_not = "a smoke run is too short for percentiles"
    least_alone, least_burst, uvicorn_burst = (
        p99[("least", "alone")],
        p99[("least", "burst")],
        p99[("uvicorn", "burst")],
    )
    verdicts = [
        _at_most(names[0], least_burst, least_alone, P99_SELF, "least with the burst", "least alone", smoke, why_not),
        _at_most(
            names[1],
            least_burst,
            uvicorn_burst,
            P99_PEER,
            "least with the burst",
            "uvicorn with the burst",
            smoke,
            why_not,
        ),
        claims.no_failures(names[2], requests, failures, what="cheap requests (every server, every phase)"),
        claims.no_failures(
            names[3],
            sum(r.requests for _, r, _ in balanced),
            sum(r.failures for _, r, _ in balanced),
            what="cheap requests answered through the balancers (saturated: slow, never failed)",
        ),
    ]
    down = sum(samples for _, _, samples in balanced)
    text = ", ".join(f"{kind}: {samples} samples with a replica down" for kind, _, samples in balanced)
    verdicts.append(
        claims.Claim(
            names[4],
            down,
            0,
            claims.Verdict.HOLDS if balanced and down == 0 else claims.Verdict.FAILS,
            text or "no balancer phase ran",
            "samples",
        )
    )
    return verdicts


def _at_most(
    name: str,
    value: float | None,
    baseline: float | None,
    factor: float,
    what: str,
    baseline_what: str,
    smoke: bool,
    why_not: str,
) -> claims.Claim:
    if value is None or baseline is None or baseline <= 0:
        return claims.Claim(name, None, factor, claims.Verdict.FAILS, "no percentiles measured", "×")
    ratio = value / baseline
    text = f"{what} p99 {value:.1f} ms = {ratio:.2f}× {baseline_what} {baseline:.1f} ms (needs ≤ {factor:g}×)"
    if smoke:
        return claims.Claim(
            name, round(ratio, 3), factor, claims.Verdict.NOT_JUDGED, f"{text} — not judged: {why_not}", "×"
        )
    return claims.Claim(
        name, round(ratio, 3), factor, claims.Verdict.HOLDS if ratio <= factor else claims.Verdict.FAILS, text, "×"
    )


def _start(rig: Rig, server: str, workers: int) -> str:
    if server == "uvicorn":
        return rig.single_process(workers=workers)
    return rig.cluster(workers, args=["--policy", server]).url


def _master_stats(rig: Rig) -> dict[str, float]:
    clusters = [p for p in rig.processes if hasattr(p, "status")]
    totals: dict[str, float] = {}
    for cluster in clusters:
        try:
            master = cluster.status()["master"]  # type: ignore[attr-defined]
        except (OSError, ValueError, KeyError):
            continue
        for key in ("shed", "reclaimed"):
            totals[key] = totals.get(key, 0) + float(master.get(key, 0))
    return totals


def _cheap_beside_heavy(ctx: DemoContext, name: str, url: str, heavy: int, seconds: float) -> LoadResult:
    """Cheap GET / from wrk while ``heavy`` /cpu requests are kept in flight by a second wrk."""
    summary: list[LoadSummary] = []
    thread = None
    if heavy:

        def burn() -> None:
            summary.append(
                run_wrk(
                    f"{url}/cpu?iterations={HEAVY}",
                    seconds=seconds + 2,
                    connections=heavy,
                    threads=1,
                    new_connections=True,
                    timeout=30,
                )
            )

        thread = threading.Thread(target=burn, name="heavy-load", daemon=True)
        thread.start()
        time.sleep(1.0)  # the heavy requests are in flight before the cheap ones are measured
    result = ctx.wrk(name, url + "/", connections=CHEAP_CLIENTS, seconds=seconds)
    if thread is not None:
        thread.join(seconds + 60)
    return result


@contextmanager
def _sampling(ok: Callable[[], bool], interval: float = 0.25) -> Iterator[list[int]]:
    """Samples ``ok()`` from a thread while the block runs; yields [failed samples, samples] (filled at exit)."""
    counts = [0, 0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval):
            counts[1] += 1
            if not ok():
                counts[0] += 1

    thread = threading.Thread(target=sample, name="ejection-sampler", daemon=True)
    thread.start()
    try:
        yield counts
    finally:
        stop.set()
        thread.join(5)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} ms"
