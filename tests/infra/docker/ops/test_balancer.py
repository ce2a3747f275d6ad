"""HAProxy's stats CSV, as `stats show-legends` writes it: servers, their status and address."""

from __future__ import annotations

from infra.docker.ops.balancer import parse_stats_csv, stats_password

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


class FakeContainer:
    """What ``stats_password`` reads of a Docker SDK container: its environment, and ``exec_run``."""

    def __init__(self, env: list[str], files: dict[str, bytes] | None = None) -> None:
        self.attrs = {"Config": {"Env": env}}
        self.files = files or {}

    def exec_run(self, cmd: list[str]) -> tuple[int, bytes]:
        path = cmd[-1]
        return (0, self.files[path]) if path in self.files else (1, b"cat: no such file")


def test_the_stats_password_is_the_one_the_lb_container_was_given():
    assert stats_password(FakeContainer(["PATH=/bin", "LB_ADMIN_PASSWORD=s3cret=with=equals"])) == "s3cret=with=equals"
    by_file = FakeContainer(["LB_ADMIN_PASSWORD_FILE=/run/secrets/lb"], {"/run/secrets/lb": b"from-file\n"})
    assert stats_password(by_file) == "from-file"
    assert stats_password(FakeContainer(["LB_ADMIN_PASSWORD_FILE=/missing"])) is None
    assert stats_password(FakeContainer(["PATH=/bin"])) is None
