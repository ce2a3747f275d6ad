"""The balancer's config file, its command-line overrides, and the router built from its routes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lb.config import (
    DEFAULT_CONFIG,
    AdminSettings,
    BalancerConfig,
    ConfigError,
    DiscoverySettings,
    HealthSettings,
    InternalPath,
    Limits,
    Route,
    Router,
    StickySettings,
    Timeouts,
    Upstream,
    load_config,
    with_overrides,
)
from lb.haproxy import runner

EXAMPLE = """
listen = "127.0.0.1:9080"
admin_listen = "127.0.0.1:9404"

[upstreams.api]
discovery = "dns:api:8000"
policy = "leastconn"

[upstreams.auth]
discovery = "dns:auth:8000@127.0.0.1:5353"
policy = "rr"
panic_below = 0.5
check_path = "/health/ready"
check_port = 9000

[[routes]]
prefix = "/"
upstream = "api"

[[routes]]
prefix = "/auth/"
upstream = "auth"

[timeouts]
connect = 1
read = 5.5

[limits]
retries = 0

[sticky]
enabled = true
max_age = 600
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "balancer.toml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    return str(caught.value)


def test_the_shipped_file_routes_everything_to_api():
    config = load_config()
    assert config == load_config(DEFAULT_CONFIG)
    assert list(config.upstreams) == ["api"]
    api = config.upstreams["api"]
    assert api.discovery == "dns:api:8000" and api.policy == "leastconn"  # least outstanding requests
    assert (api.panic_below, api.check_path, api.check_port) == (0.0, "/readyz", 0)  # panic only with none healthy
    assert Upstream("x", "dns:x:80") == Upstream("x", "dns:x:80", "leastconn", 0.0, "/readyz", 0)  # the same defaults
    assert config.routes == (Route("/", "api"),)
    assert config.unrouted() == []
    assert config.listen == ("0.0.0.0", 8080)


def test_a_full_file_is_read_with_defaults_for_the_rest(tmp_path):
    config = load_config(write(tmp_path, EXAMPLE))
    assert config.listen == ("127.0.0.1", 9080) and config.admin_listen == ("127.0.0.1", 9404)
    assert config.upstreams["api"].policy == "leastconn"
    assert config.upstreams["auth"].discovery == "dns:auth:8000@127.0.0.1:5353"
    auth = config.upstreams["auth"]
    assert (auth.policy, auth.panic_below, auth.check_path, auth.check_port) == ("rr", 0.5, "/health/ready", 9000)
    assert config.timeouts.connect == 1.0 and isinstance(config.timeouts.connect, float)
    assert config.timeouts.read == 5.5 and config.timeouts.idle == 10.0 and config.timeouts.body == 30.0  # unset
    assert config.limits.retries == 0 and config.limits.max_headers == 100
    assert config.sticky.enabled and config.sticky.max_age == 600 and config.sticky.cookie_name == "SCALECUBE_LB"
    router = Router(config.routes)
    assert router.match(b"/auth/login") == "auth"
    assert router.match(b"/auth") == "api"  # plain prefixes: "/auth/" needs the slash
    assert router.match(b"/") == "api" and router.match(b"/cpu?iterations=5") == "api"


def test_router_longest_prefix_wins_whatever_the_order():
    routes = [Route("/", "api"), Route("/users", "router"), Route("/users/admin/", "admin"), Route("/auth/", "auth")]
    for order in (routes, routes[::-1]):
        router = Router(order)
        assert router.match(b"/users/admin/x") == "admin"
        assert router.match(b"/users/42") == "router"
        assert router.match(b"/users") == "router" and router.match(b"/users?page=2") == "router"
        assert router.match(b"/usersettings") == "api"  # no slash at its end: "/users" is a whole segment
        assert router.match(b"/auth/me") == "auth"
        assert router.match(b"/other") == "api"
    assert Router([Route("/auth/", "auth")]).match(b"/other") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('lisen = "0.0.0.0:80"\n', "lisen: unknown key"),
        ("[timeouts]\nconect = 1\n", "timeouts.conect: unknown key (known: connect, read, idle, header, body, drain)"),
        ('[upstreams.api]\ndiscovery = "dns:api:8000"\nweight = 2\n', "upstreams.api.weight: unknown key"),
        ('[[routes]]\nprefix = "/"\nupstream = "api"\nhost = "x"\n', "routes[0].host: unknown key"),
        ('[timeouts]\nconnect = "fast"\n', "timeouts.connect must be a number, got 'fast'"),
        ("[limits]\nmax_headers = 1.5\n", "limits.max_headers must be a whole number, got 1.5"),
        ("[sticky]\nenabled = 1\n", "sticky.enabled must be true or false, got 1"),
        ("[timeouts]\nread = 0\n", "timeouts.read must be a positive number of seconds"),
        ("[limits]\nretries = -1\n", "limits.retries must be 0 or more"),
        ('[health]\npath = "/readyz"\n', "health.path: unknown key"),  # where to check is each group's
        ('[upstreams.api]\ndiscovery = "dns:api:8000"\ncheck_path = "readyz"\n', "upstreams.api.check_path must start"),
        ('[upstreams.api]\ndiscovery = "dns:api:8000"\ncheck_port = 70000\n', "upstreams.api.check_port must be 0"),
        (
            '[upstreams.api]\ndiscovery = "dns:api:8000"\npanic_below = 1.5\n',
            "upstreams.api.panic_below must be a share",
        ),
        ('[upstreams.api]\ndiscovery = "dns:api:8000"\npanic_below = "half"\n', "panic_below must be a number"),
        ('listen = "8080"\n', "listen: expected host:port"),
        ('admin_listen = "0.0.0.0:99999"\n', "port must be a number from 1 to 65535"),
        ('[upstreams.api]\npolicy = "rr"\n', "upstreams.api.discovery: missing"),
        ('[upstreams.api]\ndiscovery = "consul:api"\n', "upstreams.api.discovery: discovery spec 'consul:api'"),
        ('[upstreams.api]\ndiscovery = "dns:api:8000"\npolicy = "random"\n', "upstreams.api.policy must be one of"),
        ('[upstreams."a b"]\ndiscovery = "dns:api:8000"\n', "upstream name 'a b'"),
    ],
)
def test_errors_name_the_bad_key(tmp_path, text, message):
    valid = '[upstreams.api]\ndiscovery = "dns:api:8000"\n[[routes]]\nprefix = "/"\nupstream = "api"\n'
    # The faulty piece first: top-level keys must precede the tables.
    assert message in error_of(tmp_path, text + ("\n" + valid if "[upstreams.api]" not in text else ""))


def test_routes_must_lead_to_declared_upstreams(tmp_path):
    upstream = '[upstreams.api]\ndiscovery = "dns:api:8000"\n'
    assert "unknown upstream 'auth' (declared: api)" in error_of(
        tmp_path, upstream + '[[routes]]\nprefix = "/auth/"\nupstream = "auth"\n'
    )
    assert "routes: none declared" in error_of(tmp_path, upstream)
    assert "prefix '/' is declared twice" in error_of(
        tmp_path, upstream + '[[routes]]\nprefix = "/"\nupstream = "api"\n' * 2
    )
    assert "routes[0].upstream: missing" in error_of(tmp_path, upstream + '[[routes]]\nprefix = "/"\n')
    no_slash = '[[routes]]\nprefix = "api"\nupstream = "api"\n'
    assert "prefix must start with '/'" in error_of(tmp_path, upstream + no_slash)


def test_unreadable_or_invalid_files_say_which_file(tmp_path):
    path = write(tmp_path, "listen = \n")
    with pytest.raises(ConfigError, match=f"{path}: not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_command_line_overrides(tmp_path):
    config = load_config(write(tmp_path, EXAMPLE))
    # Replacing a group's discovery keeps its other settings; a new group gets the defaults and, without a
    # route, no traffic.
    changed = with_overrides(
        config,
        upstreams=["api=static:127.0.0.1:8001,127.0.0.1:8002", "extra=dns:extra:80"],
        listen="127.0.0.1:7000",
        sticky=False,
    )
    assert changed.upstreams["api"].discovery == "static:127.0.0.1:8001,127.0.0.1:8002"
    assert changed.upstreams["api"].policy == "leastconn"
    assert changed.upstreams["extra"] == Upstream("extra", "dns:extra:80")
    assert with_overrides(config, upstreams=["auth=dns:a:1"]).upstreams["auth"].check_port == 9000
    assert changed.unrouted() == ["extra"]
    assert changed.listen == ("127.0.0.1", 7000) and changed.admin_listen == config.admin_listen
    assert not changed.sticky.enabled and changed.sticky.max_age == 600
    assert config.upstreams["api"].discovery == "dns:api:8000"  # the original is untouched
    # A route override replaces the route with that prefix, or adds one.
    routed = with_overrides(changed, routes=["/extra/=extra", "/=extra"])
    assert Router(routed.routes).match(b"/extra/x") == "extra" and Router(routed.routes).match(b"/") == "extra"
    assert routed.unrouted() == ["api"]  # "/auth/" still leads to auth
    # --check-port sends a group's checks to another port of each backend (its cluster master's).
    checked = with_overrides(config, upstreams=["extra=dns:extra:80"], check_ports=["api=8001", "extra=9001"])
    assert (checked.upstreams["api"].check_port, checked.upstreams["extra"].check_port) == (8001, 9001)
    assert checked.upstreams["api"].discovery == config.upstreams["api"].discovery  # the rest is kept


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"upstreams": ["api"]}, "--upstream expects NAME=SPEC"),
        ({"upstreams": ["api=nope:x"]}, "upstreams.api.discovery: discovery spec 'nope:x'"),
        ({"routes": ["/x/=missing"]}, "unknown upstream 'missing'"),
        ({"routes": ["/x/"]}, "--route expects PREFIX=UPSTREAM"),
        ({"listen": "localhost"}, "--listen: expected host:port"),
        ({"check_ports": ["nope=8001"]}, "--check-port 'nope=8001': no upstream named 'nope'"),
        ({"check_ports": ["api=health"]}, "--check-port 'api=health': the port must be a number"),
        ({"check_ports": ["api=70000"]}, "upstreams.api.check_port must be 0"),
    ],
)
def test_bad_overrides_are_explained(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("?", r"\?")):
        with_overrides(load_config(), **overrides)


def test_sticky_secret_comes_from_the_named_variable():
    sticky = load_config().sticky
    assert sticky.secret({"LB_STICKY_SECRET": "shared-by-every-balancer"}) == ("shared-by-every-balancer", True)
    first, from_env = sticky.secret({})
    assert not from_env and len(first) >= 32 and sticky.secret({})[0] != first  # random when unset


def test_sticky_secret_from_a_file_and_never_a_known_or_short_one(tmp_path):
    sticky = load_config().sticky
    secret_file = tmp_path / "LB_STICKY_SECRET"
    secret_file.write_text("a-sticky-secret-from-the-volume\n")
    assert sticky.secret({"LB_STICKY_SECRET_FILE": str(secret_file)}) == ("a-sticky-secret-from-the-volume", True)
    for value, reason in (("compose-dev-cookie-key", "known placeholder"), ("shared", "at least 16 characters")):
        with pytest.raises(ConfigError, match=f"LB_STICKY_SECRET: .*{reason}") as refused:
            sticky.secret({"LB_STICKY_SECRET": value})
        assert value not in str(refused.value)


def test_the_internal_list_replaces_the_default_and_bad_entries_are_named(tmp_path):
    base = '[upstreams.api]\ndiscovery = "static:127.0.0.1:8001"\n[[routes]]\nprefix = "/"\nupstream = "api"\n'
    config = load_config(write(tmp_path, 'internal = ["/private", "delete /things"]\n' + base))
    assert config.internal == (InternalPath("/private"), InternalPath("/things", "DELETE"))
    assert load_config(write(tmp_path, "internal = []\n" + base)).internal == ()  # nothing internal: said so
    assert load_config(write(tmp_path, base)).internal == BalancerConfig().internal  # unset: the default
    for text, message in [
        ('internal = ["GOT /x"]\n', "the method must be one of"),
        ('internal = ["metrics"]\n', "must start with '/'"),
        ('internal = "/metrics"\n', "internal must be an array of strings"),
        ('[admin]\nuser = ""\n', "admin.user"),
        ('[admin]\npassword = "x"\n', "admin.password: unknown key"),
    ]:
        assert message in error_of(tmp_path, text + base), text


def test_the_admin_password_comes_from_the_variable_or_its_file(tmp_path):
    admin = AdminSettings()
    secret = tmp_path / "secret"
    secret.write_text("from-the-file\n")
    assert admin.password({"LB_ADMIN_PASSWORD": "from-env", "LB_ADMIN_PASSWORD_FILE": str(secret)}) == "from-env"
    assert admin.password({"LB_ADMIN_PASSWORD": "", "LB_ADMIN_PASSWORD_FILE": str(secret)}) == "from-the-file"
    assert admin.password({}) is None
    secret.write_text("\n")
    with pytest.raises(ConfigError, match="the file is empty"):
        admin.password({"LB_ADMIN_PASSWORD_FILE": str(secret)})
    with pytest.raises(ConfigError, match="cannot read"):
        admin.password({"LB_ADMIN_PASSWORD_FILE": str(tmp_path / "missing")})


def test_a_generated_admin_password_is_written_private_and_never_empty(tmp_path, caplog):
    from lb.app import admin_password

    config = BalancerConfig()
    assert admin_password(config, None, {"LB_ADMIN_PASSWORD": "given"}) == "given"
    with pytest.raises(ConfigError, match="no file to write"):
        admin_password(config, None, {})  # never open
    target = tmp_path / "state" / "lb-admin.password"
    with caplog.at_level("WARNING", logger="scalecube.lb"):
        made = admin_password(config, target, {})
    assert len(made) >= 24 and target.read_text().strip() == made
    assert (target.stat().st_mode & 0o777) == 0o600
    assert str(target) in caplog.text and made not in caplog.text
    assert admin_password(config, target, {}) != made  # a new one each start, the file rewritten
    assert BalancerConfig().admin_listen == ("127.0.0.1", 8404) == load_config().admin_listen  # loopback


# -- one set of defaults, HAProxy's too --------------------------------------------------------


def _haproxy_settings() -> dict[str, str]:
    """What haproxy.cfg says about the things the Python balancer's settings say too, as written there."""
    text = runner.CONFIG.read_text()
    defaults = text.split("\ndefaults\n", 1)[1].split("\nfrontend ", 1)[0]
    said = {f"timeout {name}": value for name, value in re.findall(r"^\s*timeout ([\w-]+)\s+(\S+)", defaults, re.M)}
    resolvers = text.split("\nresolvers dns\n", 1)[1].split("\ndefaults\n", 1)[0]
    said["resolve"] = re.search(r"^\s*timeout resolve\s+(\S+)", resolvers, re.M).group(1)
    said["retries"] = re.search(r"^\s*retries (\d+)$", defaults, re.M).group(1)
    server = re.search(r"^\s*default-server (.*)$", defaults, re.M).group(1).split()
    said |= {word: server[i + 1] for i, word in enumerate(server[:-1]) if word in ("inter", "rise", "fall")}
    said["check uri"] = re.search(r"^\s*http-check send meth GET uri (\S+)", defaults, re.M).group(1)
    said["hard-stop-after"] = re.search(r"^\s*hard-stop-after (\S+)$", text, re.M).group(1)
    said["cookie"] = re.search(r"^\s*cookie (\S+) insert", text, re.M).group(1)
    said |= dict(re.findall(r'^\s*presetenv (LB_BALANCE|LB_MAXCONN_PER_CLIENT)\s+"([^"]*)"', text, re.M))
    return said


def test_the_defaults_are_the_shipped_files_and_haproxy_cfgs():
    """One definition of the balancer's defaults (lb/config.py): lb/balancer.toml restates them, and
    lb/haproxy/haproxy.cfg says the same wherever both express the same thing.

    Where they differ on purpose, nothing is compared: ``health.timeout`` 1 s is the whole check, while
    HAProxy's ``timeout check 2s`` is added to the connect (min(timeout connect, inter) = 1 s) and only
    bounds the reading; ``limits.max_connections`` (10000, answered 503 and closed beyond) is not
    HAProxy's ``maxconn`` (4000 on the frontend, 4096 in all), beyond which connections wait in the
    kernel's backlog instead."""
    shipped = load_config()
    assert (shipped.timeouts, shipped.limits, shipped.health, shipped.discovery, shipped.sticky) == (
        Timeouts(),
        Limits(),
        HealthSettings(),
        DiscoverySettings(),
        StickySettings(),
    )
    timeouts, limits, health = Timeouts(), Limits(), HealthSettings()
    ours = {
        "timeout connect": timeouts.connect,
        "timeout server": timeouts.read,
        "timeout http-keep-alive": timeouts.idle,
        "timeout http-request": timeouts.header,
        "timeout client": timeouts.body,
        "hard-stop-after": timeouts.drain,
        "retries": limits.retries,
        "LB_MAXCONN_PER_CLIENT": limits.max_connections_per_client,
        "inter": health.interval,
        "rise": health.rise,
        "fall": health.fall,
        "resolve": DiscoverySettings().interval,
        "check uri": shipped.upstreams["api"].check_path,
        "LB_BALANCE": shipped.upstreams["api"].policy,
        "cookie": StickySettings().cookie_name,
    }
    theirs = _haproxy_settings()

    def as_ours(key: str, value: str) -> object:
        expected = ours[key]
        if isinstance(expected, float):
            assert value.endswith("s") and not value.endswith("ms"), f"{key} {value}: seconds expected"
            return float(value.removesuffix("s"))
        return int(value) if isinstance(expected, int) else value

    assert {key: as_ours(key, theirs[key]) for key in ours} == ours
