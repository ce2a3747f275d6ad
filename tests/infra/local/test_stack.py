"""`scalecube up / down / status`: the local stack as real processes (Redis, the api cluster, a supervisor)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis

from cluster import control
from infra.local.pids import ProcessRef
from infra.local.ports import free_port
from infra.local.processes import wait_until
from infra.local.restarts import RestartPolicy
from infra.paths import REPO  # REPO: the checkout the CLI runs from
from tests.support.haproxy import require_haproxy
from tests.support.prometheus import require_prometheus_binary

CLI_TIMEOUT = 120  # `up -d` waits for the stack; `down` for the api to drain


class Stack:
    """One state dir and the `scalecube` commands run against it; remembers every pid it has seen."""

    def __init__(self, state_dir: Path, run_dir: Path) -> None:
        self.state_dir = state_dir
        self.port = free_port()
        # A private run dir: `status` must not pick up clusters other tests run meanwhile.
        self.env = {**os.environ, "SCALECUBE_RUN_DIR": str(run_dir)}
        self.seen: set[ProcessRef] = set()
        self.foreground: list[subprocess.Popen[bytes]] = []
        self.started: subprocess.CompletedProcess[str] | None = None
        self.kind = ""  # the balancer, for a stack that has one
        self.stats_port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "stack.json"

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "scalecube", *args, "--state-dir", str(self.state_dir)],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def up_args(self, workers: int) -> list[str]:
        # The api alone: these tests are about the stack's machinery; the full stack has its own section.
        return ["up", "--port", str(self.port), "--workers", str(workers), "--services", "api"]

    def up_detached(self, workers: int = 1) -> subprocess.CompletedProcess[str]:
        result = self.cli(*self.up_args(workers), "-d")
        self.remember()
        return result

    def up_foreground(self, workers: int = 1) -> subprocess.Popen[bytes]:
        """`scalecube up` without -d: this process is the supervisor."""
        with open(self.foreground_output, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "scalecube", *self.up_args(workers), "--state-dir", str(self.state_dir)],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.foreground.append(process)
        return process

    @property
    def foreground_output(self) -> Path:
        return self.state_dir.parent / "foreground.out"

    def output(self) -> str:
        return self.foreground_output.read_text(errors="replace")

    def state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def wait_ready(self, process: subprocess.Popen[bytes], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.state()
            if state and state["phase"] == "ready" and state["supervisor"]["pid"] == process.pid:
                self.remember()
                return state
            if process.poll() is not None:
                raise AssertionError(f"`scalecube up` exited with {process.returncode}:\n{self.output()}")
            time.sleep(0.1)
        raise TimeoutError(f"the stack was not ready within {timeout}s:\n{self.output()}")

    def component(self, name: str) -> dict[str, Any]:
        state = self.state()
        assert state is not None, "no state file"
        return next(c for c in state["components"] if c["name"] == name)

    def component_cluster(self, name: str) -> dict[str, Any]:
        """A cluster component's master and workers, from its control socket."""
        return control.request(self.component(name)["control"], "status")

    def remember(self) -> list[ProcessRef]:
        """Every process of the stack now: supervisor, components, the api's workers."""
        state = self.state()
        if state is None:
            return []
        refs = [ProcessRef(state["supervisor"]["pid"], state["supervisor"]["started"])]
        refs += [ProcessRef(c["pid"], c["started"]) for c in state["components"]]
        for c in state["components"]:
            if c.get("control"):
                try:
                    workers = control.request(c["control"], "status")["workers"]
                except (ConnectionError, OSError, ValueError):
                    continue
                refs += [ref for w in workers if (ref := ProcessRef.of(w["pid"])) is not None]
        self.seen.update(refs)
        return refs

    def teardown(self) -> None:
        """Whatever a test did or failed to do: `scalecube down`, then SIGKILL by pid what still runs."""
        self.cli("down", timeout=90)
        for process in self.foreground:
            if process.poll() is None:
                process.kill()
            process.wait(10)
        for ref in self.seen:
            ref.kill_tree()


def still_running(refs: list[ProcessRef]) -> list[ProcessRef]:
    return [ref for ref in refs if ref.alive()]


def processes_mentioning(path: Path) -> list[int]:
    """Pids whose command line names ``path`` (only to assert nothing was left behind; never to kill)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if any(str(path) in part for part in process.info["cmdline"] or []):
            found.append(process.info["pid"])
    return found


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    state_dir = tmp_path / "state"
    under_test = Stack(state_dir, tmp_path)
    yield under_test
    under_test.teardown()


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One detached stack, two api workers, shared by the tests that only look at it."""
    base = tmp_path_factory.mktemp("stack")
    shared = Stack(base / "state", base)
    try:
        shared.started = shared.up_detached(workers=2)
        assert shared.started.returncode == 0, shared.started.stdout + shared.started.stderr
        yield shared
    finally:
        shared.teardown()


# -- a detached stack ---------------------------------------------------------------------


def test_up_detached_prints_the_urls_and_the_api_answers(running_stack):
    state = running_stack.state()
    assert state is not None and state["phase"] == "ready"
    assert [c["name"] for c in state["components"]] == ["redis", "api"]
    printed = running_stack.started.stdout
    for url in (running_stack.url, running_stack.component("redis")["url"], str(running_stack.state_dir)):
        assert url in printed
    assert "scalecube down" in printed

    root = httpx.get(running_stack.url + "/", timeout=10)
    ready = httpx.get(running_stack.url + "/readyz", timeout=10)

    assert root.status_code == 200
    assert root.headers["x-served-by"].endswith(f"/{root.json()['pid']}")
    assert ready.status_code == 200 and ready.json()["checks"] == {"redis": True}


def test_sessions_are_kept_in_the_stacks_redis(running_stack):
    stack_redis = redis.Redis.from_url(running_stack.component("redis")["url"])
    with httpx.Client(base_url=running_stack.url, timeout=10) as client, stack_redis:
        login = client.post("/session/login", json={"user": "ada"})
        me = client.get("/session/me")
        # In the Redis the stack started, not some other one.
        sessions_kept = len(stack_redis.keys("scalecube:session:*"))
        assert client.post("/session/logout").status_code == 200
        after = client.get("/session/me")

    assert login.status_code == 200, login.text
    assert me.status_code == 200 and me.json()["user"] == "ada" and me.json()["backend"] == "redis"
    assert sessions_kept == 1
    assert after.status_code == 401


def test_status_json_shows_the_stack_and_the_api_workers(running_stack):
    result = running_stack.cli("status", "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    stack = report["stack"]
    state = running_stack.state()
    assert stack["supervisor"] == {"pid": state["supervisor"]["pid"], "alive": True}
    assert [(c["name"], c["pid"], c["alive"]) for c in stack["components"]] == [
        (c["name"], c["pid"], True) for c in state["components"]
    ]
    api = next(c for c in stack["components"] if c["name"] == "api")
    assert api["cluster"]["master"]["pid"] == api["pid"]
    assert len(api["cluster"]["workers"]) == 2
    assert all(psutil.Process(w["pid"]).ppid() == api["pid"] for w in api["cluster"]["workers"])
    assert report["clusters"] == []  # nothing else runs in this test's run dir

    text = running_stack.cli("status")
    assert "local stack" in text.stdout and "services.api.app:app" in text.stdout


def test_a_second_up_on_the_same_state_dir_is_refused(running_stack):
    owner = running_stack.state()["supervisor"]["pid"]
    other_port = free_port()

    result = running_stack.cli("up", "-d", "--port", str(other_port))

    assert result.returncode == 1
    assert f"a stack is already running (pid {owner})" in result.stderr
    assert "scalecube down first" in result.stderr
    assert "Traceback" not in result.stderr
    assert running_stack.state()["supervisor"]["pid"] == owner
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{other_port}/", timeout=2)


# -- stopping -------------------------------------------------------------------------------


def test_down_stops_every_process_and_removes_the_state_file(stack):
    assert stack.up_detached().returncode == 0
    processes = stack.remember()
    assert len(processes) == 4  # supervisor, redis, api master, one worker
    assert still_running(processes) == processes

    result = stack.cli("down")

    assert result.returncode == 0, result.stderr
    assert "stopped the stack" in result.stdout
    assert still_running(processes) == []
    assert not stack.state_file.exists()
    again = stack.cli("down")
    assert again.returncode == 0 and "no stack is running" in again.stdout


@pytest.mark.parametrize("option", ["--port", "--redis-port"])
@pytest.mark.parametrize("detach", [True, False], ids=["detached", "foreground"])
def test_a_taken_port_is_a_clear_error_and_nothing_is_left_running(stack, option, detach):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        args = ["up", "--port", str(stack.port), option, str(taken), *(["-d"] if detach else [])]

        result = stack.cli(*args)

    assert result.returncode == 2
    assert f"port {taken} on 127.0.0.1" in result.stderr and "already in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not stack.state_file.exists()
    assert processes_mentioning(stack.state_dir) == []


def test_a_component_that_cannot_start_is_reported_with_its_log_and_the_rest_is_stopped(stack):
    # The api refuses to start with it (a bad secret no longer gets this far: `up` refuses it before starting).
    stack.env["MAX_BODY_BYTES"] = "0"

    result = stack.cli(*stack.up_args(workers=1))

    assert result.returncode == 1
    assert "api failed to start: exited (exit code 3) before the stack was ready" in result.stderr
    assert "MAX_BODY_BYTES='0': Input should be greater than 0" in result.stderr  # from the api's log
    assert "Traceback" not in result.stderr.split("--- last lines")[0]
    assert not stack.state_file.exists()
    assert processes_mentioning(stack.state_dir) == []  # Redis, started first, was stopped


def test_foreground_up_stops_everything_on_ctrl_c(stack):
    process = stack.up_foreground()
    stack.wait_ready(process)
    processes = stack.remember()
    assert httpx.get(stack.url + "/readyz", timeout=10).status_code == 200

    process.send_signal(signal.SIGINT)

    assert process.wait(60) == 0
    output = stack.output()
    assert stack.url in output and "Ctrl-C to stop" in output
    assert "SIGINT received" in output and "stopped: api, redis" in output
    assert still_running(processes) == []
    assert not stack.state_file.exists()


def test_a_stale_state_file_is_cleaned_up_with_what_it_left_running(stack):
    process = stack.up_foreground()
    stack.wait_ready(process)
    orphans = [ref for ref in stack.remember() if ref.pid != process.pid]
    process.kill()  # the supervisor dies without stopping anything
    process.wait(10)

    status = json.loads(stack.cli("status", "--json").stdout)["stack"]
    assert status["supervisor"]["alive"] is False
    result = stack.up_detached()

    assert result.returncode == 0, result.stderr
    assert still_running(orphans) == []  # killed by pid, after checking each is still the recorded process
    assert stack.state()["supervisor"]["pid"] != process.pid
    assert httpx.get(stack.url + "/readyz", timeout=10).status_code == 200


# -- N replicas behind a balancer (`up --api 3 --lb haproxy|python`) ---------------------------------

REPLICAS = 3
REPLICA_NAMES = [f"api-{n}" for n in range(1, REPLICAS + 1)]
LB_COOKIE = "SCALECUBE_LB"


def detached_stack(base: Path, *args: str, kind: str = "", env: dict[str, str] | None = None) -> Iterator[Stack]:
    """``scalecube up -d ARGS`` (``env`` added to the environment it runs in) on ports of its own under ``base``,
    yielded once up; torn down (by pid) after."""
    shared = Stack(base / "state", base)
    shared.env |= env or {}
    shared.kind = kind
    shared.stats_port = free_port()
    try:
        shared.started = shared.cli(
            "up", "-d", *args, "--port", str(shared.port), "--stats-port", str(shared.stats_port)
        )
        shared.remember()
        assert shared.started.returncode == 0, shared.started.stdout + shared.started.stderr
        yield shared
    finally:
        shared.teardown()


@pytest.fixture(scope="module", params=["haproxy", "python"])
def balanced_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One detached stack per balancer, shared by this section's tests: 3 replicas of one worker each,
    sticky, memory sessions (the one combination where stickiness keeps sessions). The last test stops it."""
    kind = request.param
    if kind == "haproxy":
        require_haproxy()
    yield from detached_stack(
        tmp_path_factory.mktemp(f"lb-{kind}"),
        "--api",
        str(REPLICAS),
        "--lb",
        kind,
        "--sticky",
        "--session-backend",
        "memory",
        "--workers",
        "1",
        "--services",
        "api",
        kind=kind,
    )


def status_json(stack: Stack) -> dict[str, Any]:
    result = stack.cli("status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["stack"]


def replica_of_pid(stack: Stack) -> dict[int, str]:
    """Every worker pid of every replica -> the replica's name, from `scalecube status --json`."""
    return {
        worker["pid"]: c["name"]
        for c in status_json(stack)["components"]
        if c.get("cluster")
        for worker in c["cluster"]["workers"]
    }


def fresh_get(url: str, cookies: dict[str, str] | None = None) -> httpx.Response:
    """A GET on a new connection, with only the given cookies: the balancer decides anew."""
    with httpx.Client(timeout=10, cookies=cookies) as client:
        return client.get(url)


def test_status_lists_dns_every_replica_and_the_balancer(balanced_stack):
    stack = status_json(balanced_stack)

    names = [c["name"] for c in stack["components"]]
    assert names == ["redis", "dns", *REPLICA_NAMES, "lb"]  # start order
    assert all(c["alive"] for c in stack["components"])
    byname = {c["name"]: c for c in stack["components"]}
    replicas = [byname[name] for name in REPLICA_NAMES]
    # Like containers: one address each, one port for all, and DNS names them all `api`.
    hosts = [httpx.URL(c["url"]).host for c in replicas]
    assert hosts == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert len({httpx.URL(c["url"]).port for c in replicas}) == 1
    assert byname["dns"]["records"] == {"api": hosts}
    for replica in replicas:
        assert replica["cluster"]["master"]["pid"] == replica["pid"]
        assert len(replica["cluster"]["workers"]) == 1
    lb = byname["lb"]
    assert lb["kind"] == {"haproxy": "haproxy", "python": "python-lb"}[balanced_stack.kind]
    assert lb["url"] == balanced_stack.url and lb["stats"] == f"http://127.0.0.1:{balanced_stack.stats_port}"
    port = httpx.URL(replicas[0]["url"]).port
    assert sorted((b["address"], b["up"]) for b in lb["backends"]) == [(f"{h}:{port}", True) for h in hosts]
    assert lb["stats"] + "/" in balanced_stack.started.stdout  # `up` says where the stats page is
    # ...which asks for a password: generated for this stack, 0600 in its state dir, and `up` says where.
    password_file = Path(lb["admin_password_file"])
    assert (
        password_file.parent == balanced_stack.state_dir.resolve()
        and str(password_file) in balanced_stack.started.stdout
    )
    assert (password_file.stat().st_mode & 0o777) == 0o600
    password = password_file.read_text().strip()
    assert len(password) >= 24 and password not in balanced_stack.started.stdout
    assert httpx.get(lb["stats"] + "/", timeout=10).status_code == 401
    assert httpx.get(lb["stats"] + "/", timeout=10, auth=(lb["admin_user"], password)).status_code == 200

    text = balanced_stack.cli("status").stdout
    assert all(name in text for name in ("dns", *REPLICA_NAMES, "lb"))
    assert text.count("services.api.app:app") == REPLICAS  # every replica's worker table


def test_requests_through_the_balancer_reach_every_replica(balanced_stack):
    served_by = [fresh_get(balanced_stack.url + "/").headers["x-served-by"] for _ in range(4 * REPLICAS)]

    owners = replica_of_pid(balanced_stack)
    replicas = [owners.get(int(value.rsplit("/", 1)[-1])) for value in served_by]
    assert set(replicas) == set(REPLICA_NAMES), served_by


def test_sticky_balancer_keeps_a_memory_session_with_one_worker_per_replica(balanced_stack):
    with httpx.Client(
        base_url=balanced_stack.url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)
    ) as client:
        login = client.post("/session/login", json={"user": "ada"})
        assert login.status_code == 200, login.text
        assert LB_COOKIE in client.cookies  # the balancer pinned this client
        me = [client.get("/session/me") for _ in range(2 * REPLICAS)]  # a new connection each time
        cookies = dict(client.cookies)

    assert [r.status_code for r in me] == [200] * len(me)
    assert {r.json()["user"] for r in me} == {"ada"} and {r.json()["backend"] for r in me} == {"memory"}
    assert len({r.headers["x-served-by"] for r in me}) == 1  # one replica, one worker
    # Without the balancer's cookie the same session cookie lands on other replicas, which never saw it.
    unpinned = [
        fresh_get(balanced_stack.url + "/session/me", cookies={k: v for k, v in cookies.items() if k != LB_COOKIE})
        for _ in range(REPLICAS)
    ]
    assert 401 in [r.status_code for r in unpinned]


def test_down_stops_the_balancer_every_replica_and_dns(balanced_stack):
    # Last of this section: it stops the shared stack.
    processes = balanced_stack.remember()
    assert len(processes) == 1 + 3 + 2 * REPLICAS  # supervisor; redis, dns, lb; each replica's master and worker
    assert still_running(processes) == processes

    result = balanced_stack.cli("down")

    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in ("dns", *REPLICA_NAMES, "lb"))
    assert still_running(processes) == []
    assert not balanced_stack.state_file.exists()
    assert processes_mentioning(balanced_stack.state_dir) == []


# -- the whole stack: auth, the router, two shards (`up --services all`, the default) ----------------------

SERVICE_NAMES = [
    "auth-redis",
    "auth",
    "shard-a-redis",
    "shard-a",
    "shard-b-redis",
    "shard-b",
    "directory-redis",
    "router",
]
FULL_REPLICAS = ["api-1", "api-2"]


@pytest.fixture(scope="module", params=["python", "haproxy"])
def full_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One detached full stack per balancer (2 api replicas of one worker): /auth/* and /users* routed by
    the balancer to auth and the router, as in compose. The last test of the section stops it."""
    kind = request.param
    if kind == "haproxy":
        require_haproxy()
    # USERS_COUNT_INTERVAL 1 s instead of 10: the users count test waits a few intervals, not minutes.
    yield from detached_stack(
        tmp_path_factory.mktemp(f"full-{kind}"),
        "--api",
        "2",
        "--lb",
        kind,
        "--workers",
        "1",
        kind=kind,
        env={"USERS_COUNT_INTERVAL": "1"},
    )


def test_full_stack_status_lists_auth_the_router_the_shards_and_their_redis(full_stack):
    stack = status_json(full_stack)

    names = [c["name"] for c in stack["components"]]
    assert names == ["redis", *SERVICE_NAMES, "dns", *FULL_REPLICAS, "lb"]  # start order
    assert all(c["alive"] for c in stack["components"])
    byname = {c["name"]: c for c in stack["components"]}
    for name in ("auth", "router", "shard-a", "shard-b"):
        assert byname[name]["cluster"]["master"]["pid"] == byname[name]["pid"]
        assert len(byname[name]["cluster"]["workers"]) == 1
    for name in ("auth-redis", "shard-a-redis", "shard-b-redis", "directory-redis"):
        assert byname[name]["kind"] == "redis" and redis.Redis.from_url(byname[name]["url"]).ping()
    # Auth and the router are "containers" of their own, named by the stack's DNS like compose's services.
    records = byname["dns"]["records"]
    assert records["auth"] == [httpx.URL(byname["auth"]["url"]).host]
    assert records["router"] == [httpx.URL(byname["router"]["url"]).host]
    for name in ("auth", "router", "shard-a", "shard-b"):
        assert byname[name]["url"] in full_stack.started.stdout  # `up` prints where each one is
    text = full_stack.cli("status").stdout
    assert all(name in text for name in SERVICE_NAMES)


def test_full_stack_register_through_the_balancer_then_log_in_at_the_api(full_stack):
    password = "correct horse battery staple"
    with httpx.Client(base_url=full_stack.url, timeout=10) as client:
        registered = client.post("/auth/register", json={"username": "ada", "password": password})
        wrong = client.post("/session/login", json={"user": "ada", "password": "not the password at all"})
        login = client.post("/session/login", json={"user": "ada", "password": password})
        me = client.get("/session/me")

    assert registered.status_code == 201, registered.text
    auth_pids = {w["pid"] for w in full_stack.component_cluster("auth")["workers"]}
    assert int(registered.headers["x-served-by"].rsplit("/", 1)[-1]) in auth_pids  # auth answered, not the api
    assert wrong.status_code == 401, wrong.text
    assert login.status_code == 200, login.text
    assert me.status_code == 200 and me.json()["user"] == "ada"


def test_full_stack_users_go_through_the_router_to_the_shards(full_stack):
    with httpx.Client(base_url=full_stack.url, timeout=10) as client:
        created = client.post("/users", json={"name": "Ada", "country": "FR"})
        assert created.status_code == 201, created.text
        fetched = client.get(f"/users/{created.json()['id']}")
    shards = httpx.get(full_stack.component("router")["url"] + "/shards", timeout=10)  # not routed: ask the router

    assert fetched.status_code == 200 and fetched.json()["name"] == "Ada"
    assert created.json()["shard"] == "shard-a"  # FR is shard-a's in the packaged map
    assert shards.status_code == 200
    body = shards.json()["shards"]
    assert set(body) == {"shard-a", "shard-b"} and all(s["status"] == "up" for s in body.values())
    assert body["shard-a"]["per_country"].get("FR", 0) >= 1


def test_full_stack_users_count_is_the_users_the_router_holds(full_stack):
    """Issue #11: the api's /users/count (through the balancer, so either replica) counts the users created
    through /users: each replica's master reads the router's count once per interval, and says so."""
    router = full_stack.component("router")["url"]
    before = httpx.get(router + "/users/count", timeout=10).json()["count"]
    with httpx.Client(base_url=full_stack.url, timeout=10) as client:
        for country in ("FR", "US", "JP"):
            assert client.post("/users", json={"name": "counted", "country": country}).status_code == 201

    def every_answer() -> list[dict[str, Any]]:
        with httpx.Client(base_url=full_stack.url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as c:
            return [c.get("/users/count").json() for _ in range(6)]  # new connections: both replicas answer

    wait_until(
        lambda: all(a["count"] == before + 3 for a in every_answer()),
        60,
        interval=0.5,
        what=f"every replica counting {before + 3} users",
    )
    assert httpx.get(router + "/users/count", timeout=10).json()["count"] == before + 3
    for answer in every_answer():
        assert answer["origin"] == f"router {router}/users/count"  # where the number comes from
        assert answer["source"] == "master broadcast" and answer["stale"] is False


# (method, path, body, the component whose own port serves it, its status there)
INTERNAL = [
    ("GET", "/metrics", None, "api-1", 200),
    ("GET", "/docs", None, "api-1", 200),
    ("GET", "/redoc", None, "api-1", 200),
    ("GET", "/openapi.json", None, "api-1", 200),
    ("GET", "/metrics", None, "router", 200),
    ("GET", "/shards", None, "router", 200),
    ("GET", "/auth/users/count", None, "auth", 200),
    ("POST", "/announcements", {"message": "internal only"}, "api-1", 202),
]


def test_full_stack_internal_paths_are_refused_by_the_balancer_and_served_by_each_service_itself(full_stack):
    """Issue 12: the public port serves the application only. Each service still serves its machinery on
    its own port, inside the network (Prometheus scrapes it there; the api asks the router there)."""
    with httpx.Client(base_url=full_stack.url, timeout=10) as public:
        for method, path, body, name, status in INTERNAL:
            refused = public.request(method, path, json=body)
            assert refused.status_code == 404, (method, path, refused.status_code, refused.text[:200])
            assert refused.json()["error"] == "not_found" and "x-served-by" not in refused.headers, (method, path)
            own = httpx.request(method, full_stack.component(name)["url"] + path, json=body, timeout=10)
            assert own.status_code == status, (method, path, name, own.status_code)
        assert public.get("/announcements/last").status_code == 200  # the public read stays
        assert public.get("/users/count").status_code == 200
        # The balancers pass paths on unchanged (no prefix is stripped): under the routed prefixes these
        # names reach auth and the router as their own paths, which serve nothing there.
        for path in ("/auth/metrics", "/auth/docs", "/auth/openapi.json", "/users/metrics", "/users/openapi.json"):
            assert public.get(path).status_code == 404, path


def test_full_stack_prometheus_config_lets_debians_prometheus_scrape_every_component(full_stack, tmp_path):
    """`scalecube prometheus-config`, then Debian's Prometheus on it: every cluster (both ports) and the balancer up."""
    binary = require_prometheus_binary("prometheus")
    written = full_stack.cli("prometheus-config")
    assert written.returncode == 0, written.stdout + written.stderr
    port = free_port()
    with open(tmp_path / "prometheus.log", "wb") as log:
        prometheus = subprocess.Popen(
            [
                binary,
                f"--config.file={full_stack.state_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        clusters = [*FULL_REPLICAS, *(name for name in SERVICE_NAMES if not name.endswith("-redis"))]
        expected = {(name, endpoint) for name in clusters for endpoint in ("app", "master")} | {("lb", "")}

        def every_target_up() -> bool:
            targets = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            seen = {(t["labels"]["instance"], t["labels"].get("endpoint", "")) for t in targets if t["health"] == "up"}
            return expected <= seen

        try:
            wait_until(every_target_up, 60, interval=1.0, what="Prometheus to scrape every component")
        except TimeoutError:
            raise AssertionError((tmp_path / "prometheus.log").read_text()[-3000:]) from None
    finally:
        prometheus.terminate()
        prometheus.wait(30)


def test_full_stack_down_leaves_nothing_running(full_stack):
    # Last of this section: it stops the shared stack.
    processes = full_stack.remember()
    # supervisor; 5 Redis servers, dns, lb; masters + one worker each of 2 replicas, auth, router, 2 shards
    assert len(processes) == 1 + 7 + 2 * 6
    assert still_running(processes) == processes

    result = full_stack.cli("down")

    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in SERVICE_NAMES)
    assert still_running(processes) == []
    assert not full_stack.state_file.exists()
    assert processes_mentioning(full_stack.state_dir) == []


def test_without_a_balancer_the_services_still_start_on_their_own_ports(stack):
    result = stack.cli("up", "-d", "--port", str(stack.port), "--workers", "1", "--lb", "none")
    stack.remember()

    assert result.returncode == 0, result.stdout + result.stderr
    assert [c["name"] for c in stack.state()["components"]] == ["redis", *SERVICE_NAMES, "api"]
    auth, router = stack.component("auth")["url"], stack.component("router")["url"]
    assert auth in result.stdout and router in result.stdout
    password = "correct horse battery staple"
    assert (
        httpx.post(auth + "/auth/register", json={"username": "bob", "password": password}, timeout=10).status_code
        == 201
    )
    login = httpx.post(stack.url + "/session/login", json={"user": "bob", "password": password}, timeout=10)
    assert login.status_code == 200, login.text  # the api asks auth (AUTH_URL)
    assert httpx.post(router + "/users", json={"name": "Bo", "country": "US"}, timeout=10).status_code == 201


# -- a component that dies is restarted, like compose's `restart: unless-stopped` ---------------------------

SUPERVISED_REPLICAS = ["api-1", "api-2"]
RESTART_TIMEOUT = 120  # a cluster restart imports the app again; a crash loop waits out its backoffs (0.5+1+2+4 s)
CUT_BY_THE_KILL = (502, 503, 504)  # the balancer's word for a response the killed replica never finished


@pytest.fixture(scope="module")
def supervised_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One detached stack (2 api replicas of one worker behind the default balancer, sessions in Redis), shared
    by this section's tests, which kill something different each, in order: Redis, one replica, the balancer,
    then Redis for good (a crash loop). The last test stops it."""
    yield from detached_stack(
        tmp_path_factory.mktemp("supervised"), "--api", "2", "--workers", "1", "--services", "api"
    )


def components(stack: Stack) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in status_json(stack)["components"]}


def back_after_restart(stack: Stack, name: str, old_pid: int) -> dict[str, Any] | None:
    """``name``'s status once it runs again as a new process, else None."""
    record = components(stack)[name]
    if record["pid"] != old_pid and record["alive"] and record["state"] == "running":
        return record
    return None


def balancer_sees_every_replica_up(stack: Stack) -> bool:
    backends = components(stack)["lb"]["backends"] or []
    return len(backends) == len(SUPERVISED_REPLICAS) and all(b["up"] for b in backends)


def supervisor_log(stack: Stack) -> str:
    return (stack.state_dir / "supervisor.log").read_text(errors="replace")


def served_by_pid(response: httpx.Response) -> int:
    return int(response.headers["x-served-by"].rsplit("/", 1)[-1])


class Requests(threading.Thread):
    """GET / through the balancer, one after another until stopped (or ``limit``): what a user sees meanwhile."""

    def __init__(self, url: str, limit: int = 20_000) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.limit = limit
        self.outcomes: list[tuple[int | None, str]] = []  # (status, X-Served-By) or (None, the error's type)
        self.stopped = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stopped.is_set() and len(self.outcomes) < self.limit:
                try:
                    response = client.get(self.url + "/")
                    self.outcomes.append((response.status_code, response.headers.get("x-served-by", "")))
                except httpx.TransportError as exc:
                    self.outcomes.append((None, type(exc).__name__))
                self.stopped.wait(0.01)  # leave the 2 cores to the restart

    def answered(self) -> int:
        return sum(status == 200 for status, _ in self.outcomes)

    def stop(self) -> None:
        self.stopped.set()
        self.join(30)


def test_a_killed_redis_is_restarted_with_its_data_and_the_api_recovers_by_itself(supervised_stack):
    stack = supervised_stack
    before = components(stack)
    assert all(c["state"] == "running" and c["restarts"] == 0 and c["last_exit"] is None for c in before.values())
    killed = before["redis"]
    assert killed["persistence"] == "aof appendfsync everysec"
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        assert client.post("/session/login", json={"user": "ada"}).status_code == 200
        assert client.get("/session/me").status_code == 200
        with redis.Redis.from_url(killed["url"]) as direct:  # in the AOF file, which outlives the process
            wait_until(lambda: int(direct.info("persistence")["aof_buffer_length"]) == 0, 10, what="the AOF write")

        os.kill(killed["pid"], signal.SIGKILL)

        after = wait_until(
            lambda: back_after_restart(stack, "redis", killed["pid"]),
            RESTART_TIMEOUT,
            interval=0.5,
            what="redis restarted",
        )
        stack.remember()
        # The api re-dials Redis by itself, and the balancer's checks see its replicas ready again: nobody restarts them.
        wait_until(lambda: balancer_sees_every_replica_up(stack), 60, interval=0.5, what="both replicas up again")
        me = client.get("/session/me")

    assert me.status_code == 200, me.text
    assert me.json()["user"] == "ada"  # the session written before the kill, read from the restarted Redis
    assert after["url"] == killed["url"]  # same port
    assert after["restarts"] == 1
    assert after["last_exit"]["how"] == "killed by SIGKILL" and after["last_exit"]["code"] == -signal.SIGKILL
    others = components(stack)
    assert [(c["name"], c["pid"], c["restarts"]) for c in others.values() if c["name"] != "redis"] == [
        (c["name"], c["pid"], 0) for c in before.values() if c["name"] != "redis"
    ]
    log = supervisor_log(stack)
    assert "redis exited unexpectedly (killed by SIGKILL)" in log and f"redis restarted (pid {after['pid']}" in log
    text = stack.cli("status").stdout
    assert "restarts" in text and "redis last exited: killed by SIGKILL" in text


def test_a_killed_api_replica_is_restarted_while_the_balancer_keeps_answering(supervised_stack):
    stack = supervised_stack
    before = components(stack)
    killed = before["api-1"]
    old_processes = [ProcessRef(killed["pid"], killed["started"])]
    old_processes += [ref for w in killed["cluster"]["workers"] if (ref := ProcessRef.of(w["pid"])) is not None]
    requests = Requests(stack.url)
    requests.start()
    try:
        wait_until(lambda: requests.answered() >= 20, 60, what="requests answered before the kill")
        at_kill = len(requests.outcomes)

        os.kill(killed["pid"], signal.SIGKILL)

        after = wait_until(
            lambda: back_after_restart(stack, "api-1", killed["pid"]),
            RESTART_TIMEOUT,
            interval=0.5,
            what="api-1 restarted",
        )
        stack.remember()
        new_workers = wait_until(
            lambda: {w["pid"] for w in components(stack)["api-1"]["cluster"]["workers"]}, 30, what="api-1's new workers"
        )
        # The balancer's health checks bring it back by itself: the new replica gets requests again.
        wait_until(
            lambda: served_by_pid(fresh_get(stack.url + "/")) in new_workers,
            60,
            interval=0.2,
            what="a response from the restarted api-1",
        )
        during = requests.outcomes[at_kill:]
    finally:
        requests.stop()

    failures = [outcome for outcome in requests.outcomes if outcome[0] != 200]
    # At most the one request in flight when the replica died, and only as a cut response; HAProxy and the
    # Python balancer retry a refused connection on the other replica.
    assert len(failures) <= 1, failures
    assert all(status is None or status in CUT_BY_THE_KILL for status, _ in failures), failures
    assert sum(status == 200 for status, _ in during) > 0  # the other replica served meanwhile
    assert still_running(old_processes) == []  # its workers died with their master, as in a container
    assert after["restarts"] == 1 and after["last_exit"]["how"] == "killed by SIGKILL"
    assert after["url"] == killed["url"]  # same address and port
    others = components(stack)
    assert [(c["name"], c["pid"], c["restarts"]) for c in others.values() if c["name"] != "api-1"] == [
        (c["name"], c["pid"], c["restarts"]) for c in before.values() if c["name"] != "api-1"
    ]


def test_a_killed_balancer_is_restarted_on_the_same_ports_with_nothing_of_it_left_behind(supervised_stack):
    stack = supervised_stack
    before = components(stack)
    killed = before["lb"]

    os.kill(killed["pid"], signal.SIGKILL)

    after = wait_until(
        lambda: back_after_restart(stack, "lb", killed["pid"]), RESTART_TIMEOUT, interval=0.5, what="lb restarted"
    )
    stack.remember()
    assert (after["url"], after["stats"]) == (killed["url"], killed["stats"])
    assert after["restarts"] == 1 and after["last_exit"]["how"] == "killed by SIGKILL"
    assert fresh_get(stack.url + "/").status_code == 200
    assert process_group(killed["pid"]) == []  # HAProxy's worker died with its master, as in a container
    others = components(stack)
    assert [(c["name"], c["pid"], c["restarts"]) for c in others.values() if c["name"] != "lb"] == [
        (c["name"], c["pid"], c["restarts"]) for c in before.values() if c["name"] != "lb"
    ]


def process_group(pgid: int) -> list[int]:
    """Live (not zombie) members of a process group (only to assert nothing was left behind; never to kill)."""
    members = []
    for process in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(process.info["pid"]) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process.info["pid"])
        except OSError:
            continue
    return members


@pytest.mark.timeout(180)
def test_the_console_shows_the_local_stack_and_acts_on_it_by_signals(supervised_stack):
    """`scalecube console` on the local stack, in a real browser: both replicas and their workers; killing a worker
    (its master replaces it) and a replica (the supervisor restarts it), each effect in the timeline."""
    from tests.support.browser import console_page, require_chromium

    require_chromium()
    stack, port = supervised_stack, free_port()
    # No Prometheus here (its own test is the full stack's): the page says so and shows the rest.
    argv = ["console", "--port", str(port), "--prometheus", f"http://127.0.0.1:{free_port()}"]
    console_process = subprocess.Popen(
        [sys.executable, "-m", "scalecube", *argv, "--state-dir", str(stack.state_dir)],
        cwd=REPO,
        env=stack.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url + "/healthz"), 60, interval=0.5, what="the console to answer")
        with console_page(url, "local") as console:
            shown = console.wait(
                lambda: {c["name"]: c for c in console.containers("api") if c["workers"]} or None, 30, "the replicas"
            )
            assert sorted(shown) == SUPERVISED_REPLICAS and all(len(c["workers"]) == 1 for c in shown.values())
            console.act("kill-worker", container="api-1")
            console.wait(
                lambda: [e for e in console.events() if e["kind"] == "effect" and "worker 0 of api-1" in e["text"]],
                RESTART_TIMEOUT,
                "the killed worker replaced, in the timeline",
            )
            console.act("kill-container", container="api-2")
            console.wait(
                lambda: [e for e in console.events() if e["kind"] == "effect" and "api-2 replaced" in e["text"]],
                RESTART_TIMEOUT,
                "api-2 restarted by the supervisor, in the timeline",
            )
            console.wait(lambda: next(c for c in console.containers("api") if c["name"] == "api-2")["restarts"], 10, "")
            console.act("rolling-restart", service="api")  # SIGHUP to each master in turn
            console.act("stop-redis", service="redis", seconds="1")  # SIGSTOP, then SIGCONT
            for effect in ("2 api clusters reloaded", "redis was stopped 1 s"):
                console.wait(
                    lambda: [e for e in console.events() if e["kind"] in ("effect", "failed") and effect in e["text"]],
                    RESTART_TIMEOUT,
                    f"'{effect}' in the timeline",
                )
            console.screenshot("local")
            assert [e["text"] for e in console.events() if "killed" in e["text"]], console.events()
            assert not [e for e in console.events() if e["kind"] == "failed"], console.events()
            assert not console.errors, console.errors
    finally:
        console_process.terminate()
        console_process.wait(30)
    wait_until(lambda: balancer_sees_every_replica_up(stack), RESTART_TIMEOUT, interval=1, what="both replicas up")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_crash_looping_component_is_given_up_with_why_and_the_rest_keeps_running(supervised_stack):
    # Last of this section: it breaks the stack's Redis for good, then stops the stack.
    stack = supervised_stack
    before = components(stack)
    broken = before["redis"]
    appendonly = list(Path(broken["data"]).rglob("*.aof"))
    assert appendonly, f"no AOF file in {broken['data']}"
    for path in appendonly:  # what a torn disk write could leave: every start from now on fails fast
        with open(path, "ab") as aof:
            aof.write(b"this is not a redis command\n")

    os.kill(broken["pid"], signal.SIGKILL)

    failed = wait_until(
        lambda: (c := components(stack)["redis"])["state"] == "failed" and c,
        RESTART_TIMEOUT,
        interval=1,
        what="the supervisor to give up on redis",
    )
    processes = stack.remember()
    assert failed["alive"] is False
    assert failed["restarts"] > before["redis"]["restarts"]
    assert f"deaths within {RestartPolicy().window:g}s" in failed["failure"]
    assert failed["last_exit"]["code"] == 1 and "exited with code 1" in failed["last_exit"]["how"]
    assert "Bad file format reading the append only file" in failed["last_exit"]["log_tail"]
    log = supervisor_log(stack)
    assert "giving up on redis" in log and "the rest of the stack keeps running" in log
    assert "Bad file format reading the append only file" in log  # the tail of its log, where it says why
    # The rest keeps running: the balancer and the replicas serve what needs no Redis, and name what is missing.
    status = status_json(stack)
    assert status["supervisor"]["alive"] and status["phase"] == "ready"
    assert all(c["alive"] and c["state"] == "running" for c in status["components"] if c["name"] != "redis")
    assert fresh_get(stack.url + "/").status_code == 200
    login = httpx.post(stack.url + "/session/login", json={"user": "bob"}, timeout=10)
    assert login.status_code == 503 and login.json()["dependency"] == "redis"
    for name in SUPERVISED_REPLICAS:
        ready = httpx.get(before[name]["url"] + "/readyz", timeout=10)
        assert ready.json()["checks"] == {"redis": False}, ready.text
    assert "failed" in stack.cli("status").stdout

    result = stack.cli("down")

    assert result.returncode == 0, result.stderr
    assert still_running(processes) == []
    assert not stack.state_file.exists()
    assert processes_mentioning(stack.state_dir) == []


# -- options that cannot work are refused before anything starts ------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sticky"], "--sticky needs a balancer"),
        (["--sticky", "--lb", "none"], "--sticky needs a balancer"),
        (["--api", "3", "--lb", "none"], "--api 3 needs a balancer"),
        (["--api", "9"], "--api must be 1 to 8, got 9"),
        (["--api", "0", "--lb", "python"], "--api must be 1 to 8, got 0"),
        (["--api", "2", "--lb", "nginx"], "--lb must be python, haproxy or none"),
    ],
)
def test_impossible_combinations_are_a_clear_usage_error(stack, args, message):
    result = stack.cli("up", "-d", "--port", str(stack.port), *args)

    assert result.returncode == 2
    assert result.stderr.startswith(f"scalecube up: {message}")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not stack.state_file.exists()
    assert processes_mentioning(stack.state_dir) == []


@pytest.fixture
def no_haproxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if HAProxy were not installed (it is found in /usr/sbin even without it on PATH, so fake the finder)."""
    from lb.haproxy import runner

    def missing(*_: object) -> str:
        raise runner.HaproxyNotFound(
            f"haproxy is not installed (not on PATH nor in {runner.EXTRA_PATH}): {runner.INSTALL_HINT}"
        )

    monkeypatch.setattr(runner, "find_haproxy", missing)


def test_lb_haproxy_without_haproxy_exits_2_with_one_clear_line_and_starts_nothing(no_haproxy, tmp_path):
    from typer.testing import CliRunner

    from scalecube.cli import app

    state_dir = tmp_path / "state"

    result = CliRunner().invoke(
        app, ["up", "-d", "--api", "3", "--lb", "haproxy", "--port", str(free_port()), "--state-dir", str(state_dir)]
    )

    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        "scalecube up: --lb haproxy: haproxy is not installed (not on PATH nor in "
        "/usr/sbin:/usr/local/sbin): install Debian's haproxy (apt-get install "
        "haproxy); or use --lb python"
    )
    assert not state_dir.exists()  # not even the state dir: nothing started
    assert processes_mentioning(state_dir) == []


def test_the_default_balancer_is_none_for_one_replica_then_haproxy_if_installed_else_python(monkeypatch):
    from infra.local.stack import choose_balancer
    from lb.haproxy import runner

    monkeypatch.setattr(runner, "find_haproxy", lambda *_: "/usr/sbin/haproxy")
    assert choose_balancer(1, None, sticky=False) == "none"
    assert choose_balancer(3, None, sticky=False) == "haproxy"
    assert choose_balancer(1, "python", sticky=True) == "python"  # one replica behind a balancer is fine too

    def missing(*_: object) -> str:
        raise runner.HaproxyNotFound("haproxy is not installed")

    monkeypatch.setattr(runner, "find_haproxy", missing)
    assert choose_balancer(3, None, sticky=True) == "python"
