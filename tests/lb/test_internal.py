"""Internal stays internal: what each balancer's public port refuses, its admin/stats port's password,
and where the Python balancer's admin port listens by default.

The replicas run ``tests.lb.backend_app``, which answers every path with 200: a 404 on the public port is
then the balancer's refusal, and the same request on the replica's own port (inside the network) is served.
The real services behind both balancers are checked the same way in tests/infra/local/test_stack.py
(``test_full_stack_internal_paths_*``).
"""

from __future__ import annotations

import os
import re
import socket
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

from infra.local.ports import free_port
from infra.local.processes import ManagedProcess, wait_until
from lb.config import DEFAULT_CONFIG, DEFAULT_INTERNAL, InternalPath, InternalPaths, load_config
from lb.haproxy import runner
from tests.lb.conftest import ADMIN_PASSWORD, loopback_topology, raw
from tests.support.haproxy import require_haproxy

BACKEND = "tests.lb.backend_app:app"
API_HOST, AUTH_HOST, ROUTER_HOST = "127.0.0.2", "127.0.0.6", "127.0.0.7"
ROUTES = {"auth": "auth", "router": "router"}

# (method, path as sent, the replica whose port would serve it): every entry of the internal list, and the
# ways around it a client might try (a trailing slash, a query, below it, percent-encoded, HEAD).
REFUSED = [
    ("GET", "/metrics", API_HOST),
    ("GET", "/metrics/", API_HOST),
    ("GET", "/metrics?name=x", API_HOST),
    ("GET", "/%6Detrics", API_HOST),
    ("HEAD", "/metrics", API_HOST),
    ("GET", "/docs", API_HOST),
    ("GET", "/docs/oauth2-redirect", API_HOST),
    ("GET", "/redoc", API_HOST),
    ("GET", "/openapi.json", API_HOST),
    ("GET", "/openapi%2Ejson", API_HOST),
    ("GET", "/shards", ROUTER_HOST),
    ("GET", "/auth/users/count", AUTH_HOST),
    ("GET", "/auth/users/count/", AUTH_HOST),
    ("POST", "/announcements", API_HOST),
    ("POST", "/announcements/", API_HOST),
    ("GET", "/admin", API_HOST),
    ("POST", "/admin/moves", API_HOST),
]
# Their public neighbours: passed on as ever.
PASSED = [
    ("GET", "/announcements/last", API_HOST),
    ("GET", "/users/count", API_HOST),
    ("GET", "/metricsx", API_HOST),
    ("GET", "/", API_HOST),
    ("POST", "/auth/login", AUTH_HOST),
    ("GET", "/auth/verify", AUTH_HOST),
    ("GET", "/users/42", ROUTER_HOST),
    ("POST", "/users", ROUTER_HOST),
    ("GET", "/documents", API_HOST),
]


@pytest.fixture(params=["haproxy", "python"])
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "haproxy":
        require_haproxy()
    return request.param


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    with loopback_topology(tmp_path_factory.mktemp("internal")) as topology:
        topology.start("api", API_HOST, BACKEND, workers=1)
        topology.start("auth", AUTH_HOST, BACKEND, workers=1)
        topology.start("router", ROUTER_HOST, BACKEND, workers=1)
        topology.wait_ready()
        yield topology


def send(base: str, method: str, path: str) -> httpx.Response:
    # The path goes out exactly as written: httpx would otherwise normalise %6D and friends.
    with httpx.Client(base_url=base, timeout=10, trust_env=False) as client:
        request = client.build_request(method, base, content=b"{}" if method == "POST" else None)
        request.url = request.url.copy_with(raw_path=path.encode())
        return client.send(request)


# -- the public port ---------------------------------------------------------------------------


def test_internal_paths_are_refused_on_the_public_port_and_served_on_the_replicas_own(kind, echo, start_balancer):
    lb = start_balancer(kind, echo, routes=ROUTES)
    for method, path, host in REFUSED:
        refused = send(lb.url, method, path)
        assert refused.status_code == 404, (method, path, refused.status_code, refused.text)
        assert "x-served-by" not in refused.headers, (method, path)  # no replica saw it
        if method != "HEAD":
            assert refused.headers["content-type"].startswith("application/json"), (method, path)
            assert refused.json()["error"] == "not_found", (method, path)
        own = send(f"http://{host}:{echo.port}", method, path)  # inside the network: served
        assert own.status_code == 200 and own.headers["x-served-by"].startswith("backend/"), (method, path)
    for method, path, host in PASSED:
        passed = send(lb.url, method, path)
        assert passed.status_code == 200, (method, path, passed.status_code)
        assert echo.hosts_of([passed.headers["x-served-by"]]) == [host], (method, path)


def test_an_absolute_form_request_for_an_internal_path_is_refused_too(kind, echo, start_balancer):
    """``GET http://host/metrics HTTP/1.1`` names the same path: refused, never passed on."""
    lb = start_balancer(kind, echo, routes=ROUTES)
    host = lb.url.removeprefix("http://")
    answer = raw(lb.url, f"GET http://{host}/metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    status = answer.split(b"\r\n", 1)[0]
    assert status.split()[1] in (b"404", b"400"), answer[:200]  # refused; never a replica's 200
    assert b"x-served-by" not in answer.lower()


def test_haproxy_cfg_refuses_exactly_the_python_balancers_internal_list():
    """One list: lb/config.py's DEFAULT_INTERNAL; haproxy.cfg's `acl internal*` lines mirror it."""
    text = runner.CONFIG.read_text()
    acls: dict[tuple[str, str], set[str]] = {}
    for name, match, values in re.findall(r"^\s*acl (internal\w*)\s+path,url_dec -m (str|beg) (.+)$", text, re.M):
        acls.setdefault((name, match), set()).update(values.split())
    refused_when = re.search(r"^\s*http-request return status 404 .* if (.+)$", text, re.M)
    assert refused_when and refused_when.group(1).strip() == "internal || METH_POST internal_post"
    methods = {"internal": None, "internal_post": "POST"}
    haproxy = {
        InternalPath(path, methods[name]) for (name, match), paths in acls.items() if match == "str" for path in paths
    }
    python = {InternalPath.parse(entry) for entry in DEFAULT_INTERNAL}
    assert haproxy == python
    for name in methods:  # every path is a whole segment: `/x` exactly, and `/x/...`
        assert acls[(name, "beg")] == {path + "/" for path in acls[(name, "str")]}
    assert load_config().internal == tuple(
        InternalPath.parse(entry) for entry in DEFAULT_INTERNAL
    )  # the shipped file: the default


def test_the_matcher_reads_the_path_as_a_backend_routes_it():
    internal = InternalPaths(InternalPath.parse(entry) for entry in DEFAULT_INTERNAL)
    for method, target in [
        (b"GET", b"/metrics"),
        (b"GET", b"/%6detrics?x"),
        (b"GET", b"http://lb/docs/x"),
        (b"PUT", b"/admin"),
        (b"POST", b"/announcements?x=1"),
        (b"GET", b"/shards/a"),
    ]:
        assert internal.refuses(method, target), (method, target)
    for method, target in [
        (b"GET", b"/metricsx"),
        (b"GET", b"/announcements"),
        (b"GET", b"/announcements/last"),
        (b"GET", b"/auth/users"),
        (b"GET", b"/users/count"),
        (b"GET", b"/api/metrics"),
    ]:
        assert not internal.refuses(method, target), (method, target)
    assert not InternalPaths(()).refuses(b"GET", b"/metrics")  # an empty list in the config: nothing refused


# -- the admin / stats port --------------------------------------------------------------------


def test_the_admin_port_answers_401_without_the_password_and_200_with_it(kind, echo, start_balancer):
    lb = start_balancer(kind, echo)
    pages = ["/", "/metrics", "/;csv" if kind == "haproxy" else "/status.json"]
    for page in pages:
        for auth in (None, httpx.BasicAuth("admin", "wrong"), httpx.BasicAuth("other", ADMIN_PASSWORD)):
            response = httpx.get(lb.stats_url + page, auth=auth, timeout=5, trust_env=False)
            assert response.status_code == 401, (page, auth)
            assert response.headers["www-authenticate"].startswith("Basic realm="), page
            leaks = ("pools", "Statistics Report", "pxname", "scalecube_lb", "haproxy_")  # the pages' contents
            assert not any(word in response.text for word in leaks), (page, response.text[:200])
        assert httpx.get(lb.stats_url + page, auth=lb.admin_auth, timeout=5).status_code == 200, page


# -- the standalone Python balancer ------------------------------------------------------------


def test_standalone_admin_listens_on_loopback_and_generates_its_password_into_a_private_file(echo, tmp_path):
    """`scalecube lb` with the shipped config and no LB_ADMIN_PASSWORD: the admin port binds 127.0.0.1 (only
    its port changed here, to a free one), the password is random, in a 0600 file one log line names."""
    admin_port = free_port()
    shipped = DEFAULT_CONFIG.read_text()
    config = tmp_path / "balancer.toml"
    config.write_text(
        re.sub(r'^admin_listen = "([^:"]+):8404"', rf'admin_listen = "\1:{admin_port}"', shipped, flags=re.M)
    )
    assert load_config(config).admin_listen == ("127.0.0.1", admin_port)
    password_file = tmp_path / "state" / "lb-admin.password"
    env = {"LB_ADMIN_PASSWORD": "", "LB_ADMIN_PASSWORD_FILE": ""}
    with standalone_lb(echo, tmp_path, admin_port, ["--config", str(config)], password_file, env) as (lb, admin):
        listening = {c.laddr for c in psutil.Process(lb.pid).net_connections("tcp") if c.status == "LISTEN"}
        assert ("127.0.0.1", admin_port) in listening
        assert not any(addr.port == admin_port and addr.ip != "127.0.0.1" for addr in listening), listening
        other = _non_loopback_address()
        if other is not None:  # e.g. the container's eth0 address: nothing listens there
            with pytest.raises(OSError):
                socket.create_connection((other, admin_port), timeout=2).close()

        mode = stat.S_IMODE(os.stat(password_file).st_mode)
        assert mode == 0o600, oct(mode)
        password = password_file.read_text().strip()
        assert len(password) >= 24 and password != ADMIN_PASSWORD
        assert str(password_file) in lb.log() and password not in lb.log()  # where it is, never what it is
        assert httpx.get(admin + "/status.json", timeout=5).status_code == 401
        assert httpx.get(admin + "/status.json", auth=("admin", password), timeout=5).status_code == 200


def test_standalone_takes_the_password_from_the_environment_or_its_file(echo, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file-0123456789\n")
    never_written = tmp_path / "never-written"
    for env, password in [
        ({"LB_ADMIN_PASSWORD": "from-env-0123456789"}, "from-env-0123456789"),
        ({"LB_ADMIN_PASSWORD": "", "LB_ADMIN_PASSWORD_FILE": str(secret)}, "from-a-file-0123456789"),
    ]:
        admin_port = free_port()
        args = ["--admin", f"127.0.0.1:{admin_port}"]
        with standalone_lb(echo, tmp_path, admin_port, args, never_written, env) as (_, admin):
            assert httpx.get(admin + "/", auth=("admin", password), timeout=5).status_code == 200
            assert httpx.get(admin + "/", auth=("admin", password + "x"), timeout=5).status_code == 401
        assert not never_written.exists()


@contextmanager
def standalone_lb(
    echo, tmp_path: Path, admin_port: int, args: list[str], password_file: Path, env: dict[str, str]
) -> Iterator[tuple[ManagedProcess, str]]:
    """`scalecube lb` in front of the echo replica, with ``args`` and ``env``; yields it and its admin URL once
    the admin port answers, and stops it afterwards."""
    port = free_port()
    argv = [sys.executable, "-m", "scalecube", "lb", *args, "--listen", f"127.0.0.1:{port}"]
    argv += ["--upstream", f"api=static:{API_HOST}:{echo.port}", "--admin-password-file", str(password_file)]
    lb = ManagedProcess(argv, env=env, log_path=tmp_path / f"lb-{port}.log")
    try:
        admin = f"http://127.0.0.1:{admin_port}"
        wait_until(lambda: _answers(admin + "/healthz"), 20, what="the admin port")
        yield lb, admin
    finally:
        lb.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _non_loopback_address() -> str | None:
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    return None
