"""A container's workers from `scalecube status --json`, whatever else the status carries."""

from __future__ import annotations

import json

from infra.docker.ops.workers import Worker, parse_status


def test_workers_of_every_cluster_in_the_status():
    status = {
        "stack": None,
        "clusters": [
            {
                "control": "/tmp/scalecube/cluster-8000.sock",
                "master": {"pid": 1},
                "workers": [
                    {
                        "id": 1,
                        "slot": 0,
                        "pid": 14,
                        "state": "listening",
                        "uptime": 3.0,
                        "requests": 7,
                        "restarts": 0,
                        "cpu_percent": 1.0,
                        "rss_mb": 62.5,
                    }
                ],
            }
        ],
    }
    assert parse_status(json.dumps(status)) == [Worker(1, 14, "listening", 7, 62.5)]
    assert parse_status(json.dumps({"stack": None, "clusters": []})) == []
