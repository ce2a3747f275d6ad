"""HAProxy's stats CSV, as `stats show-legends` writes it: servers, their status and address."""

from __future__ import annotations

from infra.docker.ops.balancer import parse_stats_csv

CSV = """# pxname,svname,qcur,status,weight,addr,
public,FRONTEND,,OPEN,,,
api,api1,0,UP,1,172.22.0.13:8000,
api,api2,0,DOWN,1,172.22.0.10:8000,
api,api4,0,MAINT (resolution),1,,
api,BACKEND,0,UP,3,,
stats,FRONTEND,,OPEN,,,
"""


def test_only_server_rows_with_status_and_address():
    servers = parse_stats_csv(CSV)
    assert [(s.backend, s.name, s.status, s.ip) for s in servers] == [
        ("api", "api1", "UP", "172.22.0.13"),
        ("api", "api2", "DOWN", "172.22.0.10"),
        ("api", "api4", "MAINT (resolution)", ""),
    ]
