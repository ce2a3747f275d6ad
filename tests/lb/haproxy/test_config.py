"""haproxy.cfg: one file, accepted by `haproxy -c` in every mode, documenting exactly the variables it reads."""

from __future__ import annotations

import re

import pytest

from lb.config import Limits
from lb.haproxy import runner

pytestmark = pytest.mark.usefixtures("haproxy_binary")

PASSWORD = "test-admin-password"  # the one variable without a default: HAProxy refuses to start without it
MODES = {
    "defaults": runner.HaproxySettings(admin_password=PASSWORD),
    "sticky": runner.HaproxySettings(sticky=True, cookie_key="a-test-cookie-key-0123", admin_password=PASSWORD),
    "leastconn": runner.HaproxySettings(balance="leastconn", admin_password=PASSWORD),
    "auth-and-router": runner.HaproxySettings(auth_service="auth", router_service="router", admin_password=PASSWORD),
    "everything": runner.HaproxySettings(
        bind="127.0.0.1:18080",
        stats_bind="127.0.0.1:18404",
        dns="127.0.0.1:5353",
        slots=4,
        service_slots=2,
        balance="leastconn",
        sticky=True,
        cookie_key="a-test-cookie-key-0123",
        api_service="web",
        api_port=9000,
        auth_service="auth",
        auth_port=9001,
        router_service="router",
        router_port=9002,
        max_connections_per_client=50,
        admin_password=PASSWORD,
    ),
}


@pytest.mark.parametrize("mode", MODES)
def test_haproxy_accepts_the_file_in_every_mode_without_warnings(mode):
    runner.check_config(MODES[mode].environment(), warnings_are_errors=True)


def test_a_bad_value_is_refused_with_haproxys_own_message():
    with pytest.raises(runner.HaproxyConfigError, match="balance only supports"):
        runner.check_config(runner.HaproxySettings(balance="fastest", admin_password=PASSWORD).environment())
    with pytest.raises(runner.HaproxyConfigError, match="LB_STICKY must be 0 or 1"):
        runner.check_config({**runner.HaproxySettings(admin_password=PASSWORD).environment(), "LB_STICKY": "yes"})


@pytest.mark.parametrize("password", [None, ""])
def test_without_an_admin_password_haproxy_refuses_to_start(password):
    """Never an open stats port: no LB_ADMIN_PASSWORD (or an empty one) and the file is refused."""
    with pytest.raises(runner.HaproxyConfigError, match="LB_ADMIN_PASSWORD must be set"):
        runner.check_config(runner.HaproxySettings(admin_password=password).environment({}))


def test_the_documented_variables_are_the_ones_the_file_reads():
    text = runner.CONFIG.read_text()
    header = text.split("\nglobal", 1)[0]
    documented = set(re.findall(r"^#   ([A-Z_]+)\s", header, re.MULTILINE))
    used = set(re.findall(r"\$\{([A-Z_]+)\}", text.split("\nglobal", 1)[1]))
    defaulted = set(re.findall(r"^\s*presetenv ([A-Z_]+) ", text, re.MULTILINE))
    assert used == documented == set(runner.VARIABLES.values())
    # Every variable has a default, except the two whose absence *is* the default (no route), the password,
    # and the sticky cookie's key: no key is published, so none can be a default.
    assert documented - defaulted == {"AUTH_SERVICE", "ROUTER_SERVICE", "LB_ADMIN_PASSWORD", "LB_COOKIE_KEY"}
    presets = dict(re.findall(r'^\s*presetenv ([A-Z_]+)\s+"([^"]*)"', text, re.MULTILINE))
    assert (presets["LB_BIND"], presets["LB_STATS_BIND"]) == (runner.DEFAULT_BIND, runner.DEFAULT_STATS_BIND)
    header_defaults = dict(re.findall(r"^#   ([A-Z_]+)\s+(\S+)", header, re.MULTILINE))
    assert {name: header_defaults[name] for name in presets} == presets  # the header says what presetenv does


def test_every_backend_describes_its_slots_and_only_the_api_keeps_ten():
    """Issue #11: the stats page explains its idle "MAINT (resolution)" slots, and auth and the router keep
    fewer of them (LB_SERVICE_SLOTS) than the api, which is the one scaled to many replicas (LB_SLOTS)."""
    text = runner.CONFIG.read_text()
    blocks = {block.split(None, 1)[0]: block for block in text.split("\nbackend ")[1:]}
    assert set(blocks) == {"api", "api_panic", "auth", "auth_panic", "router", "router_panic"}
    for name, block in blocks.items():
        assert re.search(r'^    description "[^"]+"$', block, re.MULTILINE), name
        slots = re.search(r'^\s*server-template \w+ "\$\{(\w+)\}"', block, re.MULTILINE)
        assert slots and slots.group(1) == ("LB_SLOTS" if name.startswith("api") else "LB_SERVICE_SLOTS"), name
    presets = dict(re.findall(r'^\s*presetenv ([A-Z_]+)\s+"([^"]*)"', text, re.MULTILINE))
    assert (presets["LB_SLOTS"], presets["LB_SERVICE_SLOTS"]) == ("10", "4")
    stats = text.split("\nfrontend stats", 1)[1]
    assert re.search(r'^    stats show-desc ".*MAINT \(resolution\).*/;no-maint"$', stats, re.MULTILINE)


def test_the_per_client_connection_cap_is_the_python_balancers_and_replaces_forwarding_headers():
    """Issue #12: one default for both balancers' per-client cap, and the client's forwarding headers removed
    before ``option forwardfor`` adds HAProxy's own (tests/lb/test_http11.py shows what a backend receives)."""
    text = runner.CONFIG.read_text()
    presets = dict(re.findall(r'^\s*presetenv ([A-Z_]+)\s+"([^"]*)"', text, re.MULTILINE))
    assert presets["LB_MAXCONN_PER_CLIENT"] == str(Limits().max_connections_per_client)
    public = text.split("\nfrontend public", 1)[1].split("\nbackend ", 1)[0]
    deleted = re.findall(r"^    http-request del-header (\S+)$", public, re.MULTILINE)
    assert {name.lower() for name in deleted} == {
        "x-forwarded-for",
        "forwarded",
        "x-real-ip",
        "x-forwarded-host",
        "proxy-authorization",
    }
    assert re.search(r"^    option forwardfor$", public, re.MULTILINE)
