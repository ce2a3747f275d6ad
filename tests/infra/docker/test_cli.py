"""`scalecube docker …` without an engine: one clear line and exit 2; bad arguments are usage errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import typer
from typer.testing import CliRunner

from infra.docker.cli import docker_app, parse_since
from infra.local.ports import free_port


def test_no_engine_is_one_line_and_exit_2():
    # A port nothing listens on: the SDK's ping is refused.
    result = CliRunner().invoke(docker_app, ["ps"], env={"DOCKER_HOST": f"tcp://127.0.0.1:{free_port()}"})
    assert result.exit_code == 2, result.output
    assert result.output.startswith("scalecube docker ps: no Docker engine is reachable")
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [["scale", "api", "--", "-1"], ["chaos", "--target", "disk"], ["chaos", "--every", "20", "--duration", "10"]],
)
def test_bad_arguments_are_usage_errors(args):
    result = CliRunner().invoke(docker_app, args, env={"DOCKER_HOST": f"tcp://127.0.0.1:{free_port()}"})
    assert result.exit_code == 2 and "Invalid value" in result.output, result.output


def test_since_takes_durations_and_iso_times():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_since("10m", now) == now - timedelta(minutes=10)
    assert parse_since("1.5h", now) == now - timedelta(minutes=90)
    assert parse_since("2026-01-01T11:00:00", now) == datetime(2026, 1, 1, 11, 0, tzinfo=UTC)
    with pytest.raises(typer.BadParameter):
        parse_since("yesterday", now)


@pytest.mark.parametrize("args", [["ls"], ["kill", "node-2"], ["start", "node-2"], ["partition", "node-2"], ["down"]])
def test_nodes_without_an_engine_is_one_line_and_exit_2(args):
    from infra.docker.nodes_cli import nodes_app

    result = CliRunner().invoke(nodes_app, args, env={"DOCKER_HOST": f"tcp://127.0.0.1:{free_port()}"})
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"scalecube nodes {args[0]}: no Docker engine is reachable"), result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_nodes_start_of_a_node_not_there_is_exit_2_naming_the_nodes():
    """The host's engine is asked (nothing is started): no such cluster, so no such node."""
    from infra.docker.engine import DockerError, engine_client
    from infra.docker.nodes_cli import nodes_app

    try:
        engine_client(timeout=5).ping()
    except DockerError:
        pytest.skip("no Docker engine")
    result = CliRunner().invoke(nodes_app, ["start", "node-9", "--cluster", "sc-no-such-cluster"])
    assert result.exit_code == 2, result.output
    assert "no node 'node-9' in sc-no-such-cluster" in result.output and "nodes up" in result.output, result.output


def test_nodes_up_needs_at_least_one_node():
    from infra.docker.nodes_cli import nodes_app

    result = CliRunner().invoke(
        nodes_app, ["up", "--nodes", "0"], env={"DOCKER_HOST": f"tcp://127.0.0.1:{free_port()}"}
    )
    assert result.exit_code == 2 and "Invalid value" in result.output, result.output
