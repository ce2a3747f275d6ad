"""The suite leaves the Docker engine as it found it: what it lists after the run, it listed before.

At the session's start, if an engine answers, its containers, networks, volumes and images are listed;
at the end, again. Anything new is something a test made and did not remove (a stack's volumes, a
swarm's ``docker_gwbridge``, a test image): it is printed, and under CI (``CI`` set) the run fails.
Each test removes what it made; this is the check that they did. Registered in ``tests/conftest.py``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

KINDS = ("containers", "networks", "volumes", "images")
_before: dict[str, dict[str, str]] | None = None


def engine_objects() -> dict[str, dict[str, str]] | None:
    """Id -> a readable name, per kind; None without a reachable engine."""
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception:  # no SDK, no engine, no permission: nothing to compare
        return None
    try:
        return {
            # sparse: the listing only, no inspect per container (which races with one being removed).
            "containers": {
                c.id: (c.attrs.get("Names") or [c.id[:12]])[0].lstrip("/")
                for c in client.containers.list(all=True, sparse=True)
            },
            "networks": {n.id: n.name for n in client.networks.list()},
            "volumes": {v.id: v.name for v in client.volumes.list()},
            "images": {i.id: ", ".join(i.tags) or f"<none> {i.id[7:19]}" for i in client.images.list()},
        }
    finally:
        client.close()


def leftovers(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    """What ``after`` has that ``before`` had not, per kind (names sorted); kinds with nothing new left out."""
    found = {kind: sorted(name for key, name in after[kind].items() if key not in before[kind]) for kind in KINDS}
    return {kind: names for kind, names in found.items() if names}


def _controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")  # under xdist: the controller alone lists


def pytest_sessionstart(session: pytest.Session) -> None:
    global _before
    if _controller(session.config):
        _before = engine_objects()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: Any) -> None:
    if _before is None or not _controller(session.config):
        return
    after = engine_objects()
    if after is None:
        return
    left = leftovers(_before, after)
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"{kind}: {', '.join(names)}" for kind, names in left.items()]
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_sep("=", "the suite left these on the Docker engine", red=True)
        for line in lines:
            reporter.write_line(line)
    if os.environ.get("CI") and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
