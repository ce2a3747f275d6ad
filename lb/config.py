"""The balancer's configuration: one TOML file, plus command-line overrides.

The file declares upstream groups (name -> discovery spec and policy), routes
(path prefix -> upstream) and the settings (addresses, sticky cookie,
timeouts, limits, health checks). ``lb/balancer.toml`` is the default and
documents every key. Errors name the bad key.

``Router`` is here too: it turns the routes into the per-request look-up.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import unquote_to_bytes

from kit import secrets as secret_values
from lb.discovery import parse_address, parse_discovery_spec
from lb.health import DEFAULT_CHECK_PATH
from lb.pool import DEFAULT_PANIC_BELOW, DEFAULT_POLICY, POLICIES, Address

DEFAULT_CONFIG = Path(__file__).with_name("balancer.toml")
UPSTREAM_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # it names metrics labels and admin rows


class ConfigError(ValueError):
    """The configuration is wrong; the message names the key and what it should be."""


# -- the sections ----------------------------------------------------------------


def _positive(section: str, obj: object, names: Iterable[str], what: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not value > 0:
            raise ConfigError(f"{section}.{name} must be a positive {what}, got {value!r}")


@dataclass(frozen=True)
class Timeouts:
    """Seconds."""

    connect: float = 1.0  # to open a connection to a backend
    read: float = 10.0  # a backend's response head, and each silence inside its body
    idle: float = 10.0  # a client keep-alive connection with no request in progress
    header: float = 5.0  # a client's whole request head, and a new connection's first byte (slow-loris guard)
    body: float = 30.0  # each silence inside a client's request body: a 408, the client's fault, not the backend's
    drain: float = 30.0  # on SIGTERM: how long requests in flight may finish

    def __post_init__(self) -> None:
        _positive("timeouts", self, ("connect", "read", "idle", "header", "body", "drain"), "number of seconds")


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 16384  # request line + headers; more is 431
    max_headers: int = 100  # header count; more is 431
    max_connections: int = 10000  # open client connections; more are closed at once
    max_connections_per_client: int = 500  # open connections from one client address; more get a 429 (haproxy.cfg too)
    retries: int = 3  # other backends tried after one fails before any response byte

    def __post_init__(self) -> None:
        _positive(
            "limits",
            self,
            ("max_header_bytes", "max_headers", "max_connections", "max_connections_per_client"),
            "whole number",
        )
        if self.retries < 0:
            raise ConfigError(f"limits.retries must be 0 or more, got {self.retries}")


@dataclass(frozen=True)
class StickySettings:
    enabled: bool = False
    cookie_name: str = "SCALECUBE_LB"
    secret_env: str = "LB_STICKY_SECRET"  # the environment variable holding the signing secret
    max_age: int = 0  # seconds; 0 = a session cookie

    def __post_init__(self) -> None:
        if self.max_age < 0:
            raise ConfigError(f"sticky.max_age must be 0 (session cookie) or more seconds, got {self.max_age}")
        if not self.cookie_name or not self.secret_env:
            raise ConfigError("sticky.cookie_name and sticky.secret_env must not be empty")

    def secret(self, environ: Mapping[str, str] = os.environ) -> tuple[str, bool]:
        """The signing secret and whether it came from the environment.

        Read from the variable or, unset, from the file ``<variable>_FILE`` names (compose's secrets
        volume). Unset, a random one is made: cookies then hold only for this process, which is
        fine for one balancer; replicas or restarts that must honour each other's
        cookies share the variable. A known placeholder or a short value is a ``ConfigError``."""
        try:
            value = secret_values.from_environment(self.secret_env, environ)
        except secret_values.SecretError as exc:
            raise ConfigError(str(exc)) from None
        return (value, True) if value else (secret_values.generate(), False)


@dataclass(frozen=True)
class AdminSettings:
    """Who may read the admin port (HTTP basic auth): every page but ``/healthz``."""

    user: str = "admin"
    password_env: str = "LB_ADMIN_PASSWORD"  # the variable holding the password; NAME_FILE: a file holding it

    def __post_init__(self) -> None:
        if not self.user or ":" in self.user or not self.password_env:
            raise ConfigError("admin.user (no ':') and admin.password_env must not be empty")

    def password(self, environ: Mapping[str, str] = os.environ) -> str | None:
        """The password from ``password_env``, else from the file ``password_env``_FILE names; None if neither."""
        value = environ.get(self.password_env)
        if value:
            return value
        path = environ.get(self.password_env + "_FILE")
        if not path:
            return None
        try:
            value = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{self.password_env}_FILE={path}: cannot read: {exc.strerror or exc}") from None
        if not value:
            raise ConfigError(f"{self.password_env}_FILE={path}: the file is empty")
        return value


@dataclass(frozen=True)
class HealthSettings:
    """How often and how patiently every group is checked; *where* is each group's (``Upstream.check_*``)."""

    interval: float = 1.0
    timeout: float = 1.0
    rise: int = 2  # passes in a row that bring an ejected backend back
    fall: int = 2  # failures in a row that eject a healthy one

    def __post_init__(self) -> None:
        _positive("health", self, ("interval", "timeout", "rise", "fall"), "number")


@dataclass(frozen=True)
class DiscoverySettings:
    interval: float = 1.0  # dns: seconds between look-ups

    def __post_init__(self) -> None:
        _positive("discovery", self, ("interval",), "number of seconds")


@dataclass(frozen=True)
class Upstream:
    name: str
    discovery: str  # a spec: static:HOST:PORT,... | dns:NAME:PORT[@NS:PORT] | docker:SERVICE:PORT
    policy: str = DEFAULT_POLICY
    panic_below: float = DEFAULT_PANIC_BELOW  # share of healthy backends under which the group routes to all
    check_path: str = DEFAULT_CHECK_PATH  # what the active checks ask each backend
    check_port: int = 0  # 0: each backend's own port; else that port on the backend's host

    def __post_init__(self) -> None:
        where = f"upstreams.{self.name}"
        if not UPSTREAM_NAME.match(self.name):
            raise ConfigError(f"upstream name {self.name!r}: use letters, digits, '-' and '_'")
        if self.policy not in POLICIES:
            raise ConfigError(f"{where}.policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        if not 0.0 <= self.panic_below <= 1.0:
            raise ConfigError(f"{where}.panic_below must be a share from 0 to 1, got {self.panic_below!r}")
        if not self.check_path.startswith("/"):
            raise ConfigError(f"{where}.check_path must start with '/', got {self.check_path!r}")
        if not 0 <= self.check_port < 65536:
            raise ConfigError(f"{where}.check_port must be 0 (the backend's port) or a port, got {self.check_port}")
        try:
            parse_discovery_spec(self.discovery)
        except ValueError as exc:
            raise ConfigError(f"{where}.discovery: {exc}") from None


@dataclass(frozen=True)
class Route:
    prefix: str
    upstream: str

    def __post_init__(self) -> None:
        if not self.prefix.startswith("/"):
            raise ConfigError(f"routes: prefix must start with '/', got {self.prefix!r}")


# What the public port refuses (404 not_found) though a backend serves it: each service's own
# machinery, and what only the stack's own parts (Prometheus, the api's ROUTER_URL calls, an operator)
# may ask. "PATH" is refused for every method, "METHOD PATH" for that method only; PATH matches as a
# route prefix does (``Router``): a whole segment (/docs takes /docs, /docs/x and /docs?x, not
# /docsx), or anything below it when it ends in "/". Matched on the percent-decoded path, so
# /%6Detrics is /metrics. The services serve all of these on their own ports, inside the network.
# lb/haproxy/haproxy.cfg mirrors this list (acl internal*, a test keeps them equal).
DEFAULT_INTERNAL = (
    "/metrics",  # Prometheus scrapes every replica directly
    "/docs",
    "/redoc",
    "/openapi.json",  # FastAPI's API docs: a map of every route
    "/shards",  # the router's shard map, with the shards' internal URLs
    "/auth/users/count",  # how many accounts exist
    "POST /announcements",  # a message to every worker of every container; GET /announcements/last stays public
    "/admin",  # anything admin (the shards' moves live under /admin)
)
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")


@dataclass(frozen=True)
class InternalPath:
    """One entry of the ``internal`` list: a path (prefix) and the method it is refused for (None: every one)."""

    path: str
    method: str | None = None

    @classmethod
    def parse(cls, text: str) -> InternalPath:
        method, sep, path = text.strip().rpartition(" ")
        method = method.strip().upper() if sep else None
        if method is not None and method not in METHODS:
            raise ConfigError(f"internal: {text!r}: the method must be one of {', '.join(METHODS)}")
        if not path.startswith("/"):
            raise ConfigError(f"internal: {text!r}: the path must start with '/'")
        return cls(path, method)

    def __str__(self) -> str:
        return f"{self.method} {self.path}" if self.method else self.path


@dataclass(frozen=True)
class BalancerConfig:
    upstreams: dict[str, Upstream] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    listen: Address = ("0.0.0.0", 8080)
    # Loopback: the admin port is for this host (`scalecube status`, an operator); compose and k8s,
    # where something outside the container reads it, say 0.0.0.0 themselves.
    admin_listen: Address = ("127.0.0.1", 8404)
    internal: tuple[InternalPath, ...] = tuple(InternalPath.parse(text) for text in DEFAULT_INTERNAL)
    admin: AdminSettings = AdminSettings()
    timeouts: Timeouts = Timeouts()
    limits: Limits = Limits()
    sticky: StickySettings = StickySettings()
    health: HealthSettings = HealthSettings()
    discovery: DiscoverySettings = DiscoverySettings()

    def validate(self) -> BalancerConfig:
        if not self.routes:
            raise ConfigError("routes: none declared, so nothing would be served (add [[routes]] prefix/upstream)")
        seen: set[str] = set()
        for route in self.routes:
            if route.upstream not in self.upstreams:
                known = ", ".join(sorted(self.upstreams)) or "none"
                raise ConfigError(
                    f"routes: prefix {route.prefix!r} goes to unknown upstream {route.upstream!r} (declared: {known})"
                )
            if route.prefix in seen:
                raise ConfigError(f"routes: prefix {route.prefix!r} is declared twice")
            seen.add(route.prefix)
        return self

    def unrouted(self) -> list[str]:
        """Upstreams no route leads to: they get no traffic (worth a warning at start)."""
        routed = {route.upstream for route in self.routes}
        return sorted(name for name in self.upstreams if name not in routed)


# -- reading the file ------------------------------------------------------------

_SECTIONS = {
    "timeouts": Timeouts,
    "limits": Limits,
    "sticky": StickySettings,
    "health": HealthSettings,
    "discovery": DiscoverySettings,
    "admin": AdminSettings,
}
_TOP_LEVEL = ("listen", "admin_listen", "internal", "upstreams", "routes", *_SECTIONS)


def _typed(value: Any, expected: str, where: str) -> Any:
    """TOML already has types; check they are the ones we want (an int is fine where a float is)."""
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, str),
    }.get(expected)
    if not ok:
        wanted = {"bool": "true or false", "int": "a whole number", "float": "a number", "str": "a string"}[expected]
        raise ConfigError(f"{where} must be {wanted}, got {value!r}")
    return float(value) if expected == "float" else value


def _table(raw: Any, where: str, allowed: Iterable[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    allowed = list(allowed)
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{where + '.' if where else ''}{key}: unknown key (known: {', '.join(allowed)})")
    return raw


def _build(cls: type, raw: Any, where: str, **extra: Any) -> Any:
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls) if f.name not in extra]
    table = _table(raw, where, names)
    values = {key: _typed(value, hints[key].__name__, f"{where}.{key}") for key, value in table.items()}
    return cls(**values, **extra)


def _address(value: Any, where: str) -> Address:
    try:
        return parse_address(_typed(value, "str", where), where)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def config_from_dict(raw: dict[str, Any]) -> BalancerConfig:
    _table(raw, "", _TOP_LEVEL)
    upstreams = {}
    declared = raw.get("upstreams", {})
    if not isinstance(declared, dict):
        raise ConfigError("upstreams must be tables: [upstreams.NAME]")
    for name, table in declared.items():
        if not isinstance(table, dict) or "discovery" not in table:
            raise ConfigError(f'upstreams.{name}.discovery: missing (e.g. discovery = "dns:{name}:8000")')
        upstreams[name] = _build(Upstream, table, f"upstreams.{name}", name=name)
    routes_raw = raw.get("routes", [])
    if not isinstance(routes_raw, list):
        raise ConfigError("routes must be an array of tables ([[routes]])")
    routes = []
    for i, table in enumerate(routes_raw):
        missing = [key for key in ("prefix", "upstream") if key not in (table if isinstance(table, dict) else {})]
        if missing:
            raise ConfigError(f"routes[{i}].{missing[0]}: missing")
        routes.append(_build(Route, table, f"routes[{i}]"))
    settings: dict[str, Any] = {name: _build(cls, raw[name], name) for name, cls in _SECTIONS.items() if name in raw}
    settings |= {key: _address(raw[key], key) for key in ("listen", "admin_listen") if key in raw}
    if "internal" in raw:
        entries = raw["internal"]
        if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
            raise ConfigError('internal must be an array of strings, e.g. ["/metrics", "POST /announcements"]')
        settings["internal"] = tuple(InternalPath.parse(entry) for entry in entries)
    return BalancerConfig(upstreams=upstreams, routes=tuple(routes), **settings).validate()


def load_config(path: Path | str | None = None) -> BalancerConfig:
    """Read and check a config file (the shipped ``lb/balancer.toml`` when ``path`` is None)."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return config_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# -- command-line overrides ------------------------------------------------------


def _pair(text: str, option: str, example: str) -> tuple[str, str]:
    left, sep, right = text.partition("=")
    if not sep or not left.strip() or not right.strip():
        raise ConfigError(f"{option} expects {example}, got {text!r}")
    return left.strip(), right.strip()


def with_overrides(
    config: BalancerConfig,
    *,
    upstreams: Iterable[str] = (),
    routes: Iterable[str] = (),
    listen: str | None = None,
    admin_listen: str | None = None,
    sticky: bool | None = None,
    check_ports: Iterable[str] = (),
) -> BalancerConfig:
    """Apply ``--upstream NAME=SPEC`` (replaces that group's discovery, keeping its other settings, or adds
    a group with the defaults), ``--check-port NAME=PORT`` (where that group's checks go: each backend's
    cluster master), ``--route PREFIX=UPSTREAM`` (replaces or adds a route) and the address/sticky flags."""
    groups = dict(config.upstreams)
    for text in upstreams:
        name, spec = _pair(text, "--upstream", "NAME=SPEC, e.g. api=static:127.0.0.1:8001")
        old = groups.get(name)
        groups[name] = replace(old, discovery=spec) if old else Upstream(name, spec)
    for text in check_ports:
        name, port = _pair(text, "--check-port", "NAME=PORT, e.g. api=8001")
        if name not in groups:
            raise ConfigError(f"--check-port {text!r}: no upstream named {name!r}")
        if not port.isdigit():
            raise ConfigError(f"--check-port {text!r}: the port must be a number")
        groups[name] = replace(groups[name], check_port=int(port))
    table = {route.prefix: route for route in config.routes}
    for text in routes:
        prefix, upstream = _pair(text, "--route", "PREFIX=UPSTREAM, e.g. /auth/=auth")
        table[prefix] = Route(prefix, upstream)
    changes: dict[str, Any] = {"upstreams": groups, "routes": tuple(table.values())}
    if listen is not None:
        changes["listen"] = _address(listen, "--listen")
    if admin_listen is not None:
        changes["admin_listen"] = _address(admin_listen, "--admin-listen")
    if sticky is not None:
        changes["sticky"] = replace(config.sticky, enabled=sticky)
    return replace(config, **changes).validate()


# -- routing (per request) -------------------------------------------------------


def _segment_match(path: bytes, prefix: bytes) -> bool:
    """``prefix`` matches ``path`` as a route does: below it when it ends in '/', else a whole segment."""
    if not path.startswith(prefix):
        return False
    return prefix.endswith(b"/") or len(path) == len(prefix) or path[len(prefix)] in b"/?"


class InternalPaths:
    """The ``internal`` list as a per-request check: is this request refused on the public port?"""

    def __init__(self, entries: Iterable[InternalPath]) -> None:
        self._entries = tuple(
            (entry.path.encode(), entry.method.encode() if entry.method else None) for entry in entries
        )

    def refuses(self, method: bytes, target: bytes) -> bool:
        if not self._entries:
            return False
        path = target.partition(b"?")[0]
        if not path.startswith(b"/"):  # absolute-form (http://host/path): its path is what a backend routes
            _, sep, rest = path.partition(b"://")
            path = b"/" + rest.partition(b"/")[2] if sep else path
        if b"%" in path:
            path = unquote_to_bytes(path)  # what the backend routes on (uvicorn decodes %XX)
        return any(
            _segment_match(path, prefix) and (wanted is None or wanted == method) for prefix, wanted in self._entries
        )


class Router:
    """Path prefix -> upstream name; the longest matching prefix wins, tried longest first: a handful
    of ``startswith`` calls per request.

    A prefix ending in ``/`` matches anything below it (``/auth/`` takes ``/auth/login``, not
    ``/auth``). One that does not is a whole path segment: ``/users`` takes ``/users``, ``/users/42``
    and ``/users?page=2``, but not ``/usersettings`` — what HAProxy's ``path /users`` + ``path_beg /users/`` do.
    """

    def __init__(self, routes: Iterable[Route]) -> None:
        table = sorted(((r.prefix.encode(), r.upstream) for r in routes), key=lambda item: len(item[0]), reverse=True)
        self._table = tuple((prefix, len(prefix), not prefix.endswith(b"/"), upstream) for prefix, upstream in table)

    def match(self, path: bytes) -> str | None:
        for prefix, size, segment, upstream in self._table:
            if path.startswith(prefix) and (not segment or len(path) == size or path[size] in b"/?"):
                return upstream
        return None
