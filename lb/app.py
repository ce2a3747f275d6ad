"""``scalecube lb``: build a Balancer from the config file and the command line, and run it."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from lb.admin import admin_server, create_admin_app
from lb.config import BalancerConfig, Router
from lb.discovery import discovery_from_spec
from lb.health import HealthChecker
from lb.pool import Pool
from lb.proxy import ProxyOptions
from lb.server import Balancer
from lb.stats import BalancerStats
from lb.sticky import StickyCookie

log = logging.getLogger("scalecube.lb")


def proxy_options(config: BalancerConfig) -> ProxyOptions:
    t, limits = config.timeouts, config.limits
    return ProxyOptions(
        connect_timeout=t.connect, read_timeout=t.read, idle_timeout=t.idle, header_timeout=t.header,
        max_header_bytes=limits.max_header_bytes, max_headers=limits.max_headers,
        max_connections=limits.max_connections, retries=config.retries,
    )  # fmt: skip


def sticky_cookie(config: BalancerConfig) -> StickyCookie | None:
    if not config.sticky.enabled:
        return None
    secret = os.environ.get(config.sticky.secret_env, "")
    if not secret:
        # Every balancer instance must sign alike, or a client pinned by one is lost by the next.
        log.warning("%s is not set: sticky cookies are signed with a development secret", config.sticky.secret_env)
        secret = "scalecube-insecure-development-sticky-secret"
    return StickyCookie(secret, name=config.sticky.cookie_name)


class BalancerApp:
    """The balancer plus its admin port, assembled from one ``BalancerConfig``."""

    def __init__(self, config: BalancerConfig) -> None:
        self.config = config
        self.stats = BalancerStats()
        self.pools = {name: Pool(name, policy=u.policy, rise=config.health.rise, fall=config.health.fall)
                      for name, u in config.upstreams.items()}  # fmt: skip
        self.discoveries = {name: discovery_from_spec(u.discovery, interval=config.discovery_interval)
                            for name, u in config.upstreams.items()}  # fmt: skip
        checkers = [HealthChecker(pool, path=config.health.path, interval=config.health.interval,
                                  timeout=config.health.timeout) for pool in self.pools.values()]  # fmt: skip
        background = [d.run(self.pools[name]) for name, d in self.discoveries.items()] + [c.run() for c in checkers]
        self.balancer = Balancer(
            pools=self.pools, router=Router(config.routes), options=proxy_options(config), stats=self.stats,
            sticky=sticky_cookie(config), background=background, drain_timeout=config.timeouts.drain,
        )  # fmt: skip
        self.started_at = self.balancer.started_at

    def describe_discovery(self) -> dict[str, Any]:
        return {name: d.describe() for name, d in self.discoveries.items()}

    async def run(self) -> None:
        host, port = self.config.listen
        admin_host, admin_port = self.config.admin_listen
        admin = admin_server(create_admin_app(self), admin_host, admin_port)
        await self.balancer.run_until_signalled(host, port, extra=[admin.serve()])


def run(config: BalancerConfig) -> None:
    try:
        import uvloop

        uvloop.run(BalancerApp(config).run())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(BalancerApp(config).run())
