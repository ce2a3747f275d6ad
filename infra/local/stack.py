"""The local stack: Redis, the api (one cluster, or N replicas behind a balancer) as processes here, no Docker;
with ``services="all"`` (the default) also auth, the shard router and two shards, each with its own Redis.

``build_components`` says what the stack is made of, in start order; ``LocalStack``
starts them one at a time (each must be ready before the next starts), watches
them, and stops them in reverse order. Adding a component — another cluster, a
shard's Redis — is one more entry in ``build_components``.

With ``--api N`` and a balancer it is laid out the way compose runs it: each replica
is a cluster on its own loopback address (127.0.0.2, .3, ...; one "container" each),
all on the same port; a loopback DNS server names them all ``api``; the balancer
(HAProxy or the Python one) finds them through that DNS, exactly as it finds
containers through Docker's, and listens on the stack's port.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.local.components import (
    ClusterComponent,
    Component,
    DnsComponent,
    HaproxyComponent,
    PythonLbComponent,
    RedisComponent,
    SentinelComponent,
    SentinelNodeComponent,
)
from infra.local.errors import StackError, StartAborted, StartFailed
from infra.local.pids import log_tail
from infra.local.ports import REPLICA_HOSTS, free_port, shared_free_port
from infra.local.sentinel import MASTER_NAME, SENTINELS
from kit import secrets as secret_values
from lb.haproxy import runner

log = logging.getLogger("scalecube.stack")

API_APP = "services.api.app:app"
API_SERVICE = "api"  # the DNS name of the replicas, as compose's service name
READY_TIMEOUT = 60.0  # per component: a cold interpreter importing FastAPI on a busy 2-core box is slow
POLL_INTERVAL = 0.1
BALANCERS = ("haproxy", "python")
NO_BALANCER = "none"
MAX_REPLICAS = len(REPLICA_HOSTS)
# `--services`: all = the api plus auth, the router and two shards (each with its Redis); api = the api alone.
SERVICES = ("all", "api")
AUTH_APP = "services.auth.app:app"
ROUTER_APP = "services.router.app:app"
SHARD_APP = "services.shard.app:app"
SHARDS = ("shard-a", "shard-b")  # the names the packaged shard map uses
# Behind a balancer, auth and the router are "containers" of their own, named in the DNS zone like compose's
# services (the api replicas use 127.0.0.2-.9). The shards are internal: only the router calls them.
AUTH_HOST = "127.0.0.10"
ROUTER_HOST = "127.0.0.11"
# One worker per service cluster (the api takes --workers): six clusters on a 2-core laptop stay responsive.
SERVICE_WORKERS = "1"
# The Python balancer's routes to auth and the router, as haproxy.cfg has them (prefix -> upstream;
# the longest prefix wins): /users/count stays the api's — the guides' broadcast demo.
SERVICE_ROUTES = (("/auth/", "auth"), ("/users", "router"), ("/shards", "router"), ("/users/count", "api"))
RERUN = "`scalecube up` again (it was free when picked)"  # the services' ports are picked free, not options
# `--redis`: the sessions/cache/pub-sub Redis as one server (the default: lighter on a laptop, and what every
# scaling demo measures), or a primary + a replica + three Sentinels that fail over (infra/local/sentinel.py).
REDIS_TOPOLOGIES = ("single", "sentinel")


@dataclass(frozen=True)
class StackOptions:
    state_dir: Path
    port: int = 8080  # the api's (one replica, no balancer) or the balancer's
    workers: str = "auto"  # per replica: 'auto' or a count, passed on to `scalecube serve`
    policy: str = "rr"
    session_backend: str = "redis"
    redis_port: int = 0  # 0 = a free port
    host: str = "127.0.0.1"
    api: int = 1  # replicas
    lb: str = NO_BALANCER  # haproxy | python | none, as settled by ``choose_balancer``
    sticky: bool = False  # the balancer pins each client to a replica with a cookie
    stats_port: int = 8404  # the balancer's stats page (HAProxy) / admin page (Python)
    api_port: int = 0  # the one port every replica listens on; 0 = one free on all their addresses
    dns_port: int = 0  # UDP; 0 = a free port
    services: str = "all"  # all | api: see SERVICES
    redis: str = "single"  # single | sentinel: see REDIS_TOPOLOGIES


class UsageError(StackError):
    """Options that cannot work together: refused before anything starts."""

    exit_code = 2


def choose_balancer(api: int, lb: str | None, sticky: bool) -> str:
    """The balancer for ``api`` replicas: ``lb`` if given, else none for one replica, else HAProxy when
    installed, else the Python one. Raises ``UsageError`` for what cannot work (HAProxy missing included)."""
    if not 1 <= api <= MAX_REPLICAS:
        raise UsageError(
            f"--api must be 1 to {MAX_REPLICAS}, got {api}: each replica needs its own loopback "
            f"address ({REPLICA_HOSTS[0]}-{REPLICA_HOSTS[-1]})"
        )
    if lb is None:
        lb = NO_BALANCER if api == 1 else ("haproxy" if haproxy_installed() else "python")
    if lb not in (*BALANCERS, NO_BALANCER):
        raise UsageError(f"--lb must be python, haproxy or none, got {lb!r}")
    if lb == NO_BALANCER and sticky:
        raise UsageError("--sticky needs a balancer (the cookie is the balancer's): add --lb python or --lb haproxy")
    if lb == NO_BALANCER and api > 1:
        raise UsageError(
            f"--api {api} needs a balancer in front of the replicas: --lb python or --lb haproxy "
            f"(--lb none runs one api directly on --port)"
        )
    if lb == "haproxy":
        try:
            runner.find_haproxy()
        except runner.HaproxyNotFound as exc:
            raise UsageError(f"--lb haproxy: {exc}; or use --lb python") from None
    return lb


def haproxy_installed() -> bool:
    """Is there an ``haproxy`` to run (``lb.haproxy.runner.find_haproxy``)? The stack's and the demos' default."""
    try:
        runner.find_haproxy()
    except runner.HaproxyNotFound:
        return False
    return True


# The secrets the local stack's components share: made once into the state dir, read by every component.
STACK_SECRETS = ("SESSION_SECRET", "LB_COOKIE_KEY", "LB_STICKY_SECRET")
SECRETS_DIR = "secrets"  # in the state dir: one file per secret, mode 0600, the folder 0700


def stack_secrets(state_dir: Path) -> dict[str, str]:
    """The stack's secrets: each from the environment (NAME or NAME_FILE: it wins, checked), else the one
    kept in ``state_dir/secrets/NAME`` by an earlier ``scalecube up``, else a new random one kept there.
    Every api replica gets the same SESSION_SECRET, every balancer the same cookie key."""
    directory = state_dir / SECRETS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    try:
        paths = secret_values.write_missing(directory, STACK_SECRETS)
    except secret_values.SecretError as exc:
        raise UsageError(str(exc)) from None
    return {name: secret_values.read_file(name, path) for name, path in paths.items()}


@dataclass
class Services:
    """Auth, the router and the shards with their Redis servers: the components, and what the api and the
    balancer need to know about them."""

    components: list[Component]
    auth: ClusterComponent
    router: ClusterComponent


def build_services(options: StackOptions, *, behind_balancer: bool) -> Services:
    """auth (+ auth-redis), the shards (each + its Redis), the router (+ directory-redis), in start order.

    Behind a balancer auth and the router get their own loopback addresses (named ``auth`` and ``router``
    by the stack's DNS); without one, free ports on ``options.host``. The shards always take free ports
    on ``options.host``: nothing but the router reaches them.
    """
    state_dir, host = options.state_dir, options.host
    common = {"SCALECUBE_RUN_DIR": str(state_dir)}

    def redis(name: str) -> RedisComponent:
        return RedisComponent(state_dir / name, host=host, name=name, port_option=RERUN)

    def cluster(name: str, app: str, cluster_host: str, env: dict[str, str]) -> ClusterComponent:
        return ClusterComponent(
            name,
            app,
            port=free_port(cluster_host),
            workers=SERVICE_WORKERS,
            policy=options.policy,
            state_dir=state_dir,
            host=cluster_host,
            env={**common, **env},
            port_option=RERUN,
            start_with_previous=True,
            health_port=free_port(cluster_host),
        )

    auth_redis = redis("auth-redis")
    auth = cluster(
        "auth",
        AUTH_APP,
        AUTH_HOST if behind_balancer else host,
        {
            # Limits at their defaults: they count failed logins only, so load tests that log in never meet them.
            # X-Forwarded-For is trusted from FORWARDED_ALLOW_IPS's default, 127.0.0.1 and ::1: the balancers and
            # the api connect to auth from 127.0.0.1 (the kernel's source for any 127.0.0.N), while a client that
            # connects from another loopback address is counted by that address, whatever it claims.
            "AUTH_REDIS_URL": auth_redis.url,
        },
    )
    components: list[Component] = [auth_redis, auth]
    shard_urls = []
    for name in SHARDS:
        shard_redis = redis(f"{name}-redis")
        shard = cluster(name, SHARD_APP, host, {"SHARD_NAME": name, "SHARD_REDIS_URL": shard_redis.url})
        components += [shard_redis, shard]
        shard_urls.append(f"{name}={shard.url}")
    directory_redis = redis("directory-redis")
    router = cluster(
        "router",
        ROUTER_APP,
        ROUTER_HOST if behind_balancer else host,
        {
            "ROUTER_REDIS_URL": directory_redis.url,
            "SHARD_URLS": ",".join(shard_urls),
        },
    )
    components += [directory_redis, router]
    return Services(components, auth, router)


def build_sessions_redis(options: StackOptions) -> tuple[list[Component], dict[str, str]]:
    """The sessions/cache/pub-sub Redis (``redis``) in ``options.redis``'s topology, and the api's environment
    for it. ``sentinel``: ``redis`` (the first primary), ``redis-replica`` and ``redis-sentinel-1..3``."""
    host, state_dir = options.host, options.state_dir
    if options.redis == "single":
        redis = RedisComponent(state_dir / "redis", port=options.redis_port, host=host)
        return [redis], {"REDIS_URL": redis.url}
    if options.redis not in REDIS_TOPOLOGIES:
        raise UsageError(f"--redis must be {' or '.join(REDIS_TOPOLOGIES)}, got {options.redis!r}")
    primary_port = options.redis_port or free_port(host)
    sentinel_ports = [free_port(host) for _ in range(SENTINELS)]
    sentinels = [(host, port) for port in sentinel_ports]
    primary = SentinelNodeComponent(state_dir / "redis", sentinels=sentinels, port=primary_port, host=host)
    replica = SentinelNodeComponent(
        state_dir / "redis-replica",
        sentinels=sentinels,
        replicaof=(host, primary_port),
        host=host,
        name="redis-replica",
        port_option=RERUN,
    )
    watchers = [
        SentinelComponent(
            state_dir / f"redis-sentinel-{n}",
            master=(host, primary_port),
            port=port,
            host=host,
            name=f"redis-sentinel-{n}",
        )
        for n, port in enumerate(sentinel_ports, start=1)
    ]
    env = {
        "REDIS_URL": primary.url,  # its db number; the primary itself is whichever the Sentinels name
        "REDIS_SENTINELS": ",".join(f"{h}:{p}" for h, p in sentinels),
        "REDIS_SENTINEL_MASTER": MASTER_NAME,
    }
    return [primary, replica, *watchers], env


def build_components(options: StackOptions) -> list[Component]:
    """What the stack is made of, in start order (it stops in reverse)."""
    redis_components, redis_env = build_sessions_redis(options)
    shared = stack_secrets(options.state_dir)
    behind_balancer = options.lb != NO_BALANCER
    services = build_services(options, behind_balancer=behind_balancer) if options.services == "all" else None
    env = {
        **redis_env,
        "SESSION_BACKEND": options.session_backend,
        "SESSION_SECRET": shared["SESSION_SECRET"],  # one for every replica: any of them can read any session cookie
        "SCALECUBE_RUN_DIR": str(options.state_dir),
        # With the services, logins are checked by auth and /users/count is the router's users count.
        **({"AUTH_URL": services.auth.url, "ROUTER_URL": services.router.url} if services else {}),
    }
    before = [*redis_components, *(services.components if services else [])]
    if not behind_balancer:
        api = ClusterComponent(
            "api",
            API_APP,
            port=options.port,
            workers=options.workers,
            policy=options.policy,
            state_dir=options.state_dir,
            host=options.host,
            env=env,
            start_with_previous=True,
            health_port=free_port(options.host),
        )
        return [*before, api]
    hosts = REPLICA_HOSTS[: options.api]
    api_port = options.api_port or shared_free_port(hosts)
    health_port = shared_free_port(hosts)  # every replica's master answers probes here (the balancers check it)
    records = {API_SERVICE: list(hosts)}
    if services:
        records |= {"auth": [services.auth.host], "router": [services.router.host]}
    dns = DnsComponent(options.state_dir, records, port=options.dns_port, host=options.host)
    replicas: list[Component] = [
        ClusterComponent(
            f"api-{number}",
            API_APP,
            port=api_port,
            workers=options.workers,
            policy=options.policy,
            state_dir=options.state_dir,
            host=host,
            env=env,
            port_option="--api-port",
            start_with_previous=True,
            health_port=health_port,
        )
        for number, host in enumerate(hosts, start=1)
    ]
    return [*before, dns, *replicas, build_balancer(options, dns, api_port, health_port, services, shared)]


def build_balancer(
    options: StackOptions,
    dns: DnsComponent,
    api_port: int,
    health_port: int,
    services: Services | None = None,
    shared: dict[str, str] | None = None,
) -> Component:
    """The balancer on the stack's port, finding the replicas as ``api``:``api_port`` through ``dns``
    (and, with ``services``, auth and the router as ``auth`` and ``router``, routed at ``/auth/`` and
    ``/users``); ready once it sees all the api replicas up."""
    listen, stats = f"{options.host}:{options.port}", f"{options.host}:{options.stats_port}"
    shared = shared if shared is not None else stack_secrets(options.state_dir)
    if options.lb == "haproxy":
        routed = (
            {}
            if services is None
            else {
                "auth_service": "auth",
                "auth_port": services.auth.port,
                "auth_health_port": services.auth.health_port,
                "router_service": "router",
                "router_port": services.router.port,
                "router_health_port": services.router.health_port,
            }
        )
        settings = runner.HaproxySettings(
            bind=listen,
            stats_bind=stats,
            dns=dns.address,
            api_service=API_SERVICE,
            api_port=api_port,
            api_health_port=health_port,
            sticky=options.sticky,
            cookie_key=shared["LB_COOKIE_KEY"],
            **routed,
        )
        return HaproxyComponent(
            settings, options.state_dir, backends=options.api, port_option=("--port", "--stats-port")
        )
    upstreams, routes, check_ports = {}, {}, {"api": health_port}
    if services is not None:
        upstreams = {
            "auth": f"dns:auth:{services.auth.port}@{dns.address}",
            "router": f"dns:router:{services.router.port}@{dns.address}",
        }
        routes = dict(SERVICE_ROUTES)
        check_ports |= {"auth": services.auth.health_port, "router": services.router.health_port}
    return PythonLbComponent(
        options.state_dir,
        listen=listen,
        admin=stats,
        upstream=f"dns:{API_SERVICE}:{api_port}@{dns.address}",
        sticky=options.sticky,
        backends=options.api,
        port_option=("--port", "--stats-port"),
        env={"LB_STICKY_SECRET": shared["LB_STICKY_SECRET"]},
        upstreams=upstreams,
        routes=routes,
        check_ports=check_ports,
    )


class LocalStack:
    def __init__(self, components: list[Component], *, ready_timeout: float = READY_TIMEOUT) -> None:
        self.components = components
        self.ready_timeout = ready_timeout
        self._started: list[Component] = []

    @classmethod
    def from_options(cls, options: StackOptions) -> LocalStack:
        return cls(build_components(options))

    def check(self) -> None:
        """Fail before starting anything if some component cannot start (e.g. its port is taken)."""
        for component in self.components:
            component.check()

    def start(
        self, on_launched: Callable[[Component], None] = lambda _: None, should_stop: Callable[[], bool] = lambda: False
    ) -> None:
        """Start every component in order, each ready before the next — except that one marked
        ``start_with_previous`` is launched while those before it are still getting ready (each is
        waited for before the next unmarked one, and at the end); on any failure stop them all.

        ``on_launched`` runs as soon as a process exists (before it is ready), so
        the caller can record its pid; ``should_stop`` aborts a start in progress.
        """
        try:
            pending: list[Component] = []  # launched, not yet seen ready
            for component in self.components:
                if should_stop():
                    raise StartAborted()
                if not getattr(component, "start_with_previous", False):
                    for earlier in pending:  # it may need any of them
                        self._wait_ready(earlier, should_stop)
                    pending = []
                self._started.append(component)
                self._launch(component)
                on_launched(component)
                pending.append(component)
            for component in pending:
                self._wait_ready(component, should_stop)
        except BaseException:
            self.stop()
            raise

    def exited(self) -> tuple[Component, int] | None:
        """The first started component whose process has exited, with its exit code."""
        for component in self._started:
            code = component.poll()
            if code is not None:
                return component, code
        return None

    def stop(self) -> list[Component]:
        """Stop what was started, last first (the api drains while Redis still serves it)."""
        stopped = []
        while self._started:
            component = self._started.pop()
            try:
                component.stop()
            except Exception:  # keep going: one stubborn component must not leave the rest running
                log.exception("stopping %s failed", component.name)
            stopped.append(component)
        return stopped

    def describe(self) -> list[dict[str, Any]]:
        return [component.describe() for component in self._started]

    def _launch(self, component: Component) -> None:
        try:
            component.start()
        except (OSError, RuntimeError) as exc:
            raise StartFailed(component.name, str(exc)) from None

    def _wait_ready(self, component: Component, should_stop: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while not component.ready():
            exited = self.exited()  # this one, or one it depends on (the api never gets ready without Redis)
            if exited is not None:
                dead, code = exited
                raise StartFailed(
                    dead.name,
                    f"exited ({describe_exit(code)}) before the stack was ready",
                    log_tail(dead.log_path),
                    dead.log_path,
                )
            if should_stop():
                raise StartAborted()
            if time.monotonic() >= deadline:
                raise StartFailed(
                    component.name,
                    f"not ready after {self.ready_timeout:g}s",
                    log_tail(component.log_path),
                    component.log_path,
                )
            time.sleep(POLL_INTERVAL)


def describe_exit(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
