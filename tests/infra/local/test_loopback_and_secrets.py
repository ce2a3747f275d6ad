"""`scalecube up` binds loopback only, and shares one set of secrets, kept in its state dir (0600).

Built, not started: what each component would be launched with is what is checked, for every shape of the stack.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from infra.local import stack as local_stack
from infra.local.components import ClusterComponent, DnsComponent, HaproxyComponent, PythonLbComponent, RedisComponent
from infra.local.stack import StackOptions, UsageError, build_components
from kit import secrets

SHAPES = {
    "one-api": dict(api=1, lb="none", services="api"),
    "python-lb-all": dict(api=3, lb="python", services="all"),
    "haproxy-all": dict(api=2, lb="haproxy", services="all", sticky=True),
    "sentinel-python-lb-all": dict(api=2, lb="python", services="all", redis="sentinel"),
}


@pytest.fixture(autouse=True)
def no_secret_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in secrets.SECRETS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name + secrets.FILE_SUFFIX, raising=False)


def loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


def binds(component: object) -> list[str]:
    """Every host a component listens on."""
    if isinstance(component, (RedisComponent, DnsComponent, ClusterComponent)):
        return [component.host]
    if isinstance(component, HaproxyComponent):
        return [bind.rpartition(":")[0] for bind in component.settings.binds()]
    if isinstance(component, PythonLbComponent):
        return [component.listen.rpartition(":")[0], component.admin.rpartition(":")[0]]
    raise AssertionError(f"a component this test does not know: {component!r}")


@pytest.mark.parametrize("shape", SHAPES)
def test_every_component_listens_on_loopback_only(shape: str, tmp_path: Path) -> None:
    components = build_components(StackOptions(state_dir=tmp_path, **SHAPES[shape]))
    hosts = {component.name: binds(component) for component in components}
    assert hosts and all(loopback(host) for listed in hosts.values() for host in listed), hosts


@pytest.mark.parametrize("shape", ["python-lb-all", "haproxy-all"])
def test_one_set_of_secrets_kept_in_the_state_dir_and_shared(shape: str, tmp_path: Path) -> None:
    components = build_components(StackOptions(state_dir=tmp_path, **SHAPES[shape]))
    directory = tmp_path / local_stack.SECRETS_DIR
    assert directory.stat().st_mode & 0o777 == 0o700
    kept = {path.name: path.read_text().strip() for path in directory.iterdir()}
    assert set(kept) == set(local_stack.STACK_SECRETS)
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in directory.iterdir())
    assert all(secrets.problem(value) is None for value in kept.values())
    apis = [c for c in components if isinstance(c, ClusterComponent) and c.app == local_stack.API_APP]
    assert len(apis) > 1 and {c.env["SESSION_SECRET"] for c in apis} == {kept["SESSION_SECRET"]}
    balancer = components[-1]
    if isinstance(balancer, HaproxyComponent):
        assert balancer.settings.cookie_key == kept["LB_COOKIE_KEY"]
    else:
        assert balancer.env["LB_STICKY_SECRET"] == kept["LB_STICKY_SECRET"]
    again = build_components(StackOptions(state_dir=tmp_path, **SHAPES[shape]))  # the next `up`: the same ones
    again_apis = [c for c in again if isinstance(c, ClusterComponent) and c.app == local_stack.API_APP]
    assert {c.env["SESSION_SECRET"] for c in again_apis} == {kept["SESSION_SECRET"]}


def test_a_secret_set_in_the_environment_wins_and_a_placeholder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SESSION_SECRET", "my-own-session-secret-0123")
    components = build_components(StackOptions(state_dir=tmp_path, **SHAPES["one-api"]))
    assert components[-1].env["SESSION_SECRET"] == "my-own-session-secret-0123"
    monkeypatch.setenv("LB_COOKIE_KEY", "scalecube-dev-cookie-key")
    with pytest.raises(UsageError, match="LB_COOKIE_KEY: is a known placeholder") as refused:
        build_components(StackOptions(state_dir=tmp_path, **SHAPES["haproxy-all"]))
    assert "scalecube-dev-cookie-key" not in str(refused.value)


def test_up_refuses_a_placeholder_before_starting_anything(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from scalecube import cli as scalecube_cli

    result = CliRunner().invoke(
        scalecube_cli.app,
        ["up", "--state-dir", str(tmp_path), "--services", "api"],
        env={"SESSION_SECRET": "CHANGE-ME-placeholder-session-secret"},
    )
    assert result.exit_code == 2, result.output
    assert "SESSION_SECRET: is a known placeholder" in result.output and "CHANGE-ME-placeholder" not in result.output
    assert not (tmp_path / "stack.json").exists()


def test_the_sentinel_topology_is_a_primary_a_replica_and_three_sentinels_the_api_finds(tmp_path: Path) -> None:
    from infra.local.components import SentinelComponent, SentinelNodeComponent
    from infra.local.sentinel import QUORUM, SentinelServer, sentinel_config

    components = build_components(StackOptions(state_dir=tmp_path, **SHAPES["one-api"], redis="sentinel"))
    names = [c.name for c in components]
    assert names == ["redis", "redis-replica", "redis-sentinel-1", "redis-sentinel-2", "redis-sentinel-3", "api"]
    primary, replica, *watchers, api = components
    assert isinstance(primary, SentinelNodeComponent) and primary.server.replicaof is None
    assert isinstance(replica, SentinelNodeComponent) and replica.server.replicaof == (
        primary.host,
        primary.server.port,
    )
    assert all(isinstance(w, SentinelComponent) for w in watchers)
    sentinels = [w.address for w in watchers]
    assert primary.sentinels == replica.sentinels == sentinels and len(set(sentinels)) == 3
    assert api.env["REDIS_SENTINELS"] == ",".join(f"{h}:{p}" for h, p in sentinels)
    assert api.env["REDIS_SENTINEL_MASTER"] == "scalecube" and api.env["REDIS_URL"] == primary.url
    # The replica starts with --replicaof; a Sentinel's file monitors the primary with quorum 2.
    command = replica.server._command(tmp_path)
    assert command[-3:] == ["--replicaof", primary.host, str(primary.server.port)]
    assert isinstance(watchers[0].server, SentinelServer)
    config = sentinel_config((primary.host, primary.server.port))
    assert f"sentinel monitor scalecube {primary.host} {primary.server.port} {QUORUM}" in config
    with pytest.raises(UsageError, match="--redis"):
        build_components(StackOptions(state_dir=tmp_path, **SHAPES["one-api"], redis="cluster"))
