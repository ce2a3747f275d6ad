"""``scalecube images``: build the stack's images, from the registries or air-gapped."""

from __future__ import annotations

from collections.abc import Callable

from infra.docker.airgap import REPO, AirgapBuilder
from infra.docker.compose import Compose


def build_images(report: Callable[[str], None], *, airgap: bool, rebuild_base: bool = False) -> None:
    """With ``airgap``: base images, wheelhouse and ``.env`` first; then ``docker compose build``."""
    if airgap:
        AirgapBuilder(report, rebuild=rebuild_base).run()
    report("docker compose build (the service and locust images)")
    Compose(REPO).run(["build"], capture=False)
