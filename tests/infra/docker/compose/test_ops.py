"""`scalecube docker …` against the real stack: ps, scale, rolling-restart under load, chaos, logs.

The package's one stack (conftest.py: the project's compose file under a throwaway project name, shared with
test_stack.py, which runs after this module); the tests run in file order, go through the CLI (the
`docker_app` typer sub-app) and each leaves 3 healthy api containers behind the balancer. Teardown checks that
`down -v` left nothing behind.
"""

from __future__ import annotations

import json
import threading

import pytest
from typer.testing import CliRunner

from infra.docker.cli import docker_app
from infra.docker.ops.logs import LogFollower
from infra.docker.ops.project import hostname
from infra.local.processes import wait_until
from tests.support.docker import ComposeStack
from tests.support.load import LoadGenerator

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the stack comes up in the first test


def docker_cli(stack: ComposeStack, *args: str, expect: int = 0) -> str:
    result = CliRunner().invoke(docker_app, [*args, "--project", stack.project], env=stack.env)
    assert result.exit_code == expect, (result.exit_code, result.output, result.exception)
    return result.output


def api_ids(stack: ComposeStack) -> set[str]:
    return {c.id for c in stack.containers("api")}


def test_ps_shows_every_container_and_the_workers_of_each_api(stack):
    rows = json.loads(docker_cli(stack, "ps", "--json"))["containers"]
    by_service: dict[str, list[dict]] = {}
    for row in rows:
        by_service.setdefault(row["service"], []).append(row)
    api = by_service["api"]
    assert sorted(row["name"] for row in api) == ["api-1", "api-2", "api-3"]
    for row in api:
        assert (row["state"], row["health"]) == ("running", "healthy"), row
        workers = row["workers"]
        assert workers and all(w["state"] == "listening" and w["pid"] > 1 and w["rss_mb"] > 0 for w in workers), row
    lb = by_service["lb"][0]
    assert f"127.0.0.1:{stack.lb_port}->8080/tcp" in lb["ports"] and lb["workers"] is None
    assert by_service["redis"][0]["workers"] is None and not by_service["redis"][0]["ports"]
    table = docker_cli(stack, "ps", "api")
    assert all(name in table for name in ("api-1", "api-2", "api-3")) and "auth-1" not in table


def test_unknown_service_lists_the_services(stack):
    output = docker_cli(stack, "logs", "no-such-service", expect=2)
    assert "no service 'no-such-service'" in output and "api, auth, auth-redis" in output


def test_scale_api_to_4_then_back_to_3(stack):
    before = api_ids(stack)
    assert "3 → 4" in docker_cli(stack, "scale", "api", "4")
    assert len(stack.containers("api")) == 4 and before < api_ids(stack)
    stack.wait_served_by(4)
    assert "4 → 3" in docker_cli(stack, "scale", "api", "3")
    assert len(stack.containers("api")) == 3
    stack.wait_served_by(3)


@pytest.mark.load
def test_rolling_restart_under_load_fails_no_request_and_replaces_every_container(stack):
    before = api_ids(stack)
    url = stack.url + "/"
    # Both kinds of client at once: keep-alive (HAProxy reuses its server connections) and one
    # connection per request (every request is a new balancing decision).
    with (
        LoadGenerator(url, concurrency=8, keepalive=True, max_requests=1_000_000, max_seconds=600) as kept,
        LoadGenerator(url, concurrency=8, keepalive=False, max_requests=1_000_000, max_seconds=600) as fresh,
    ):
        # Both loads going before the restart, and going on after it: counted, not slept.
        wait_until(lambda: kept.result.ok >= 100 and fresh.result.ok >= 100, 30, what="both loads to get going")
        output = docker_cli(stack, "rolling-restart", "api", "--json")
        ended = kept.result.total, fresh.result.total
        wait_until(
            lambda: kept.result.total >= ended[0] + 100 and fresh.result.total >= ended[1] + 100,
            30,
            what="both loads to go on after the restart",
        )
    replaced = json.loads(output)["replacements"]
    for load in (kept, fresh):
        assert load.result.total >= 200, str(load.result)
        assert load.result.failed == 0, str(load.result)
    after = stack.containers("api")
    assert len(after) == 3 and not before & {c.id for c in after}
    assert sorted(r["old"] for r in replaced) == ["api-1", "api-2", "api-3"]
    assert {r["new_id"] for r in replaced} == {c.short_id for c in after}
    assert all(r["in_balancer_s"] >= 0 and r["out_of_balancer_s"] > 0 for r in replaced)
    # The new containers took traffic during the run, and are the ones behind the balancer now.
    served_hosts = {served.split("/")[0] for load in (kept, fresh) for served in load.result.served_by}
    new_hosts = {hostname(c) for c in after}
    assert new_hosts <= served_hosts
    assert stack.wait_served_by(3) == new_hosts
    print(f"\nrolling restart: keep-alive {kept.result}; new connections {fresh.result}")
    for r in replaced:
        print(f"  {r['old']} → {r['new']}: {r['total_s']:.1f}s")


@pytest.mark.parametrize("target", ["container", "worker"])
@pytest.mark.load
def test_chaos_kills_on_schedule_and_reports_what_clients_saw(stack, target):
    stack.wait_healthy("api", 3)  # what a kill picks from: a container just replaced may still be "starting"
    output = docker_cli(
        stack,
        "chaos",
        "--target",
        target,
        "--every",
        "3",
        "--duration",
        "10",
        "--seed",
        "7",
        "--concurrency",
        "8",
        "--json",
    )
    report = json.loads(output)
    kills = report["kills"]
    # One kill per slot of the schedule (3, 6, 9 s), each at its time or later, in order: a kill (docker kill,
    # wait, start) takes a moment, more on a busy machine, and may push the next one back.
    assert len(kills) == 3, kills
    assert all(k["at"] >= at - 0.01 for k, at in zip(kills, (3, 6, 9), strict=True)), kills
    assert [k["at"] for k in kills] == sorted(k["at"] for k in kills), kills
    done = [k for k in kills if k["container"] != "-"]
    if target == "worker":
        assert done == kills and all(k["pid"] and k["pid"] > 1 for k in kills), kills
    else:
        # A restarted container is back in the pool only once healthy (~10 s here), and the last healthy
        # one is never killed: with 3 containers the kill at 9 s usually finds only one healthy.
        assert len(done) >= 2 and all(k["container"].startswith("api-") and "restarted" in k["note"] for k in done), (
            kills
        )
        assert all("skipped" in k["note"] for k in kills if k not in done), kills
    assert report["ok"] + report["failed"] == report["total"] == sum(report["errors"].values()) + report["ok"]
    assert sum(report["failures_after_kill"]) <= report["failed"]
    assert report["total"] > 300, report
    # HAProxy retries refused connections and empty responses elsewhere: a killed container costs at most
    # the requests whose response it had started (seen here: 0–1 per container kill, 0 per worker kill).
    assert report["failed"] <= max(5, report["total"] // 100), report
    print(f"\nchaos {target}: {report['total']} requests, {report['failed']} failed {report['errors']}")
    assert len(stack.containers("api")) == 3
    stack.wait_served_by(3)


def test_logs_merge_the_containers_lines_with_compose_prefixes(stack):
    output = docker_cli(stack, "logs", "api", "--tail", "20", "--timestamps")
    lines = output.splitlines()
    names = {
        c.labels["com.docker.compose.service"] + "-" + c.labels["com.docker.compose.container-number"]
        for c in stack.containers("api", all=True)
    }
    prefixes = [line.split(" | ", 1)[0].strip() for line in lines]
    assert set(prefixes) == names and len(names) == 3, set(prefixes)
    assert len(lines) <= 20 * len(names)
    stamps = [line.split(" | ", 1)[1].split(" ", 1)[0] for line in lines]
    assert stamps == sorted(stamps), "lines are not merged by time"


def test_following_logs_stops_promptly_when_closed(stack):
    follower = LogFollower(stack.containers("api"), follow=True, tail=5)
    seen: list[str] = []

    def read() -> None:
        for line in follower:
            seen.append(line.source)

    reader = threading.Thread(target=read, daemon=True)
    with follower:
        reader.start()
        wait_until(lambda: len(set(seen)) == 3, 30, what="the tail of every api container")
    # Without the close a follow never ends; with it, the streams end in well under a second. 10 s is room.
    reader.join(10)
    assert not reader.is_alive(), "the follower did not stop"
    assert len(set(seen)) == 3, seen
