"""What must hold of the rendered manifests, beyond "kubectl would accept them".

Each check takes the rendered objects (``infra.k8s.manifests``) and returns its problems as
sentences naming the object; an empty list means it holds.

    python -m infra.k8s.checks            # render with kubectl kustomize and check; exit 1 on a problem
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.k8s.manifests import Manifest
from infra.paths import REPO

# The Kubernetes version the manifests are validated against (kubernetes-validate ships its schemas).
# The preStop `sleep` action needs >= 1.30.
K8S_VERSION = "1.36.0"
IMAGES = {"scalecube-service:latest", "scalecube-locust:latest", "redis:7.2", "haproxy:2.8", "prom/prometheus:v2.53.0"}
IMAGE_APP_DIR = "/app/"  # where infra/docker/Dockerfile copies the project in the scalecube images
# A ConfigMap key -> the repository file it must equal.
CONFIG_ORIGINALS = {
    ("haproxy", "haproxy.cfg"): "lb/haproxy/haproxy.cfg",
    ("shard-map", "shard_map.toml"): "services/router/shard_map.toml",
    ("prometheus", "rules.yml"): "infra/prometheus/rules.yml",
}
DEFAULT_GRACE_SECONDS = 30  # Kubernetes' terminationGracePeriodSeconds when unset
HAPROXY_DEFAULT_SLOTS = 10  # used if haproxy.cfg's presetenv cannot be read
LOCUST_MASTER_PORT = 5557  # Locust's default --master-port
URL = re.compile(r"\b(?:redis|rediss|http|https)://([A-Za-z0-9.-]+):(\d+)")

Check = Callable[[list[Manifest]], list[str]]


@dataclass(frozen=True)
class Container:
    """One container of a Deployment, with what its pod spec adds."""

    deployment: Manifest
    pod: dict[str, Any]
    spec: dict[str, Any]

    @property
    def where(self) -> str:
        return f"Deployment/{self.deployment['metadata']['name']} container {self.spec['name']}"

    @property
    def argv(self) -> list[str]:
        return [*self.spec.get("command", []), *self.spec.get("args", [])]

    @property
    def env(self) -> dict[str, dict[str, Any]]:
        return {item["name"]: item for item in self.spec.get("env", [])}

    def literal_env(self) -> dict[str, str]:
        return {name: item["value"] for name, item in self.env.items() if "value" in item}

    def serves(self) -> str | None:
        """The MODULE:APP of ``scalecube serve MODULE:APP ...``, if that is what it runs."""
        argv = self.argv
        for index, word in enumerate(argv[:-2]):
            if Path(word).name == "scalecube" and argv[index + 1] == "serve":
                return argv[index + 2]
        return None

    def option(self, name: str) -> str | None:
        argv = self.argv
        return argv[argv.index(name) + 1] if name in argv[:-1] else None


def _name(manifest: Manifest) -> str:
    return str(manifest["metadata"]["name"])


def _of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def _containers(manifests: list[Manifest]) -> Iterator[Container]:
    for deployment in _of_kind(manifests, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for spec in [*pod.get("initContainers", []), *pod.get("containers", [])]:
            yield Container(deployment, pod, spec)


def _generated(manifests: list[Manifest], kind: str, name: str) -> Manifest | None:
    """The ConfigMap/Secret generated as ``name``: kustomize's hash suffix (``name-<10 chars>``) or none."""
    pattern = re.compile(rf"{re.escape(name)}(-[a-z0-9]{{10}})?")
    return next((m for m in _of_kind(manifests, kind) if pattern.fullmatch(_name(m))), None)


def _by_name(manifests: list[Manifest], kind: str, name: str) -> Manifest | None:
    return next((m for m in _of_kind(manifests, kind) if _name(m) == name), None)


# -- the checks ---------------------------------------------------------------------------------


def schema_problems(manifests: list[Manifest], version: str = K8S_VERSION) -> list[str]:
    """Every object validates against the Kubernetes schema, strictly (no unknown fields)."""
    import kubernetes_validate

    problems = []
    for manifest in manifests:
        where = f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path) or "(top)"
            problems.append(f"{where}: {path}: {exc.message} (Kubernetes {version} schema)")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{where}: {exc.message}")
    return problems


def probe_problems(manifests: list[Manifest]) -> list[str]:
    """Every container of every Deployment has a readiness and a liveness probe."""
    return [
        f"{c.where} has no {probe}"
        for c in _containers(manifests)
        if c.spec in c.pod.get("containers", [])
        for probe in ("readinessProbe", "livenessProbe")
        if probe not in c.spec
    ]


def service_problems(manifests: list[Manifest]) -> list[str]:
    """Every Service selects some Deployment's pods, on ports those pods declare."""
    problems = []
    for service in _of_kind(manifests, "Service"):
        selector = service["spec"].get("selector") or {}
        where = f"Service/{_name(service)}"
        if not selector:
            problems.append(f"{where} has no selector")
            continue
        selected = [
            d
            for d in _of_kind(manifests, "Deployment")
            if selector.items() <= d["spec"]["template"]["metadata"].get("labels", {}).items()
        ]
        if not selected:
            problems.append(f"{where}: selector {selector} matches no Deployment's pods")
        for deployment in selected:
            ports = [p for c in deployment["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])]
            for port in service["spec"].get("ports", []):
                target = port.get("targetPort", port["port"])
                key = "name" if isinstance(target, str) else "containerPort"
                if not any(p.get(key) == target for p in ports):
                    problems.append(f"{where}: targetPort {target!r} is not a port of Deployment/{_name(deployment)}")
    return problems


def autoscaler_problems(manifests: list[Manifest]) -> list[str]:
    """Every HPA scales an existing Deployment that leaves it the replica count, within the balancer's slots."""
    problems = []
    slots = _balancer_slots(manifests)
    for hpa in _of_kind(manifests, "HorizontalPodAutoscaler"):
        where = f"HorizontalPodAutoscaler/{_name(hpa)}"
        ref = hpa["spec"]["scaleTargetRef"]
        target = _by_name(manifests, ref["kind"], ref["name"])
        if ref["kind"] != "Deployment" or target is None:
            problems.append(f"{where} targets {ref['kind']}/{ref['name']}, which is not a Deployment here")
        elif "replicas" in target["spec"]:
            problems.append(f"{where}: Deployment/{ref['name']} sets replicas, which every apply would reset")
        if slots is not None and hpa["spec"]["maxReplicas"] > slots:
            problems.append(
                f"{where}: maxReplicas {hpa['spec']['maxReplicas']} > the balancer's LB_SLOTS {slots}: "
                "replicas beyond the slots would get no traffic"
            )
    return problems


def security_problems(manifests: list[Manifest]) -> list[str]:
    """No container may run as root or gain privileges (the "restricted" Pod Security Standard)."""
    problems = []
    for c in _containers(manifests):
        pod_context, context = c.pod.get("securityContext", {}), c.spec.get("securityContext", {})

        def effective(field: str) -> Any:
            return context.get(field, pod_context.get(field))

        if effective("runAsNonRoot") is not True:
            problems.append(f"{c.where}: runAsNonRoot is not true")
        if effective("runAsUser") == 0:
            problems.append(f"{c.where}: runAsUser is 0 (root)")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{c.where}: allowPrivilegeEscalation is not false")
        if context.get("privileged"):
            problems.append(f"{c.where}: privileged")
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            problems.append(f"{c.where}: capabilities do not drop ALL")
        if (effective("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{c.where}: no RuntimeDefault seccomp profile")
    return problems


def image_problems(manifests: list[Manifest]) -> list[str]:
    """Only the project's images; ``scalecube serve MODULE:APP`` and ``locust -f /app/FILE`` name this project's."""
    problems = []
    for c in _containers(manifests):
        if c.spec.get("image") not in IMAGES:
            problems.append(f"{c.where}: image {c.spec.get('image')!r} is not one of {sorted(IMAGES)}")
        target = c.serves()
        if target is not None and not _module_exists(target.partition(":")[0]):
            problems.append(f"{c.where}: serves {target}, but there is no module {target.partition(':')[0]}")
        locustfile = c.option("-f") or ""
        relative = locustfile.removeprefix(IMAGE_APP_DIR)
        if locustfile.startswith(IMAGE_APP_DIR) and not (REPO / relative).is_file():
            problems.append(f"{c.where}: runs {locustfile}, but the project has no {relative}")
    return problems


def resource_problems(manifests: list[Manifest]) -> list[str]:
    """Every container asks for CPU and memory and is capped (`--workers auto` counts the CPU limit)."""
    problems = []
    for c in _containers(manifests):
        resources = c.spec.get("resources", {})
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in resources.get(bound, {}):
                    problems.append(f"{c.where}: no {resource} in resources.{bound}")
    return problems


def reference_problems(manifests: list[Manifest]) -> list[str]:
    """Every Service, port, ConfigMap, Secret key and mounted file a container names exists."""
    problems = []
    for c in _containers(manifests):
        texts = [*c.argv, *c.literal_env().values()]
        for text in texts:
            for host, port in URL.findall(text):
                problems += _service_port_problems(manifests, c.where, host, int(port), f"URL in {text!r}")
        master, master_port = c.option("--master-host"), c.option("--master-port")
        if master is not None:
            problems += _service_port_problems(
                manifests, c.where, master, int(master_port or LOCUST_MASTER_PORT), "--master-host"
            )
        literal = c.literal_env()
        for name, value in literal.items():
            if name.endswith("_SERVICE") and value:
                port = int(literal.get(name.removesuffix("_SERVICE") + "_PORT", "8000"))
                problems += _service_port_problems(manifests, c.where, value, port, name, headless=True)
        for name, item in c.env.items():
            for ref_kind, ref_key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                ref = item.get("valueFrom", {}).get(ref_key)
                if ref is not None:
                    problems += _key_problems(manifests, c.where, ref_kind, ref["name"], ref["key"], f"env {name}")
        problems += _mounted_file_problems(manifests, c, texts)
    return problems


def config_copy_problems(manifests: list[Manifest], project_root: Path = REPO) -> list[str]:
    """The haproxy and shard-map ConfigMaps hold exactly the repository's files."""
    problems = []
    for (name, key), original in CONFIG_ORIGINALS.items():
        config_map = _generated(manifests, "ConfigMap", name)
        if config_map is None:
            problems.append(f"no ConfigMap {name} (from {original})")
        elif config_map.get("data", {}).get(key) != (project_root / original).read_text():
            problems.append(
                f"ConfigMap/{_name(config_map)} key {key} differs from {original}: run python -m infra.k8s.copies"
            )
    return problems


def grace_problems(manifests: list[Manifest]) -> list[str]:
    """A stopping pod gets the time its drain needs: preStop, then the cluster's drain or HAProxy's hard stop."""
    from cluster.config import KILL_GRACE, ClusterConfig

    problems = []
    hard_stop = _haproxy_hard_stop_after(manifests)
    for c in _containers(manifests):
        grace = c.pod.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
        pre_stop = c.spec.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        if c.serves() is not None:
            drain = float(c.option("--drain-timeout") or ClusterConfig.drain_timeout)
            needed = pre_stop + drain + ClusterConfig.settle + KILL_GRACE
            what = "preStop + drain + settle + kill grace"
        elif "haproxy" in " ".join(c.argv) and hard_stop is not None:
            needed, what = pre_stop + hard_stop, "preStop + haproxy.cfg's hard-stop-after"
        else:
            continue
        if grace < needed:
            problems.append(f"{c.where}: terminationGracePeriodSeconds {grace} < {needed:g} s ({what})")
    return problems


def settings_problems(manifests: list[Manifest]) -> list[str]:
    """Each service's environment (Secrets included) passes its own settings class, as at its start."""
    problems = []
    for c in _containers(manifests):
        target = c.serves()
        if target is None:
            continue
        settings_class = _settings_class(target.partition(":")[0])
        if settings_class is None:
            continue
        values: dict[str, str] = dict(c.literal_env())
        for name, item in c.env.items():
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            secret = _generated(manifests, "Secret", ref["name"]) if ref else None
            if ref and secret is not None and ref["key"] in secret.get("data", {}):
                values[name] = base64.b64decode(secret["data"][ref["key"]]).decode()
        fields = {name.lower(): value for name, value in values.items() if name.lower() in settings_class.model_fields}
        try:
            _from_these_values_only(settings_class).load(**fields)
        except ValueError as exc:  # InvalidSettings names each bad variable
            problems.append(f"{c.where}: {exc}".replace("\n", " "))
    return problems


def secret_problems(manifests: list[Manifest]) -> list[str]:
    """No Secret holds a known placeholder or a short value (the services and HAProxy would refuse it; the
    message names the key, never the value)."""
    from kit import secrets

    problems = []
    for secret in _of_kind(manifests, "Secret"):
        for key, encoded in sorted(secret.get("data", {}).items()):
            reason = secrets.problem(base64.b64decode(encoded).decode(errors="replace"))
            if reason:
                problems.append(f"Secret/{_name(secret)} key {key}: {reason}")
    return problems


def redis_auth_problems(manifests: list[Manifest]) -> list[str]:
    """Every Redis requires REDIS_PASSWORD (``--requirepass $(REDIS_PASSWORD)``, from a Secret, with
    REDISCLI_AUTH for its probes), and every service with a Redis URL sends it (REDIS_PASSWORD from a Secret)."""
    problems = []
    for c in _containers(manifests):
        from_secret = {name for name, item in c.env.items() if "secretKeyRef" in item.get("valueFrom", {})}
        if str(c.spec.get("image", "")).startswith("redis:"):
            argv = c.argv
            index = argv.index("--requirepass") if "--requirepass" in argv[:-1] else None
            if index is None or argv[index + 1] != "$(REDIS_PASSWORD)":
                problems.append(
                    f"{c.where}: Redis without --requirepass $(REDIS_PASSWORD): anyone in the cluster "
                    "may read and write it"
                )
            for name in ("REDIS_PASSWORD", "REDISCLI_AUTH"):
                if name not in from_secret:
                    problems.append(f"{c.where}: env {name} does not come from a Secret")
        elif c.serves() is not None and any(n.endswith("REDIS_URL") for n in c.literal_env()):
            if "REDIS_PASSWORD" not in from_secret:
                problems.append(f"{c.where}: talks to Redis without REDIS_PASSWORD from a Secret")
    return problems


CHECKS: tuple[Check, ...] = (
    schema_problems,
    probe_problems,
    service_problems,
    autoscaler_problems,
    security_problems,
    image_problems,
    resource_problems,
    reference_problems,
    config_copy_problems,
    grace_problems,
    settings_problems,
    secret_problems,
    redis_auth_problems,
)


def all_problems(manifests: list[Manifest]) -> list[str]:
    return [problem for check in CHECKS for problem in check(manifests)]


# -- helpers ------------------------------------------------------------------------------------


def _service_port_problems(
    manifests: list[Manifest], where: str, host: str, port: int, what: str, *, headless: bool = False
) -> list[str]:
    """``host`` (``name``, ``name.namespace``, ``name.$(POD_NAMESPACE).svc.cluster.local``) is a Service on ``port``."""
    name = host.split(".", 1)[0]
    service = _by_name(manifests, "Service", name)
    if service is None:
        return [f"{where}: {what} names {host}, but there is no Service {name}"]
    problems = []
    if port not in [p["port"] for p in service["spec"].get("ports", [])]:
        problems.append(f"{where}: {what}: Service/{name} has no port {port}")
    if headless and service["spec"].get("clusterIP") != "None":
        problems.append(f"{where}: {what}: Service/{name} is not headless, so DNS would not list every pod")
    return problems


def _key_problems(manifests: list[Manifest], where: str, kind: str, name: str, key: str, what: str) -> list[str]:
    found = _by_name(manifests, kind, name) or _generated(manifests, kind, name)
    if found is None:
        return [f"{where}: {what} needs {kind}/{name}, which is not here"]
    if key not in found.get("data", {}):
        return [f"{where}: {what} needs key {key} of {kind}/{name}, which has {sorted(found.get('data', {}))}"]
    return []


def _mounted_file_problems(manifests: list[Manifest], c: Container, texts: list[str]) -> list[str]:
    """A path inside a ConfigMap volume's mount, named in the command or env, is a key of that ConfigMap."""
    volumes = {v["name"]: v["configMap"]["name"] for v in c.pod.get("volumes", []) if "configMap" in v}
    problems = []
    for mount in c.spec.get("volumeMounts", []):
        config_name = volumes.get(mount["name"])
        if config_name is None:
            continue
        config_map = _by_name(manifests, "ConfigMap", config_name)
        if config_map is None:
            problems.append(f"{c.where}: volume {mount['name']} needs ConfigMap/{config_name}, which is not here")
            continue
        prefix = mount["mountPath"].rstrip("/") + "/"
        for text in texts:
            for key in re.findall(re.escape(prefix) + r"([^\s\"';]+)", text):
                if key not in config_map.get("data", {}):
                    problems.append(f"{c.where}: reads {prefix}{key}, but ConfigMap/{config_name} has no key {key}")
    return problems


def _balancer_slots(manifests: list[Manifest]) -> int | None:
    """LB_SLOTS as the balancer gets it: its env, else haproxy.cfg's presetenv default; None without a balancer."""
    for c in _containers(manifests):
        if "haproxy" in " ".join(c.argv):
            if "LB_SLOTS" in c.literal_env():
                return int(c.literal_env()["LB_SLOTS"])
            config = _generated(manifests, "ConfigMap", "haproxy")
            found = re.search(r'presetenv\s+LB_SLOTS\s+"(\d+)"', (config or {}).get("data", {}).get("haproxy.cfg", ""))
            return int(found.group(1)) if found else HAPROXY_DEFAULT_SLOTS
    return None


def _haproxy_hard_stop_after(manifests: list[Manifest]) -> float | None:
    config = _generated(manifests, "ConfigMap", "haproxy")
    found = re.search(
        r"^\s*hard-stop-after\s+(\d+)(ms|s|m)?\s", (config or {}).get("data", {}).get("haproxy.cfg", ""), re.MULTILINE
    )
    if not found:
        return None
    return int(found.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 0.001}[found.group(2)]


def _module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def _settings_class(app_module: str) -> Any:
    """The ServiceSettings subclass in the app's package's ``settings`` module (services.api.app -> ApiSettings)."""
    from services.common.settings import ServiceSettings

    package = app_module.rpartition(".")[0]
    try:
        module = importlib.import_module(f"{package}.settings")
    except ImportError:
        return None
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value is not ServiceSettings
        and value.__module__ == module.__name__
    ]
    return found[0] if len(found) == 1 else None


def _from_these_values_only(settings_class: Any) -> Any:
    """``settings_class`` reading its init values only: not this process's environment or a .env file."""

    class FromValuesOnly(settings_class):  # type: ignore[misc, valid-type]
        @classmethod
        def settings_customise_sources(cls, settings_cls: Any, init_settings: Any, **others: Any) -> tuple[Any, ...]:
            return (init_settings,)

    FromValuesOnly.__name__ = settings_class.__name__
    return FromValuesOnly


def main(argv: list[str]) -> int:
    from infra.k8s import manifests

    if argv:
        print("usage: python -m infra.k8s.checks", file=sys.stderr)
        return 2
    try:
        rendered = manifests.render_with_kubectl()
    except manifests.ManifestError as exc:
        print(f"infra/k8s: {exc}", file=sys.stderr)
        return 1
    problems = all_problems(rendered)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"infra/k8s: {len(rendered)} objects, {len(problems)} problem(s) (Kubernetes {K8S_VERSION})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
