"""The node-loss demo's pure parts, without Docker: which node it loses, and its claims judged from recorded samples
(the end-to-end run is in tests/infra/docker/test_nodes.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from infra.docker.swarm import spread_over
from loadtests.demo_cli import demo_app
from loadtests.experiments.claims import Verdict, exit_code
from loadtests.experiments.demos import DEMOS, runner
from loadtests.experiments.demos.node_loss import Event, Record, ejected_at, failover_steps, judge, per_node_series
from loadtests.experiments.node_stack import (
    NodeChoiceError,
    Placement,
    Task,
    choose_node,
    how_to_deploy,
    sentinel_views,
)

NODES = ("node-1", "node-2", "node-3")


def placement(primary: str = "redis", api: tuple[str, ...] = NODES, replicas: int = 2) -> Placement:
    """As spread_over places the stack over 3 nodes: lb on node-1; redis on node-2, redis-replica on node-3,
    redis-replica-2 on node-1 (``replicas=1``: without it, as a stack rendered without the ``nodes`` profile)."""
    data = (("redis", "node-2"), ("redis-replica", "node-3"), ("redis-replica-2", "node-1"))[: 1 + replicas]
    tasks = [
        Task("lb", "node-1", "lb1", True),
        *(Task(service, node, f"r{i}", True) for i, (service, node) in enumerate(data)),
        Task("redis-sentinel-1", "node-2", "s1", True),
        *(Task("api", node, f"api{i}", True) for i, node in enumerate(api)),
    ]
    roles = tuple((service, "master" if service == primary else "slave") for service, _ in data)
    return Placement(tuple(tasks), NODES, roles)


def test_spread_over_pins_the_balancer_and_the_redis_group_as_the_demo_assumes():
    service = {"image": "x", "volumes": [{"type": "volume", "source": "data", "target": "/data"}]}
    names = ("redis-sentinel-3", "redis", "redis-replica-2", "redis-sentinel-1", "redis-replica", "redis-sentinel-2")
    stack = {
        "services": {
            "lb": {"image": "x", "ports": [{"published": 8080, "target": 8080}]},
            **{name: service for name in names},  # in any order: placed in turn by name
            "api": {"image": "x"},
        }
    }
    placed = spread_over(stack, list(NODES))["services"]

    def where(name: str) -> str:
        return placed[name]["deploy"]["placement"]["constraints"][0].rpartition(" ")[2]

    assert where("lb") == "node-1"
    assert [where(n) for n in ("redis", "redis-replica", "redis-replica-2")] == ["node-2", "node-3", "node-1"]
    assert [where(f"redis-sentinel-{k}") for k in (1, 2, 3)] == ["node-2", "node-3", "node-1"]
    assert "preferences" in placed["api"]["deploy"]["placement"]
    assert choose_node(placement(), None) == ("node-2", "")  # so the default loses the primary's node


def test_the_default_node_is_the_primary_s_when_a_replica_is_left_elsewhere():
    assert choose_node(placement(), None) == ("node-2", "")
    assert choose_node(placement(primary="redis-replica"), None) == ("node-3", "")  # wherever it moved


def test_with_one_replica_the_default_avoids_both_data_nodes_and_warns_when_it_cannot():
    assert choose_node(placement(replicas=1, api=NODES), None) == ("node-2", "")  # the replica (node-3) is left
    node, warning = choose_node(placement(replicas=1, api=("node-1", "node-3")), None)
    assert node == "node-3" and "only replica" in warning and "503" in warning
    node, warning = choose_node(placement(replicas=0), None)  # a primary alone: nothing to promote
    assert node == "node-3" and warning == ""
    assert "no replica is left" in choose_node(placement(replicas=0), "node-2")[1]


def test_the_balancer_node_is_refused():
    with pytest.raises(NodeChoiceError, match="balancer"):
        choose_node(placement(), "node-1")


def test_the_primary_node_may_be_asked_for():
    assert choose_node(placement(), "node-2") == ("node-2", "")


def test_a_node_without_api_or_unknown_is_refused():
    with pytest.raises(NodeChoiceError, match="no api replica"):
        choose_node(placement(api=("node-1", "node-2")), "node-3")
    with pytest.raises(NodeChoiceError, match="no node"):
        choose_node(placement(), "node-9")


def test_a_replica_node_is_quiet_with_another_replica_left_and_warned_about_without():
    assert choose_node(placement(), "node-3") == ("node-3", "")
    node, warning = choose_node(placement(replicas=1), "node-3")
    assert node == "node-3" and "only replica" in warning


def test_how_to_deploy_names_the_commands():
    assert how_to_deploy("scalecube-nodes", "scalecube") == (
        "run first: scalecube nodes up --nodes 3 && scalecube docker swarm-deploy --nodes scalecube-nodes"
    )
    assert "--cluster c" in how_to_deploy("c", "sc") and "swarm-deploy sc --nodes c" in how_to_deploy("c", "sc")


def recorded(*, get_failure: str | None = None, lost: int = 0, late_login: str = "200", back: bool = True) -> Record:
    """A run: GETs every 0.1 s from t=0 to 60 (node killed at 20, api back at 40), logins, sessions checked."""
    record = Record("node-3", ["api", "redis-sentinel-1"], {"node-1": 1, "node-2": 1, "node-3": 1}, 3, getters=2)
    record.kill_started, record.killed_at = 20.0, 20.1
    if back:
        record.tasks_back_at, record.served_back_at = 38.0, 40.0
        record.api_after = {"node-1": 2, "node-2": 1}
    record.node_of = {"c1": "node-1", "c2": "node-2", "c3": "node-3"}
    events = [Event(t / 10, t / 10 + 0.01, "/", "200", f"c{1 + t % 3}/7") for t in range(600)]
    events.append(Event(19.9, 30.0, "/", "504"))  # in flight to the lost node: apart
    if get_failure:
        events.append(Event(25.0, 25.1, "/", get_failure))
    events += [
        Event(10.0, 10.1, "/session/login", "200", "c1/7"),
        Event(50.0, 50.1, "/session/login", late_login, "c2/7"),
    ]
    record.events = events
    record.sessions_checked, record.under_load, record.lost = 12, 2, lost
    return record


def test_every_claim_holds_on_a_clean_run():
    verdicts = [claim.verdict for claim in judge(recorded())]
    assert verdicts == [Verdict.HOLDS] * 4
    assert exit_code(judge(recorded())) == 0


def primary_lost(*, refused_until: float = 24.0, after: str = "node-3") -> Record:
    """``recorded()`` with the primary's node lost at 20.1: session requests refused until ``refused_until``."""
    record = recorded()
    record.node, record.primary_before, record.primary_after = "node-2", "node-2", after
    record.api_after = {"node-1": 2, "node-3": 1}
    record.events += [
        Event(21.0, refused_until, "/session/me", "503 redis"),
        Event(22.0, 30.0, "/session/me", "503 auth"),  # another dependency: not the Redis window
    ]
    return record


def test_losing_the_primary_s_node_adds_the_failover_claim_which_holds_in_the_bound():
    judged = judge(primary_lost())
    assert [c.verdict for c in judged] == [Verdict.HOLDS] * 5
    assert judged[4].measured == pytest.approx(3.9) and "node-2 → node-3" in judged[4].text
    assert "1× 503 auth besides" in judged[4].text
    assert len(judge(recorded())) == 4  # no such claim when the primary stayed


@pytest.mark.parametrize(("refused_until", "after"), [(40.0, "node-3"), (24.0, ""), (24.0, "node-2")])
def test_the_failover_claim_fails_late_or_without_a_primary_on_a_survivor(refused_until, after):
    judged = judge(primary_lost(refused_until=refused_until, after=after))
    assert judged[4].verdict is Verdict.FAILS and exit_code(judged) == 1


@pytest.mark.parametrize(
    ("run", "failing"),
    [
        (recorded(get_failure="502"), 0),
        (recorded(get_failure="ConnectError"), 0),
        (recorded(back=False), 1),
        (recorded(lost=1), 2),
        (recorded(late_login="503"), 3),
    ],
)
def test_a_claim_fails_on_failing_data(run, failing):
    judged = judge(run)
    assert judged[failing].verdict is Verdict.FAILS, judged[failing]
    assert exit_code(judged) == 1


def test_a_504_sent_after_the_kill_is_a_failure_not_in_flight():
    run = recorded()
    run.events.append(Event(21.0, 31.0, "/", "504"))
    assert judge(run)[0].verdict is Verdict.FAILS


def test_a_504_sent_before_the_balancer_ejected_the_node_is_in_flight_and_one_after_it_fails():
    """Until its checks mark the node's servers DOWN, the balancer may still send a GET on a kept-alive connection to
    the dead machine (ci's stop 25: one such 504, sent after the kill): that one is in flight; once it has ejected
    the node, a 504 is a failure."""
    run = recorded()
    run.ejected_at = 23.5
    run.events.append(Event(21.0, 31.0, "/", "504"))
    judged = judge(run)[0]
    assert judged.verdict is Verdict.HOLDS and "2 in flight" in judged.text and "ejected 3.4 s after" in judged.text
    run.events.append(Event(23.6, 33.6, "/", "504"))
    assert judge(run)[0].verdict is Verdict.FAILS
    run.ejected_at = None  # the log named no ejection: only a GET sent before the kill is in flight
    assert "its log names no ejection" in judge(run)[0].text


def test_the_ejection_is_the_last_api_server_the_checks_marked_down_after_the_kill():
    log = "\n".join(
        [
            "2026-12-07T15:20:00.500000000Z Server api/api3 is DOWN, reason: Layer4 timeout. 2 active left.",  # before
            "2026-12-07T15:20:02.000000000Z Server api/api1 is DOWN, reason: Health analyze, info: 'Detected 1 "
            "consecutive errors, last one was: L4 timeout'. 2 active and 0 backup servers left.",  # observe layer4
            "2026-12-07T15:20:03.250258874Z Server api/api2 is DOWN. 2 active and 0 backup servers left. 2 sessions "
            "active, 0 requeued, 0 remaining in queue.",  # HAProxy 2.8, from a real run's balancer.log
            "2026-12-07T15:20:03.250300000Z [WARNING]  (11) : Server api/api2 is DOWN. 2 active and 0 backup servers.",
            "2026-12-07T15:20:08.000000000Z Server api/api2 was DOWN and now enters maintenance (No IP for server ).",
            "2026-12-07T15:20:04.000000000Z Server api_panic/api2 is DOWN, reason: Layer4 timeout.",  # the twin
            "2026-12-07T15:20:09.000000000Z Server api/api2 is going DOWN for maintenance (No IP for server ).",
            "2026-12-07T15:20:05.000000000Z Server auth/auth1 is DOWN, reason: Layer4 timeout.",  # another backend
            '2026-12-07T15:20:05.100000000Z 172.19.0.1:4242 [07/Dec/2026:15:20:05.100] public api/api2 "GET / HTTP/1.1"',
            "garbage Server api/api1 is DOWN, reason: x",
        ]
    )
    since = datetime(2026, 12, 7, 15, 20, 1, tzinfo=UTC).timestamp()
    assert ejected_at(log, since) == pytest.approx(since + 2.250258)
    assert ejected_at(log, since + 10) is None
    assert ejected_at("", since) is None


def test_too_many_in_flight_fails():
    run = recorded()
    run.events += [Event(19.8, 30.0, "/", "504"), Event(19.7, 30.0, "/", "RemoteProtocolError")]  # 3 > 2 threads
    assert judge(run)[0].verdict is Verdict.FAILS


def test_nothing_measured_is_not_a_pass():
    run = recorded()
    run.events, run.sessions_checked = [], 0
    judged = judge(run)  # the reschedule is measured from the Swarm, not from the load: it may hold
    assert [judged[i].verdict for i in (0, 2, 3)] == [Verdict.FAILS] * 3


def test_per_node_series_counts_each_node_and_the_failures():
    series = per_node_series(recorded(), 0.0)
    assert set(series) == {"node-1", "node-2", "node-3", "failed"}
    assert sum(v for _, v in series["node-1"]) == 201  # every third GET, and one login


def test_registered_but_not_in_demo_all():
    assert "node-loss" not in DEMOS
    assert runner("node-loss").__module__ == "loadtests.experiments.demos.node_loss"
    result = CliRunner().invoke(demo_app, ["node-loss", "--help"])
    assert result.exit_code == 0 and "--node" in result.output and "--cluster" in result.output


def test_docker_and_target_are_refused():
    for args in (["--docker"], ["--target", "http://127.0.0.1:8080"]):
        result = CliRunner().invoke(demo_app, ["node-loss", "--smoke", *args])
        assert result.exit_code == 2 and "scalecube nodes" in result.output, result.output


def test_no_deployment_exits_2_naming_the_commands(tmp_path):
    """No such cluster: exit 2 and the commands to run (the Docker engine is asked, nothing is started)."""
    from infra.docker.engine import DockerError, engine_client

    try:
        engine_client(timeout=5).ping()
    except DockerError:
        pytest.skip("no Docker engine")
    result = CliRunner().invoke(demo_app, ["node-loss", "--smoke", "--cluster", "sc-none-here", "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "scalecube nodes up --nodes 3 --cluster sc-none-here" in result.output


SENTINELS_LOG = """== redis-sentinel-2 on node-3
1:X 07 Dec 2026 04:04:20.107 # -sdown slave redis-replica-2:6379 redis-replica-2 6379 @ scalecube redis 6379
1:X 07 Dec 2026 04:04:28.717 # +sdown master scalecube redis 6379
1:X 07 Dec 2026 04:04:28.789 # +odown master scalecube redis 6379 #quorum 2/2
1:X 07 Dec 2026 04:04:28.881 # +elected-leader master scalecube redis 6379
1:X 07 Dec 2026 04:04:29.023 * +failover-state-wait-promotion slave redis-replica-2:6379 redis-replica-2 6379
1:X 07 Dec 2026 04:04:30.094 # +switch-master scalecube redis 6379 redis-replica-2 6379
== redis-sentinel-3 on node-1
cat: /run/secrets/scalecube/REDIS_PASSWORD: No such file or directory
1:X 07 Dec 2026 04:04:28.348 # +tilt #tilt mode entered
"""


def test_the_failover_steps_are_the_sentinels_events_that_tell_how_it_went():
    assert failover_steps(SENTINELS_LOG) == [
        "redis-sentinel-2 04:04:28.717 +sdown master scalecube redis 6379",
        "redis-sentinel-2 04:04:28.789 +odown master scalecube redis 6379 #quorum 2/2",
        "redis-sentinel-2 04:04:28.881 +elected-leader master scalecube redis 6379",
        "redis-sentinel-2 04:04:30.094 +switch-master scalecube redis 6379 redis-replica-2 6379",
        "redis-sentinel-3 04:04:28.348 +tilt #tilt mode entered",
    ]
    assert failover_steps("") == []


# `SENTINEL_COMMAND`'s output from a real Sentinel (redis-cli --raw: key and value lines), a replica's runid empty
SENTINEL_OUTPUT = """name
scalecube
ip
redis
port
6379
flags
master
num-slaves
2
num-other-sentinels
2
---
name
redis-replica:6379
ip
redis-replica
runid

flags
slave
master-link-status
ok
name
redis-replica-2:6379
ip
redis-replica-2
flags
s_down,slave,disconnected
master-link-status
err
"""


def test_a_sentinel_s_view_is_read_key_by_value_an_empty_value_included():
    master, replicas = sentinel_views(SENTINEL_OUTPUT)
    assert master["flags"] == "master" and master["num-other-sentinels"] == "2"
    assert [r["name"] for r in replicas] == ["redis-replica:6379", "redis-replica-2:6379"]
    assert replicas[0]["runid"] == "" and replicas[0]["flags"] == "slave"
    assert replicas[1]["flags"] == "s_down,slave,disconnected" and replicas[1]["master-link-status"] == "err"
    assert sentinel_views("name\nscalecube\nflags\ns_down,master\n---\n") == (
        {"name": "scalecube", "flags": "s_down,master"},
        [],
    )
