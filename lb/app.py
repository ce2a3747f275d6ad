"""``scalecube lb``: build a Balancer from the config file and the command line, and run it."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from lb.admin import admin_server, create_admin_app, write_password_file
from lb.config import BalancerConfig, ConfigError, InternalPaths, Router
from lb.discovery import discovery_from_spec
from lb.health import HealthChecker
from lb.pool import Pool
from lb.server import Balancer
from lb.stats import BalancerState, BalancerStats
from lb.sticky import StickyCookie

log = logging.getLogger("scalecube.lb")


def sticky_cookie(config: BalancerConfig) -> StickyCookie | None:
    if not config.sticky.enabled:
        return None
    secret, from_env = config.sticky.secret()
    if not from_env:
        # Fine for one balancer; replicas must share it or a client pinned by one is lost by another.
        log.warning("%s is not set: sticky cookies hold only for this balancer process", config.sticky.secret_env)
    return StickyCookie(secret, name=config.sticky.cookie_name, max_age=config.sticky.max_age or None)


def admin_password(config: BalancerConfig, generated_file: Path | None, environ: Mapping[str, str] = os.environ) -> str:
    """The admin port's password: the environment's (``admin.password_env``, or its ``_FILE``); else a random
    one, written to ``generated_file`` (mode 0600, readable by this user only) and its place logged, so
    whoever started the balancer can read it. Never none: the admin port is never open."""
    password = config.admin.password(environ)
    if password:
        return password
    if generated_file is None:
        raise ConfigError(
            f"{config.admin.password_env} is not set and no file to write a generated admin "
            "password to was given (--admin-password-file)"
        )
    password = secrets.token_urlsafe(24)
    try:
        write_password_file(generated_file, password)
    except OSError as exc:
        raise ConfigError(
            f"{config.admin.password_env} is not set and the generated admin password cannot be "
            f"written to {generated_file}: {exc.strerror or exc}"
        ) from None
    log.warning(
        "%s is not set: the admin port's password (user %s) was generated into %s",
        config.admin.password_env,
        config.admin.user,
        generated_file,
    )
    return password


def with_cli_settings(
    config: BalancerConfig, *, policy: str | None = None, **settings: float | int | None
) -> BalancerConfig:
    """Apply the numeric flags (``--read-timeout 5`` ...) and ``--policy`` on top of the file."""
    sections = {
        "timeouts": config.timeouts,
        "limits": config.limits,
        "health": config.health,
        "discovery": config.discovery,
    }
    changes = {}
    for section, current in sections.items():
        fields = {k.split("__", 1)[1]: v for k, v in settings.items() if v is not None and k.startswith(section + "__")}
        if fields:
            changes[section] = replace(current, **fields)
    if policy is not None:
        changes["upstreams"] = {name: replace(u, policy=policy) for name, u in config.upstreams.items()}
    return replace(config, **changes).validate()


class BalancerApp:
    """The balancer plus its admin port, assembled from one ``BalancerConfig``."""

    def __init__(self, config: BalancerConfig, admin_password: str) -> None:
        self.config = config
        self.admin_password = admin_password
        pools = {
            name: Pool(
                name, policy=u.policy, rise=config.health.rise, fall=config.health.fall, panic_below=u.panic_below
            )
            for name, u in config.upstreams.items()
        }
        discoveries = {
            name: discovery_from_spec(u.discovery, interval=config.discovery.interval)
            for name, u in config.upstreams.items()
        }
        checks = {
            name: HealthChecker(
                pools[name],
                path=u.check_path,
                port=u.check_port or None,
                interval=config.health.interval,
                timeout=config.health.timeout,
            )
            for name, u in config.upstreams.items()
        }
        self.state = BalancerState(
            pools=pools, stats=BalancerStats(), discoveries=discoveries, health_checks=checks, routes=config.routes
        )
        background = [d.run(pools[name]) for name, d in discoveries.items()] + [c.run() for c in checks.values()]
        self.balancer = Balancer(
            pools=pools,
            router=Router(config.routes),
            timeouts=config.timeouts,
            limits=config.limits,
            stats=self.state.stats,
            sticky=sticky_cookie(config),
            background=background,
            internal=InternalPaths(config.internal),
        )
        for name in config.unrouted():
            log.warning("upstream %s has no route: nothing will reach it", name)

    async def run(self) -> None:
        host, port = self.config.listen
        app = create_admin_app(self.state, user=self.config.admin.user, password=self.admin_password)
        admin = admin_server(app, *self.config.admin_listen)
        await self.balancer.run_until_signalled(host, port, extra=[admin.serve()])


def run(config: BalancerConfig, admin_password: str) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(BalancerApp(config, admin_password).run())
    else:
        uvloop.run(BalancerApp(config, admin_password).run())
