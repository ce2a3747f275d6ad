"""A real api cluster and real Locust runs against it, shared by the parser/report tests of this folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.ports import free_port
from infra.local.processes import ClusterProcess
from infra.local.redis_server import RedisServer
from loadtests.experiments.locust_runner import LoadResult, LoadSpec, run_load
from tests.support.fixtures import ready

API = "services.api.app:app"
FLAT_OUT = {"SCALECUBE_WAIT_MIN": "0", "SCALECUBE_WAIT_MAX": "0", "SCALECUBE_CPU_ITERATIONS": "20000"}


@pytest.fixture(scope="module")
def api_cluster(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    workdir = tmp_path_factory.mktemp("exp-api")
    env = {
        "REDIS_URL": redis_server.url,
        "SESSION_SECRET": "test-secret-long-enough-123",
        "LOG_LEVEL": "warning",
        "SCALECUBE_RUN_DIR": str(workdir),
    }
    cluster = ready(ClusterProcess(API, port=free_port(), workdir=workdir, workers=2, env=env))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def cpu_run(api_cluster: ClusterProcess, tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadResult, Path]:
    """2 s of GET /cpu from 3 users: the files Locust wrote, and what ``run_load`` read from them."""
    workdir = tmp_path_factory.mktemp("exp-locust")
    spec = LoadSpec("CloningUser", api_cluster.url, users=3, seconds=2, tags=("cpu",), env=FLAT_OUT)
    return run_load(spec, workdir, "cpu run"), workdir / "cpu-run"


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadResult, Path]:
    """2 s against a port nobody listens on: every request fails (the CSV, a second behind, has some)."""
    workdir = tmp_path_factory.mktemp("exp-refused")
    spec = LoadSpec("CloningUser", f"http://127.0.0.1:{free_port()}", users=2, seconds=2, tags=("root",), env=FLAT_OUT)
    return run_load(spec, workdir, "refused"), workdir / "refused"
