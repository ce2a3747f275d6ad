"""``scalecube demo splitting``: users created through the router land on their country's shard.

The rig is the local stack's services part (infra/local/stack.py ``build_services``): two
shards, each a cluster with its own Redis, and the router with the directory's Redis.
``SplittingUser`` creates and reads users in a realistic country mix through the router;
then the demo reads every shard's Redis and the directory directly: each shard must hold
exactly the users whose country the shard map (services/router/shard_map.toml, plus the
hash rule for unlisted countries) gives it, and the directory must count every user created.
Then the cost of the extra hop: the same ``GET /users/{id}`` through the router and
straight to the shard that holds them.

``--docker``: the same through the compose stack's balancer (its ``/users`` route goes to the
router); the shards' and the directory's Redis are read directly at their containers' addresses,
before and after (the stack keeps the users of earlier runs: what this run added is judged, and
every user the shards hold must be on the right one); "straight to the shard" is the shard
container's own address.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from infra.local.processes import ClusterProcess
from loadtests.experiments import claims
from loadtests.experiments.context import DemoContext
from loadtests.experiments.get_load import get_spec, load_gets
from loadtests.experiments.locust_runner import LoadResult, LoadSpec
from loadtests.experiments.results import DemoReport, Phase
from loadtests.experiments.rigs import READY_TIMEOUT, Rig
from services.router.directory import DIRECTORY_KEY
from services.router.shard_map import DEFAULT_MAP_FILE, BaseMap, load_base_map
from services.shard.store import PREFIX

TITLE = "Splitting: users sharded by country through the router; the router's cost"
GUIDE = (
    "Splitting the data by a key (here: the user's country) puts each user on exactly one shard, the one the "
    "shard map names; a router in front sends every request there, for the cost of one more hop."
)
ROUTER_APP = "services.router.app:app"
SHARD_APP = "services.shard.app:app"
CREATE = "/users"  # SplittingUser's POST, as its statistics name it
READ_NAME = "/users/[id]"  # in the Locust statistics
SHOWN = "/users/{id}"  # in the tables (rich would read [id] as markup)
READ_IDS = 50  # ids the latency phases read (all on one shard, so "straight to the shard" is one URL)
COST_PCT = 10.0  # the router costs ≤ 10% throughput: judged by `scalecube bench router` with the router on its own core
PLACED_CLAIM = "each shard holds exactly the users of its countries"
COUNTED_CLAIM = "the directory counts every user created"
COST_CLAIM = f"the router costs ≤ {COST_PCT:g}% throughput"


def run(ctx: DemoContext) -> DemoReport:
    users, seconds = ctx.users(8), ctx.seconds(10)
    base = load_base_map(DEFAULT_MAP_FILE)
    report = DemoReport(
        "splitting", TITLE, GUIDE, {"users": users, "seconds": seconds, "shards": list(base.shards), "smoke": ctx.smoke}
    )
    create_name = "create + read via the router"
    router_name, direct_name = f"GET {SHOWN} via the router", f"GET {SHOWN} straight to the shard"

    def create_spec(url: str) -> LoadSpec:
        return LoadSpec("SplittingUser", url, users, seconds, tags=("users-create", "users-read"))

    if ctx.docker_project:
        return _against_compose(ctx, report, base, create_spec, users, seconds)
    if ctx.target:
        reason = "reads each shard's Redis and starts the shards itself; not with --target"
        result = ctx.load(create_name, create_spec(ctx.target))
        note = f"{ctx.target}, as it runs: users created through it (its /users must reach a router)"
        report.phases = [
            Phase(create_name, result, note=note),
            Phase(router_name, note=f"skipped: {reason}"),
            Phase(direct_name, note=f"skipped: {reason}"),
        ]
        report.claims = [
            claims.skipped(PLACED_CLAIM, reason, 0),
            claims.skipped(COUNTED_CLAIM, reason, 0),
            claims.skipped(COST_CLAIM, reason, COST_PCT, "%"),
        ]
        return report

    with ctx.workdir() as workdir, ctx.rig(workdir, "services") as rig:
        assert rig.redis is not None
        router_workers = 1 if ctx.smoke else 2
        ctx.say(
            f"starting {len(base.shards)} shards (1 worker, own Redis each) and the router ({router_workers} "
            "worker(s), the directory's Redis)"
        )
        shards = _start_shards(rig, base)
        router = rig.cluster(
            router_workers,
            app=ROUTER_APP,
            env={
                "ROUTER_REDIS_URL": rig.redis.url,
                "SHARD_URLS": ",".join(f"{n}={c.url}" for n, (c, _) in shards.items()),
            },
        )
        for cluster, _ in shards.values():
            cluster.wait_ready(timeout=READY_TIMEOUT)

        created = ctx.load(create_name, create_spec(router.url))
        unsure = created.failures_by_name.get(CREATE, 0)  # e.g. the router timed out, the shard wrote it
        made = created.requests_by_name.get(CREATE, 0) - unsure
        census = Census.take(base, {name: url for name, (_, url) in shards.items()}, rig.redis.url)
        report.phases.append(
            Phase(
                create_name,
                created,
                replica_of=rig.watcher.replica_of(created.served_by),
                note=f"{made:,} users created through the router; " + census.describe(),
            )
        )
        report.claims = [census.placed_claim(unsure), census.counted_claim(made, unsure)]

        shard, ids = census.busiest()
        paths = [f"/users/{user_id}" for user_id in ids[:READ_IDS]]
        if not paths:
            report.claims.append(claims.skipped(COST_CLAIM, "no user was created: nothing to read", COST_PCT, "%"))
            return report
        via = load_gets(ctx, router_name, get_spec(router.url, paths, users, seconds, name=READ_NAME))
        direct = load_gets(ctx, direct_name, get_spec(shards[shard][0].url, paths, users, seconds, name=READ_NAME))
        report.phases += [
            Phase(
                router_name,
                via,
                replica_of=rig.watcher.replica_of(via.served_by),
                note=f"{len(paths)} users of {shard}: router (directory lookup, then {shard})",
            ),
            Phase(
                direct_name,
                direct,
                replica_of=rig.watcher.replica_of(direct.served_by),
                note=f"the same users, from {shard} itself",
            ),
        ]
    report.claims.append(_cost_claim(via, direct))
    report.notes.append(
        f"p50 / p95 of GET {SHOWN}: via the router {_ms(via.p50_ms)} / {_ms(via.p95_ms)} ms, "
        f"straight to the shard {_ms(direct.p50_ms)} / {_ms(direct.p95_ms)} ms."
    )
    report.notes.append(
        "A country no shard lists goes to the shard numbered crc32(code) mod n (by name): it counts as that shard's."
    )
    report.notes.append("Locust, the router and the shards share this machine's cores: read the ratio, not the req/s.")
    return report


def _start_shards(rig: Rig, base: BaseMap) -> dict[str, tuple[ClusterProcess, str]]:
    """Every shard of the map, each with its own Redis (started together, not waited for): name -> (cluster, redis url)."""
    shards = {}
    for name in base.shards:
        url = rig.another_redis().url
        shards[name] = (
            rig.cluster(1, app=SHARD_APP, wait=False, env={"SHARD_NAME": name, "SHARD_REDIS_URL": url}),
            url,
        )
    return shards


@dataclass
class Census:
    """What the shards' and the directory's Redis hold, read directly (not through any service)."""

    base: BaseMap
    countries: dict[str, Counter[str]] = field(default_factory=dict)  # shard -> country -> users
    ids: dict[str, list[str]] = field(default_factory=dict)  # shard -> user ids
    misplaced: dict[str, int] = field(default_factory=dict)  # shard -> users whose country is another shard's
    directory: dict[str, str] = field(default_factory=dict)  # user id -> country

    @classmethod
    def take(cls, base: BaseMap, shard_redis: dict[str, str], directory_redis: str) -> Census:
        census = cls(base)
        for name, url in shard_redis.items():
            with redis.Redis.from_url(url, decode_responses=True) as client:
                keys = list(client.scan_iter(match=f"{PREFIX}user:*", count=1000))
                with client.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.hget(key, "country")
                    countries = pipe.execute()
            census.ids[name] = [key.removeprefix(f"{PREFIX}user:") for key in keys]
            census.countries[name] = Counter(str(country) for country in countries)
            census.misplaced[name] = sum(n for cc, n in census.countries[name].items() if base.owner(cc) != name)
        with redis.Redis.from_url(directory_redis, decode_responses=True) as client:
            census.directory = client.hgetall(DIRECTORY_KEY)
        return census

    @property
    def on_shards(self) -> set[str]:
        return {user_id for ids in self.ids.values() for user_id in ids}

    def busiest(self) -> tuple[str, list[str]]:
        name = max(self.ids, key=lambda shard: len(self.ids[shard]))
        return name, self.ids[name]

    def describe(self) -> str:
        parts = []
        for name, countries in self.countries.items():
            top = ", ".join(f"{cc} {n}" for cc, n in countries.most_common(4))
            parts.append(f"{name}: {sum(countries.values()):,} users ({top}{', …' if len(countries) > 4 else ''})")
        return "; ".join(parts)

    def placed_claim(self, unsure: int) -> claims.Claim:
        """No user on a shard its country is not mapped to, none unknown to the directory, none lost. The router
        writes the directory first: a create that failed (``unsure``) may leave an entry no shard holds."""
        on_shards = self.on_shards
        total = len(on_shards)
        misplaced = sum(self.misplaced.values())
        missing = len(set(self.directory) - on_shards)  # in the directory, on no shard
        stray = len(on_shards - set(self.directory))  # on a shard, unknown to the directory
        wrong = misplaced + stray + max(0, missing - unsure)
        if total == 0:
            return claims.Claim(PLACED_CLAIM, None, 0, claims.Verdict.FAILS, "no user on any shard", "wrong")
        text = (
            f"{total:,} users on {len(self.ids)} shards: {misplaced} on a shard their country is not mapped to, "
            f"{stray} on a shard but not in the directory, {missing} in the directory but on no shard "
            f"({unsure} failed creates may leave one each)"
        )
        return claims.Claim(
            PLACED_CLAIM, wrong, 0, claims.Verdict.HOLDS if wrong == 0 else claims.Verdict.FAILS, text, "wrong"
        )

    def counted_claim(self, created: int, unsure: int, before: int = 0) -> claims.Claim:
        """Every 201 counted once; a create that failed on the client's side (a timeout) may have been written.
        ``before``: the users the directory held before the run (a stack that keeps its data)."""
        counted = len(self.directory) - before
        if created <= 0:
            return claims.Claim(COUNTED_CLAIM, None, 0, claims.Verdict.FAILS, "no user was created", "off")
        text = (
            f"the directory holds {counted:,} users{f' more than the {before:,} before' if before else ''}; "
            f"Locust saw {created:,} created (201)"
        )
        if unsure:
            text += (
                f" and {unsure:,} creates failed (written or not: the claim allows {created:,} to {created + unsure:,})"
            )
        ok = created <= counted <= created + unsure
        return claims.Claim(
            COUNTED_CLAIM, counted - created, 0, claims.Verdict.HOLDS if ok else claims.Verdict.FAILS, text, "off"
        )


def _cost_claim(via: LoadResult, direct: LoadResult) -> claims.Claim:
    """The router's cost: measured and shown, never judged here."""
    why = (
        "here the router shares the cores with the shard and Locust; the target is judged by "
        "`scalecube bench router` (router-alone placement)"
    )
    if via.rps <= 0 or direct.rps <= 0:
        return claims.Claim(
            COST_CLAIM, None, COST_PCT, claims.Verdict.NOT_JUDGED, f"no throughput measured — not judged: {why}", "%"
        )
    cost = 100.0 * (1 - via.rps / direct.rps)
    text = (
        f"via the router {via.rps:.1f} req/s = {via.rps / direct.rps:.2f}× straight to the shard "
        f"{direct.rps:.1f} req/s: the router costs {cost:.0f}% — not judged: {why}"
    )
    return claims.Claim(COST_CLAIM, round(cost, 1), COST_PCT, claims.Verdict.NOT_JUDGED, text, "%")


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _against_compose(
    ctx: DemoContext,
    report: DemoReport,
    base: BaseMap,
    create_spec: Callable[[str], LoadSpec],
    users: int,
    seconds: float,
) -> DemoReport:
    """Users created through the compose stack's balancer; its Redis read directly, before and after."""
    from loadtests.experiments.docker_stack import DockerStack

    stack = DockerStack.of(ctx)
    redis_services = {name: f"{name}-redis" for name in base.shards}  # docker-compose.yml: shard-a -> shard-a-redis
    stack.require(
        "lb",
        "router",
        "directory-redis",
        *base.shards,
        *redis_services.values(),
        why="users are created through the router and counted in the shards' and the directory's Redis",
    )
    assert ctx.target is not None
    create_name = "create + read via the balancer and router"
    router_name, direct_name = f"GET {SHOWN} via the balancer and router", f"GET {SHOWN} straight to the shard"
    shard_redis = {name: stack.redis_url(service) for name, service in redis_services.items()}
    directory = stack.redis_url("directory-redis")
    before = Census.take(base, shard_redis, directory)
    created = ctx.load(create_name, create_spec(ctx.target))
    unsure = created.failures_by_name.get(CREATE, 0)
    made = created.requests_by_name.get(CREATE, 0) - unsure
    census = Census.take(base, shard_redis, directory)
    had = len(before.on_shards)
    already_missing = len(set(before.directory) - before.on_shards)  # creates that failed in earlier runs
    report.phases.append(
        Phase(
            create_name,
            created,
            note=f"{made:,} users created through {ctx.target} (the stack held {had:,} before); " + census.describe(),
        )
    )
    report.claims = [
        census.placed_claim(unsure + already_missing),
        census.counted_claim(made, unsure, before=len(before.directory)),
    ]
    old_ids = before.on_shards
    new_ids = {shard: [user_id for user_id in ids if user_id not in old_ids] for shard, ids in census.ids.items()}
    shard = max(new_ids, key=lambda name: len(new_ids[name]))
    paths = [f"/users/{user_id}" for user_id in new_ids[shard][:READ_IDS]]
    if not paths:
        report.claims.append(claims.skipped(COST_CLAIM, "no user was created: nothing to read", COST_PCT, "%"))
        return report
    shard_url = stack.service_url(shard)
    via = load_gets(ctx, router_name, get_spec(ctx.target, paths, users, seconds, name=READ_NAME))
    direct = load_gets(ctx, direct_name, get_spec(shard_url, paths, users, seconds, name=READ_NAME))
    report.phases += [
        Phase(
            router_name, via, note=f"{len(paths)} users of {shard}: balancer, router (directory lookup), then {shard}"
        ),
        Phase(direct_name, direct, note=f"the same users, from the {shard} container ({shard_url})"),
    ]
    report.claims.append(_cost_claim(via, direct))
    report.claims.append(
        claims.no_failures(
            f"0 failed reads of {shard}'s users, through the balancer and straight",
            via.requests + direct.requests,
            via.failures + direct.failures,
            what="reads",
        )
    )
    report.notes.append(
        f"p50 / p95 of GET {SHOWN}: via the balancer and router {_ms(via.p50_ms)} / {_ms(via.p95_ms)} "
        f"ms, straight to the shard {_ms(direct.p50_ms)} / {_ms(direct.p95_ms)} ms."
    )
    return report
