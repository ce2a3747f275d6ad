"""A ``prometheus.yml`` for the local stack (``scalecube up``): the components it started, by their addresses.

No Docker, so no DNS to discover replicas by: the state file (``stack.json``) lists every component, and each
becomes a static target with the same labels as in compose — ``job`` and ``service`` the service (``api-2`` is
the api's), ``endpoint`` app (the app's port, its ``/metrics``) or master (the cluster master's health port),
``instance`` the component's name — so the same recording rules (``rules.yml``) apply. The balancer's admin port
is read with the password file ``scalecube up`` wrote. Written by ``scalecube prometheus-config``; run Debian's
Prometheus against it (``apt-get install prometheus``)::

    prometheus --config.file STATE_DIR/prometheus.yml --storage.tsdb.path STATE_DIR/prometheus-data \\
        --web.listen-address 127.0.0.1:9090
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from infra.prometheus import CONFIG, RULES

CONFIG_NAME = "prometheus.yml"
_REPLICA = re.compile(r"-\d+$")  # api-1, api-2, ...: replicas of the api


def service_of(component: str) -> str:
    return _REPLICA.sub("", component)


def _address(url: str) -> str:
    return urlsplit(url).netloc


def local_config(components: list[dict[str, Any]], rules: Path = RULES) -> dict[str, Any]:
    """The configuration scraping ``components`` (``Component.describe()`` of each, as in ``stack.json``)."""
    jobs: dict[str, dict[str, Any]] = {}
    for component in components:
        name = component["name"]
        if component.get("kind") == "cluster":
            service = service_of(name)
            job = jobs.setdefault(service, {"job_name": service, "static_configs": []})
            endpoints = {"app": component.get("url"), "master": component.get("health")}
            for endpoint, url in endpoints.items():
                if url:
                    job["static_configs"].append(
                        {
                            "targets": [_address(url)],
                            "labels": {"service": service, "endpoint": endpoint, "instance": name},
                        }
                    )
        elif component.get("stats") and component.get("admin_password_file"):  # a balancer's admin port
            jobs[name] = {
                "job_name": name,
                "basic_auth": {
                    "username": component.get("admin_user", "admin"),
                    "password_file": component["admin_password_file"],
                },
                "static_configs": [
                    {"targets": [_address(component["stats"])], "labels": {"service": name, "instance": name}}
                ],
            }
    return {
        "global": yaml.safe_load(CONFIG.read_text())["global"],  # compose's intervals: one definition
        "rule_files": [str(rules)],
        "scrape_configs": list(jobs.values()),
    }


def write_local_config(state_dir: Path, components: list[dict[str, Any]]) -> Path:
    path = state_dir / CONFIG_NAME
    header = "# written by `scalecube prometheus-config` from stack.json: the components `scalecube up` started\n"
    path.write_text(header + yaml.safe_dump(local_config(components), sort_keys=False))
    return path
