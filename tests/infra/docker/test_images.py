"""`scalecube images` builds each image the compose file builds, once (no engine needed here)."""

from __future__ import annotations

import json
import shutil

import pytest

from infra.docker.compose import Compose
from infra.docker.engine import DockerError
from infra.docker.images import planned_builds
from infra.paths import REPO


def rendered() -> dict:
    """The real compose file as compose itself renders it (``config`` needs the CLI, not an engine)."""
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    try:
        return json.loads(
            Compose(REPO, env={"SCALECUBE_TAG": "latest"}).run(["config", "--format", "json"], timeout=60)
        )
    except DockerError as exc:
        pytest.skip(f"docker compose is not usable here: {exc}")


def test_the_compose_file_builds_each_image_once():
    config = rendered()
    builds = planned_builds(config)
    assert [(b.tag, b.target, b.services) for b in builds] == [
        ("scalecube-service:latest", "service", ("api",)),
        ("scalecube-locust:latest", "locust", ("locust",)),
    ]
    # Every other service runs those images without building them, and never pulls them.
    for name, service in config["services"].items():
        if service["image"].startswith(("scalecube-service:", "scalecube-locust:")):
            assert (name in ("api", "locust")) == ("build" in service), name
            assert service.get("pull_policy") == "never", name


def test_a_tag_built_by_two_services_is_refused():
    recipe = {"context": "/src", "dockerfile": "Dockerfile", "target": "service"}
    config = {
        "services": {
            "a": {"image": "x:1", "build": recipe},
            "b": {"image": "x:1", "build": recipe},
            "c": {"image": "x:1"},
        }
    }
    with pytest.raises(DockerError, match="build each image once: a, b all build x:1"):
        planned_builds(config)
