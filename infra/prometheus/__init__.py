"""Prometheus's configuration for the stack: ``prometheus.yml`` (what it scrapes in compose) and ``rules.yml``
(the recording rules), with ``rules_test.yml`` for ``promtool test rules``."""

from __future__ import annotations

from infra.paths import REPO

PROMETHEUS_DIR = REPO / "infra" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "rules.yml"
RULES_TEST = PROMETHEUS_DIR / "rules_test.yml"
