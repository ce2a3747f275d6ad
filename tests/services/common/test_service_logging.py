"""Log lines carry slot and pid, uvicorn's included; access lines only with ACCESS_LOG=1."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import httpx
import pytest

from services.common.logging import HANDLER_NAME, configure_logging


def test_lines_are_tagged_with_slot_and_pid_and_uvicorn_is_integrated(spawn_service) -> None:
    service = spawn_service(SCALECUBE_WORKER_SLOT="3", SCALECUBE_WORKER_ID="9")
    httpx.get(service.url + "/items/5")
    service.stop()

    lines = service.log().splitlines()
    tag = f"[worker=9 slot=3 pid={service.pid}]"
    assert any(tag in line and "uvicorn.error: Application startup complete." in line for line in lines)
    assert any(tag in line and "test-service app created: worker 9, slot 3" in line for line in lines)
    assert not [line for line in lines if "GET /items/5" in line]  # no access log by default


def test_access_log_is_opt_in(spawn_service) -> None:
    service = spawn_service(SCALECUBE_WORKER_ID="4", SCALECUBE_WORKER_SLOT="1", ACCESS_LOG="1")
    httpx.get(service.url + "/items/5")
    service.stop()

    access = [line for line in service.log().splitlines() if '"GET /items/5 HTTP/1.1" 200' in line]
    assert len(access) == 1
    assert f"[worker=4 slot=1 pid={service.pid}] uvicorn.access:" in access[0]


def test_errors_are_logged_with_their_traceback_once(spawn_service) -> None:
    service = spawn_service()
    assert httpx.get(service.url + "/boom/crash").status_code == 500
    service.stop()

    log = service.log()
    assert log.count("Traceback (most recent call last)") == 1
    assert "scalecube.errors: unhandled error in GET /boom/crash" in log


def test_a_runners_console_handler_is_taken_over_so_lines_print_once() -> None:
    # The cluster worker calls basicConfig before importing the app, which then configures logging.
    script = (
        "import logging; from services.common.logging import configure_logging; "
        "logging.basicConfig(format='RUNNER %(message)s'); configure_logging('info'); "
        "logging.getLogger('svc').info('hello')"
    )
    env = {**os.environ, "SCALECUBE_WORKER_ID": "2", "SCALECUBE_WORKER_SLOT": "0"}

    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)

    hello = [line for line in result.stderr.splitlines() if "hello" in line]
    assert len(hello) == 1, result.stderr
    assert "[worker=2 slot=0 pid=" in hello[0] and "svc: hello" in hello[0]


def test_configuring_again_replaces_the_handler() -> None:
    configure_logging("warning")
    configure_logging("debug")

    root = logging.getLogger()
    assert [h.get_name() for h in root.handlers].count(HANDLER_NAME) == 1
    assert root.level == logging.DEBUG
    configure_logging("info")


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud")
