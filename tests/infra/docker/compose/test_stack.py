"""`docker compose up --scale api=3`: the project's own compose file on a real engine, end to end.

The package's one stack (conftest.py: up once for test_ops.py and this module, after test_ops.py has run on
it); the tests run in file order and each leaves it with 3 healthy api containers. Teardown checks that
`down -v` left nothing behind.
"""

from __future__ import annotations

import collections
import csv
import math
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import redis

from infra.docker.ops.balancer import Balancer
from infra.docker.ops.project import SECRETS_DIR, ip_address
from infra.local.processes import wait_until
from kit import secrets as secret_values
from kit.signing import Signer
from loadtests.experiments.demos import DEMOS
from tests.support.docker import ComposeStack
from tests.support.haproxy import HAPROXY_CUT_RESPONSE
from tests.support.load import LoadGenerator
from tests.support.prometheus import CLUSTER_JOBS, PrometheusApi

pytestmark = pytest.mark.slow


def served_by(stack: ComposeStack, requests: int, concurrency: int = 8) -> collections.Counter[str]:
    """Who served ``requests`` GETs of ``/``, each on a connection of its own (``Connection: close``). A master spreads
    connections, not requests: through kept-alive connections the balancer reuses, one worker of a container served
    98 of its 100 requests here (and, once in CI, all of them); each on its own connection, every worker got 46–54 %."""
    with LoadGenerator(
        stack.url + "/", concurrency=concurrency, keepalive=False, max_requests=requests, max_seconds=60
    ) as load:
        while load.result.total < requests and load._threads[0].is_alive():
            time.sleep(0.1)
    assert load.result.failed == 0, str(load.result)
    return load.result.served_by


def test_every_service_is_healthy_and_redis_is_not_published(stack):
    for service in (
        "redis",
        "auth",
        "auth-redis",
        "router",
        "directory-redis",
        "shard-a",
        "shard-a-redis",
        "shard-b",
        "shard-b-redis",
        "lb",
        "locust",
        "locust-worker",
    ):
        containers = stack.containers(service)
        assert containers, f"{service} is not running"
        for container in containers:
            container.reload()
            assert container.attrs["State"]["Health"]["Status"] == "healthy", service
            if "redis" in service:
                assert not any(container.ports.values()), f"{service} publishes {container.ports}"
    assert len(stack.containers("api")) == 3


def test_requests_reach_every_container_and_several_workers_in_each(stack):
    counts = served_by(stack, 600)
    workers_by_container: dict[str, set[str]] = collections.defaultdict(set)
    for served in counts:
        host, _, pid = served.partition("/")
        workers_by_container[host].add(pid)
    api_hosts = {c.attrs["Config"]["Hostname"] for c in stack.containers("api")}
    assert set(workers_by_container) == api_hosts
    assert all(len(pids) > 1 for pids in workers_by_container.values()), dict(workers_by_container)


def test_containers_run_the_cluster_as_pid_1_and_not_as_root(stack):
    container = stack.containers("api")[0]
    top = container.top(ps_args="-o pid,user,args")
    rows = [dict(zip(top["Titles"], process, strict=False)) for process in top["Processes"]]
    assert all(row["USER"] not in ("root", "0") for row in rows), rows
    assert sum("cluster.worker" in row["COMMAND"] for row in rows) >= 1
    inspect = container.attrs
    assert inspect["Config"]["User"] == "scalecube"
    assert inspect["Path"] == "scalecube" and inspect["Args"][:2] == ["serve", "services.api.app:app"]


def test_a_session_made_through_one_container_is_valid_through_all(stack):
    user, password = f"u{uuid.uuid4().hex[:8]}", "correct-horse-battery"
    with httpx.Client(base_url=stack.url, timeout=10) as http:
        assert http.post("/auth/register", json={"username": user, "password": password}).status_code == 201
        login = http.post("/session/login", json={"user": user, "password": password})
        assert login.status_code == 200, login.text
        hosts = set()
        for _ in range(30):
            me = http.get("/session/me", headers={"Connection": "close"})
            assert me.status_code == 200, me.text
            assert me.json()["user"] == user
            hosts.add(me.headers["x-served-by"].split("/")[0])
    assert len(hosts) == 3, hosts


REDIS_SERVICES = ("redis", "auth-redis", "directory-redis", "shard-a-redis", "shard-b-redis")


def read_secret(container, name: str) -> str:
    code, output = container.exec_run(["cat", f"{SECRETS_DIR}/{name}"])
    assert code == 0, output
    return output.decode().strip()


def test_the_generated_secrets_are_random_and_every_replica_reads_the_same(stack):
    """No SESSION_SECRET etc. in the environment: the `secrets` service made them, once, for everyone."""
    (done,) = stack.containers("secrets", all=True)
    assert done.attrs["State"]["Status"] == "exited" and done.attrs["State"]["ExitCode"] == 0
    apis = stack.containers("api")
    values = {name: read_secret(apis[0], name) for name in secret_values.SECRETS}
    assert all(secret_values.problem(value) is None for value in values.values()), "a known or short secret"
    assert len(set(values.values())) == len(values)
    assert {read_secret(api, "SESSION_SECRET") for api in apis} == {values["SESSION_SECRET"]}
    assert read_secret(stack.containers("lb")[0], "LB_COOKIE_KEY") == values["LB_COOKIE_KEY"]
    assert read_secret(stack.containers("redis")[0], "REDIS_PASSWORD") == values["REDIS_PASSWORD"]
    for service in ("api", "lb"):  # files, not values, in what `docker inspect` shows
        env = "\n".join(stack.containers(service)[0].attrs["Config"]["Env"])
        assert not [v for v in values.values() if v in env], service
    # What the api signs with is that file's value: its session cookie verifies with it.
    user, password = f"s{uuid.uuid4().hex[:8]}", "correct-horse-battery"
    with httpx.Client(base_url=stack.url, timeout=10) as http:
        assert http.post("/auth/register", json={"username": user, "password": password}).status_code == 201
        login = http.post("/session/login", json={"user": user, "password": password})
    assert login.status_code == 200, login.text
    assert Signer(values["SESSION_SECRET"], salt="session").unsign(login.cookies["scalecube_session"])


def test_every_redis_refuses_commands_without_the_password(stack):
    password = read_secret(stack.containers("redis")[0], "REDIS_PASSWORD")
    for service in REDIS_SERVICES:
        (container,) = stack.containers(service)
        code, output = container.exec_run(["redis-cli", "set", "k", "v"])  # no REDISCLI_AUTH here
        assert b"NOAUTH" in output, (service, output)
        address = ip_address(container)
        with redis.Redis(host=address, port=6379, socket_timeout=5) as client:
            with pytest.raises(redis.AuthenticationError):
                client.get("anything")
        with redis.Redis(host=address, port=6379, password=password, socket_timeout=5) as client:
            assert client.ping()


def test_every_container_drops_every_capability_and_gains_no_privilege(stack):
    project = stack.client.containers.list(all=True, filters={"label": f"com.docker.compose.project={stack.project}"})
    services = {c.labels["com.docker.compose.service"] for c in project}
    assert {"secrets", "api", "lb", "locust", "locust-worker", *REDIS_SERVICES} <= services
    for container in project:
        host = container.attrs["HostConfig"]
        name = container.name
        assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd"), (name, host["CapDrop"], host.get("CapAdd"))
        assert "no-new-privileges:true" in (host.get("SecurityOpt") or []), name
        if container.status == "running":  # and the process itself has none: effective and bounding sets empty
            code, output = container.exec_run(["cat", "/proc/1/status"])
            status = dict(line.split(":\t", 1) for line in output.decode().splitlines() if ":\t" in line)
            assert (status["CapEff"].strip(), status["CapBnd"].strip(), status["NoNewPrivs"].strip()) == (
                "0000000000000000",
                "0000000000000000",
                "1",
            ), name
            # The console alone is root (with no capability): it opens the engine's socket, root's and 0660, which
            # root owning it opens with none; any user that could open it would hold the engine all the same.
            if container.labels["com.docker.compose.service"] != "console":
                assert status["Uid"].split()[1] != "0", f"{name} runs as root"


def test_splitting_and_decomposing_through_the_balancer(stack):
    with httpx.Client(base_url=stack.url, timeout=10) as http:
        created = http.post("/users", json={"name": "Ada", "country": "GB"})
        assert created.status_code == 201, created.text
        user = created.json()
        assert http.get(f"/users/{user['id']}").json()["name"] == "Ada"
        assert http.get("/shards").status_code == 404  # internal: the router's own port only
        router = f"http://{ip_address(stack.containers('router')[0])}:8000"
        shards = http.get(router + "/shards").json()["shards"]
        assert shards["shard-a"]["users"] >= 1 and "GB" in shards["shard-a"]["countries"]
        assert http.post("/users", json={"name": "X", "country": "ZZ"}).status_code == 422


def test_users_count_is_the_users_the_router_holds(stack):
    """The api's GET /users/count (the master's broadcast, once per interval) counts the router's users, not
    a stand-in: after a user is created through /users, every container's answer reaches the router's count."""
    with httpx.Client(base_url=stack.url, timeout=10) as http:
        assert http.post("/users", json={"name": "Count", "country": "US"}).status_code == 201
        held = int(http.get(f"http://{ip_address(stack.containers('router')[0])}:8000/users/count").json()["count"])
        assert held >= 2  # this user and the splitting test's

        def every_container_counts_them() -> bool:
            answers = [http.get(f"http://{ip_address(c)}:8000/users/count").json() for c in stack.containers("api")]
            return all(a["count"] >= held and a["origin"].startswith("router http://router:8000") for a in answers)

        wait_until(
            every_container_counts_them, 60, interval=1.0, what="every api container to count the router's users"
        )


def api_addresses(stack: ComposeStack) -> set[str]:
    return {ip_address(c) for c in stack.containers("api")}


def wait_prometheus_lists_the_api_replicas(stack: ComposeStack, timeout: float = 60) -> None:
    """Until Prometheus scrapes exactly the running api containers (both ports of each, up): DNS, no reload."""
    prometheus = PrometheusApi(stack.prometheus_url)
    wait_until(
        lambda: prometheus.instances("api") == api_addresses(stack),
        timeout,
        interval=1.0,
        what=f"Prometheus to scrape exactly the api containers {sorted(api_addresses(stack))}",
    )


# -- Prometheus (infra/prometheus): every replica of every service and the balancer, by Docker's DNS ----------------


def test_prometheus_scrapes_every_replica_of_every_service_and_the_balancer(stack):
    prometheus = PrometheusApi(stack.prometheus_url)
    expected = {job: {ip_address(c) for c in stack.containers(job)} for job in (*CLUSTER_JOBS, "lb")}
    assert len(expected["api"]) == 3 and all(expected.values()), expected

    def every_target_up() -> bool:
        targets = prometheus.targets()
        for job, addresses in expected.items():
            mine = [t for t in targets if t.job == job]
            ports = {"app", "master"} if job != "lb" else {""}
            if {(t.instance, t.endpoint) for t in mine} != {(a, e) for a in addresses for e in ports}:
                return False
            if any(t.health != "up" or t.service != job for t in mine):
                return False
        return True

    try:
        wait_until(every_target_up, 90, interval=1.0, what="every target up in Prometheus")
    except TimeoutError:
        raise AssertionError(f"expected {expected}; Prometheus has {prometheus.targets()}") from None
    # Scraped means read: the cluster masters' workers, the app's requests, HAProxy's servers.
    assert prometheus.query('scalecube_cluster_target_workers{job="api", endpoint="master"}').keys()
    assert prometheus.query('haproxy_backend_active_servers{job="lb", proxy="api"}')
    prometheus_container = stack.containers("prometheus")[0]
    prometheus_container.reload()
    assert prometheus_container.attrs["State"]["Health"]["Status"] == "healthy"


def test_a_recording_rule_shows_the_requests_sent_through_the_balancer(stack):
    prometheus = PrometheusApi(stack.prometheus_url)
    api = '{service="api"}'

    def rules() -> dict | None:
        """Every rule's answer, once each has been evaluated over a window the load spans. Each rule group runs
        on its own schedule: the request rates can show while the p95 and the error ratio still stand on a
        window with no request in it (0/0: NaN) until their next evaluation."""
        rates = prometheus.query(f"instance:http_requests:rate1m{api}")
        if len(rates) != 3 or not all(rate > 0 for rate in rates.values()):
            return None
        answers = {
            name: list(prometheus.query(f"{name}{api}").values())
            for name in (
                "service:http_requests:rate1m",
                "worker:http_requests:rate1m",
                "service:http_request_duration_seconds:p95_1m",
                "service:http_requests_errors:ratio_rate1m",
            )
        }
        if not all(answers.values()) or not all(math.isfinite(v) for values in answers.values() for v in values):
            return None
        return {"instances": rates, **answers}

    # GETs on new connections (so the balancer spreads them over the replicas) until Prometheus shows each
    # replica's rate: a rate needs two scrapes that saw the counter grow, so the load spans scrapes, however
    # slow the machine. Bounded by count and time. Prometheus's own scrapes are not counted by the rules.
    with LoadGenerator(stack.url + "/", concurrency=2, keepalive=False, max_requests=50_000, max_seconds=120) as load:
        answers = wait_until(rules, 90, interval=1.0, what="every recording rule's answer for the api's requests")
    assert load.result.failed == 0, str(load.result)
    assert {dict(labels)["instance"] for labels in answers["instances"]} == api_addresses(stack)
    (service_rate,) = answers["service:http_requests:rate1m"]
    assert service_rate > 0
    (p95,) = answers["service:http_request_duration_seconds:p95_1m"]
    assert 0 < p95 < 10, p95
    (errors,) = answers["service:http_requests_errors:ratio_rate1m"]
    assert errors == 0


def test_the_python_balancer_profile_serves_the_same_stack(stack):
    python_lb = f"http://127.0.0.1:{stack.env['PYTHON_LB_PORT']}"
    stack.compose.run(
        ["--profile", "python-lb", "up", "-d", "--wait", "--wait-timeout", "180", "lb-python"], timeout=300
    )
    try:
        hosts = set()
        with httpx.Client(base_url=python_lb, timeout=10) as http:
            for _ in range(30):
                response = http.get("/", headers={"Connection": "close"})
                assert response.status_code == 200, response.text
                hosts.add(response.json()["host"])
            created = http.post("/users", json={"name": "Lin", "country": "CN"})
            assert created.status_code == 201 and created.json()["shard"] == "shard-b", created.text
            assert http.get("/auth/verify").status_code == 401  # auth's own answer: routed there
            assert http.get("/auth/users/count").status_code == 404  # internal
            assert http.get("/users/count").json().get("source") is not None  # the api's, not the router's
        assert len(hosts) == 3, hosts
        # Prometheus finds it by its name and reads its admin port with the password file.
        prometheus = PrometheusApi(stack.prometheus_url)
        wait_until(
            lambda: [t.health for t in prometheus.targets() if t.job == "lb-python"] == ["up"],
            60,
            interval=1.0,
            what="Prometheus to scrape the Python balancer",
        )
        assert prometheus.query('scalecube_lb_backend_up{job="lb-python", upstream="api"}')
    finally:
        stack.compose.run(["--profile", "python-lb", "rm", "-sfv", "lb-python"], timeout=120)


def out_of_rotation(balancer: Balancer, ip: str) -> bool:
    """HAProxy no longer sends to ``ip``: no api server holds it (DNS dropped it) or the one that does is
    not UP ("UP 1/2" is still up: one failed check of the two that take it down)."""
    return not any(server.ip == ip and server.status.startswith("UP") for server in balancer.servers("api"))


@pytest.mark.load
def test_a_container_killed_under_get_load_costs_no_failed_request(stack):
    victim = random.choice(stack.containers("api"))
    victim_ip = ip_address(victim)
    balancer = Balancer(stack.stats_url, stack.env["LB_ADMIN_PASSWORD"])
    assert victim_ip and not out_of_rotation(balancer, victim_ip)
    started = datetime.now(UTC)
    # Bounded by count and time, far above what the waits below need.
    with LoadGenerator(stack.url + "/", concurrency=8, keepalive=True, max_requests=200_000, max_seconds=120) as load:
        wait_until(lambda: load.result.ok >= 200, 30, what="load to get going")
        victim.kill()  # SIGKILL: no drain, the balancer's retries and health checks must cover it
        # Load goes on for as long as HAProxy could still pick the dead replica (until its checks or DNS take
        # it out), then for a few hundred requests more: the whole window the claim is about, however slow.
        wait_until(
            lambda: out_of_rotation(balancer, victim_ip),
            60,
            interval=0.2,
            what="HAProxy to take the killed container out",
        )
        out_at = load.result.total
        wait_until(lambda: load.result.total >= out_at + 200, 30, what="load after the kill")
    result = load.result
    assert result.total >= 400, str(result)
    # The only failures a balancer cannot prevent: responses the dying replica had begun (HAProxy logs "SD").
    lb_log = stack.containers("lb")[0].logs(since=started).decode(errors="replace")
    cut = [line for line in lb_log.splitlines() if HAPROXY_CUT_RESPONSE.search(line)]
    assert result.failed == len(cut), f"{result}; responses cut by the kill: {cut}"
    stack.up("--scale", "api=3")  # compose replaces it (restart: unless-stopped would too)
    stack.wait_served_by(3)


def test_scaling_3_to_5_to_2_is_picked_up_by_the_balancer_without_restart(stack):
    lb = stack.containers("lb")[0]
    started = lb.attrs["State"]["StartedAt"]
    stack.up("--scale", "api=5", "--no-recreate")
    stack.wait_served_by(5)
    wait_prometheus_lists_the_api_replicas(stack)  # and Prometheus scrapes each, by DNS too
    stack.up("--scale", "api=2", "--no-recreate")
    stack.wait_served_by(2)
    wait_prometheus_lists_the_api_replicas(stack)
    lb.reload()
    assert lb.attrs["State"]["StartedAt"] == started and lb.attrs["RestartCount"] == 0
    stack.up("--scale", "api=3", "--no-recreate")
    stack.wait_served_by(3)


# -- `scalecube demo all --docker --smoke`: every demo judges its claims against this stack ------------------------
#
# One run of every demo, in order, against the package's stack (COMPOSE_PROJECT_NAME names it; the stack's env
# carries its published ports, so the compose commands the demos run see the same project). Each demo must judge
# at least one claim and fail none; what they scale, pause or kill is back as it was afterwards.

# What each demo must have judged (and found holding) against compose: a claim only the stack can show.
DOCKER_CLAIMS = {
    "cloning": "the balancer spreads requests over every api container",
    "availability": "0 failed GETs through a retrying balancer",
    "overload": "0 failed cheap requests through the balancers, 8 heavy at once",
    "reload": "0 failed requests, rolling restart of every api container",
    "sessions": "a session made through one container is valid through every one",
    "broadcast": "broadcast: only the masters read the source, no worker",
    "splitting": "each shard holds exactly the users of its countries",
    "decomposing": "the balancer spreads the hashing over every auth container",
    "failover": "primary killed, 1 sentinel down: old primary rejoins as a replica",
}


@pytest.mark.timeout(900)  # every demo's smoke run, in turn: ~4 min here
@pytest.mark.load
def test_every_demo_judges_its_claims_against_the_stack(stack, tmp_path):
    env = {**os.environ, **stack.env, "COMPOSE_PROJECT_NAME": stack.project}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "scalecube.cli", "demo", "all", "--docker", "--smoke", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    took = time.monotonic() - started
    explain = f"after {took:.0f}s\n{done.stdout[-6000:]}\n{done.stderr[-4000:]}"
    assert done.returncode == 0, explain
    assert "scalecube demo all" in done.stdout and "every judged claim holds" in done.stdout, explain
    for name in DEMOS:  # every demo runs under `all --docker`
        with open(tmp_path / name / "claims.csv") as file:
            verdicts = {row["claim"]: row["verdict"] for row in csv.DictReader(file)}
        assert "fails" not in verdicts.values() and "holds" in verdicts.values(), (name, verdicts)
        if name in DOCKER_CLAIMS:
            assert verdicts[DOCKER_CLAIMS[name]] == "holds", (name, verdicts)
    # Each report links to the console's and Prometheus's live views of the same stack.
    cloning = (tmp_path / "cloning" / "report.html").read_text()
    assert f"http://127.0.0.1:{stack.env['CONSOLE_PORT']}/#charts-panel" in cloning
    assert f"http://127.0.0.1:{stack.env['PROMETHEUS_PORT']}/graph?" in cloning
    # Put back as found: 3 api containers, 1 auth, every one serving; nothing left paused; both sessions Redis
    # nodes running again (the failover demo killed each once).
    assert len(stack.containers("api")) == 3 and len(stack.containers("auth")) == 1
    assert all(c.status == "running" for s in ("redis", "redis-replica") for c in stack.containers(s, all=True))
    assert not [
        c.name
        for c in stack.client.containers.list(
            filters={"label": f"com.docker.compose.project={stack.project}", "status": "paused"}
        )
    ]
    stack.wait_served_by(3)


# -- Locust's web UI in compose: a swarm of every class, through Locust's own HTTP API --------------------------
# The check that would have caught the 27 % of failed logins: the locust service must run every class the stack
# serves, in any mix, with 0 failures. Its master (web UI on LOCUST_PORT) and worker are the stack's own.

LOCUST_SWARM_SECONDS = 20


@pytest.mark.load
def test_locust_web_ui_swarms_every_class_with_no_failure(stack):
    from tests.support.locust_web import ALL_CLASSES, LocustWeb

    web = LocustWeb(f"http://127.0.0.1:{stack.locust_port}")
    try:
        web.wait_ready(workers=1)
        swarm = web.swarm(ALL_CLASSES, users=10, seconds=LOCUST_SWARM_SECONDS)  # the form's default host: lb
    finally:
        web.close()
    assert swarm.started["user_classes"] == sorted(ALL_CLASSES), swarm.explain()  # every class offered
    assert swarm.classes == set(ALL_CLASSES), swarm.explain()  # ... and run
    assert swarm.failures == 0, swarm.explain()
    assert swarm.silent(ALL_CLASSES) == {}, swarm.explain()  # each class's endpoints got requests
    assert swarm.requests("/auth/register") > 0  # the session users registered: the api checks passwords at auth


# -- The console, in a real browser (Debian's chromium driven by Playwright) ------------------------------------------
# A person's view of the stack: the page at CONSOLE_PORT (user admin, the LB_ADMIN_PASSWORD secret) under a Locust
# swarm started from the page, then the page's own actions, each confirmed and logged with its effect. Screenshots
# go to tests/artifacts/console/. Puts the stack back as found: 3 api containers, no swarm.

CONSOLE_SCALE_SECONDS = 20  # "scale to 5" shows 5 api containers within this


def _rates_add_up(console) -> tuple[list[float], float] | None:
    """Every api container's rate non-zero, and their sum within 10 % of the balancer's rate to the api."""
    rates = [c["rate"] for c in console.containers("api")]
    balancer = console.balancer_rate()
    if len(rates) == 3 and all(r > 0 for r in rates) and balancer > 0 and abs(sum(rates) - balancer) <= 0.1 * balancer:
        return rates, balancer
    return None


LIVE_AGE_LIMIT = 2.0  # issue #15: the live charts at most this far behind (the 1 s scrape + 1 s)
LIVE_DRAWS = 8  # the page's draws the ages are read from


def _workers_add_up(console) -> dict[str, float] | None:
    """One draw of the live charts: a series for every worker of every api container shown, and each container's
    workers adding up to that container's series on the rates chart (one Prometheus instant: panels.snapshot).
    One worker's own rate may be 0 for a while: the balancer keeps its connections to a container alive and reuses
    them, and a master spreads connections, not requests. At 10 users one worker of a container was seen at 0/s for
    18 s while its sibling served 21/s; the container's total is what the load guarantees."""
    charts = console.charts()
    rates, drawn = charts.get("rates", {}), charts.get("workers", {})
    for container in console.containers("api"):
        name = "api-" + container["name"].rsplit("-", 1)[1]  # shortName(): api-2 of scalecube-…-api-2
        mine = [rate for series, rate in drawn.items() if series.startswith(name + "/w")]
        total = rates.get(name) or 0
        if not container["workers"] or len(mine) < len(container["workers"]) or total <= 0:
            return None
        if abs(sum(mine) - total) > 1e-6 * total:
            return None
    return drawn


def _ages_over_draws(console, draws: int) -> dict[str, list[float]]:
    """Each live chart's data age as the page showed it, over ``draws`` successive draws (one per poll)."""
    ages: dict[str, list[float]] = collections.defaultdict(list)
    drawn_at = None
    for _ in range(draws):
        console.wait(lambda: console.page.get_attribute("#freshness", "data-time") != drawn_at, 10, "a new draw")
        drawn_at = console.page.get_attribute("#freshness", "data-time")
        for chart, age in console.ages().items():
            assert age is not None, f"the {chart} chart has no data under load"
            ages[chart].append(age)
    return dict(ages)


def _every_target_up(prometheus: PrometheusApi, timeout: float) -> None:
    deadline, down = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        down = [t for t in prometheus.targets() if t.health != "up"]
        if not down:
            return
        time.sleep(1)
    raise AssertionError(f"Prometheus targets not up {timeout:g} s after the scale: {down}")


@pytest.mark.timeout(300)
@pytest.mark.load
def test_the_console_shows_the_stack_live_and_acts_on_it(stack):
    from tests.support.browser import console_page, require_chromium

    require_chromium()
    prometheus = PrometheusApi(stack.prometheus_url)
    with console_page(stack.console_url, "compose", password=stack.env["LB_ADMIN_PASSWORD"]) as console:
        # The topology: 3 api containers, each with its workers (every worker its master keeps).
        apis = console.wait(lambda: len(console.containers("api")) == 3 and console.containers("api"), 60, "3 api")
        assert all(c["workers"] for c in apis), apis
        assert {c["name"] for c in apis} == {c.name for c in stack.containers("api")}

        # Under a Locust swarm started from the page: non-zero rate on each container, summing to the balancer's.
        console.act("swarm-start", user_class="CloningUser", users="10", spawn_rate="10")
        try:
            rates, balancer = console.wait(
                lambda: _rates_add_up(console),
                90,
                "the api rates adding up to the lb's",
                shown=lambda: (console.containers("api"), console.balancer_rate()),
            )
            # Live: the per-worker chart has every worker of each api container, adding up to its container's rate;
            # each chart's data is at most LIVE_AGE_LIMIT behind when the page draws it (the worst of LIVE_DRAWS draws).
            started = time.monotonic()
            workers = console.wait(
                lambda: _workers_add_up(console),
                20,
                "every api worker's live series, adding up to its container's",
                shown=lambda: (console.containers("api"), console.charts()),
            )
            ages = _ages_over_draws(console, LIVE_DRAWS)
            print(f"live chart ages (s) over {LIVE_DRAWS} draws, read in {time.monotonic() - started:.1f} s: {ages}")
            assert set(ages) == {"rates", "workers", "latency", "errors"}, ages
            assert all(max(a) <= LIVE_AGE_LIMIT for a in ages.values()), ages
            console.screenshot("under-load")

            # Scale to 5: five api containers on the page within 20 s, then healthy (the timeline's effect).
            console.act("scale", service="api", count="5")
            console.wait(lambda: len(console.containers("api")) == 5, CONSOLE_SCALE_SECONDS, "5 api containers")
            console.wait(
                lambda: [e for e in console.events() if e["kind"] == "effect" and "5 api containers" in e["text"]],
                120,
                "the scale's effect in the timeline",
            )
            console.screenshot("scaled-to-5")
            api = {ip_address(c) for c in stack.containers("api")}
            wait_until(lambda: prometheus.instances("api") == api, 60, interval=1, what="Prometheus scraping 5 api")
            _every_target_up(prometheus, timeout=30)

            # Kill a container: the page shows it down, then its replacement up; the timeline has both.
            victim = console.containers("api")[0]
            console.act("kill-container", container=victim["name"])
            console.wait(
                lambda: [e for e in console.events() if e["kind"] == "effect" and victim["name"] in e["text"]],
                120,
                f"{victim['name']} replaced, in the timeline",
            )
            killed = [e["text"] for e in console.events() if "killed" in e["text"] and victim["name"] in e["text"]]
            assert killed, console.events()
            back = console.wait(
                lambda: next(
                    (
                        c
                        for c in console.containers("api")
                        if c["name"] == victim["name"] and (c["id"] != victim["id"] or c["restarts"] > 0)
                    ),
                    None,
                ),
                10,
                f"{victim['name']} replaced",
            )
            assert back["state"] == "running" and len(console.containers("api")) == 5
            console.screenshot("after-kill")

            # One worker killed (its master replaces it), auth's workers reloaded (SIGHUP), a shard's Redis stopped
            # for 2 s and started again: each measured in the timeline.
            console.act("kill-worker", container=back["name"])
            console.act("rolling-restart", service="auth")
            console.act("stop-redis", service="shard-b-redis", seconds="2")
            for effect in (f"of {back['name']} replaced by pid", "1 auth containers reloaded", "was down 2 s"):
                console.wait(
                    lambda: [e for e in console.events() if e["kind"] in ("effect", "failed") and effect in e["text"]],
                    90,
                    f"'{effect}' in the timeline",
                )
        finally:
            console.act("swarm-stop")
        # Back to 3 through the page: the two highest stop (draining) and go.
        console.act("scale", service="api", count="3")
        console.wait(
            lambda: [e for e in console.events() if e["kind"] == "effect" and "3 api containers" in e["text"]],
            120,
            "the scale back to 3 in the timeline",
        )
        failed = [e for e in console.events() if e["kind"] == "failed"]
        assert not failed, failed
        assert not console.errors, console.errors
    stack.wait_served_by(3)
    assert 0.9 * balancer <= sum(rates) <= 1.1 * balancer  # what the page showed, for the record
    assert len(workers) >= sum(len(c["workers"]) for c in apis), workers
