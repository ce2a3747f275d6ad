"""``scalecube images``: build the stack's images, from the registries or air-gapped.

``docker compose build`` builds them from the compose file, one build per image: only ``api``
(scalecube-service) and ``locust`` (scalecube-locust) have a ``build:``; the other services run those
images. Checked here before building (``planned_builds``): a tag built by two services is built twice,
in parallel, each build leaving the previous image untagged.

Compose builds with its own BuildKit client. It prefers to hand builds to buildx ("Bake"), and where
buildx is missing — Debian's docker.io has none, nor has any registry here — it says so as a warning on
every build ("Docker Compose is configured to build using Bake, but buildx isn't installed") and builds
anyway, which CI logs show as if something failed. ``COMPOSE_BAKE=false`` only trades it for a
deprecation warning, and the docker CLI without buildx refuses BuildKit. So the build runs at log level
``error``: compose's warnings are not printed, its errors and the build's own output are.

After the build, the image a tag named before is removed if the build left it untagged and no container
uses it: rebuilding leaves no 259 MB ``<none>`` images behind.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from infra.docker.airgap import AirgapBuilder
from infra.docker.compose import Compose
from infra.docker.engine import DockerError
from infra.paths import REPO


@dataclass(frozen=True)
class ImageBuild:
    tag: str
    target: str | None
    services: tuple[str, ...]  # the compose services whose `build:` this is


def planned_builds(config: dict[str, Any]) -> list[ImageBuild]:
    """Each image the compose config (``docker compose config --format json``) builds, in service order;
    a tag that more than one service builds is refused."""
    builders: dict[str, list[str]] = {}
    targets: dict[str, str | None] = {}
    for name, service in sorted(config.get("services", {}).items()):
        if service.get("build"):
            tag = service.get("image") or f"{config.get('name', 'scalecube')}-{name}"
            builders.setdefault(tag, []).append(name)
            targets[tag] = service["build"].get("target")
    twice = {tag: names for tag, names in builders.items() if len(names) > 1}
    if twice:
        raise DockerError(
            "build each image once: " + "; ".join(f"{', '.join(names)} all build {tag}" for tag, names in twice.items())
        )
    return [ImageBuild(tag, targets[tag], tuple(names)) for tag, names in builders.items()]


def build_images(report: Callable[[str], None], *, airgap: bool, rebuild_base: bool = False) -> None:
    """With ``airgap``: base images, wheelhouse and ``.env`` first; then each image the compose file builds."""
    if airgap:
        AirgapBuilder(report, rebuild=rebuild_base).run()
    compose = Compose(REPO)
    builds = planned_builds(json.loads(compose.run(["config", "--format", "json"])))
    before = {build.tag: image_id(build.tag) for build in builds}
    report(
        "docker compose build: "
        + ", ".join(f"{b.tag} (target {b.target}, for {', '.join(b.services)})" for b in builds)
    )
    compose.run(["build"], capture=False, log_level="error")
    replaced = [old for tag, old in before.items() if old and old != image_id(tag)]
    for line in remove_if_unused(replaced):
        report(line)


def image_id(tag: str) -> str | None:
    done = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", tag], capture_output=True, text=True)
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def remove_if_unused(ids: Iterable[str]) -> list[str]:
    """Remove each image that no tag names and no container uses (never forced); what was done, in words."""
    said = []
    for image in ids:
        inspect = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{json .RepoTags}}", image], capture_output=True, text=True
        )
        if inspect.returncode != 0 or json.loads(inspect.stdout or "null"):
            continue  # gone already, or still tagged
        removed = subprocess.run(["docker", "image", "rm", image], capture_output=True, text=True)
        said.append(
            f"removed the image it replaced ({image[:19]})"
            if removed.returncode == 0
            else f"kept the image it replaced ({image[:19]}): {removed.stderr.strip()[-200:]}"
        )
    return said
