"""Discovery: keeps a ``Pool``'s membership current, from a fixed list, DNS or the Docker engine.

Each source hands the pool the *full* current list (``pool.set_addresses``):
new addresses join, missing ones leave once their in-flight requests end.

- ``static:127.0.0.1:8001,127.0.0.1:8002`` — a fixed list, applied once.
- ``dns:api:8000[@127.0.0.1:5353]`` — the A records of ``api``, re-resolved
  every interval. In compose, Docker's DNS answers a service name with every
  replica's IP, so ``--scale api=N`` shows up here within one interval.
- ``docker:api:8000[?project=P&network=N]`` — running containers of compose
  service ``api``, re-listed on every container start/die/stop event.

All have ``async run(pool)`` (runs until cancelled) and ``describe()`` for the
admin page.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import dns.asyncresolver
import dns.exception
import dns.resolver

from lb.pool import Address, Pool

log = logging.getLogger("scalecube.lb.discovery")

KINDS = ("static", "dns", "docker")
SERVICE_LABEL = "com.docker.compose.service"
PROJECT_LABEL = "com.docker.compose.project"
CONTAINER_EVENTS = ("start", "die", "stop")


class DockerUnavailable(RuntimeError):
    """No Docker engine answered: docker discovery cannot start."""


# -- specs ---------------------------------------------------------------------


@dataclass(frozen=True)
class DiscoverySpec:
    """A parsed ``kind:...`` spec; building the source from it is ``discovery_from_spec``'s job."""

    kind: str
    addresses: tuple[Address, ...] = ()  # static
    name: str = ""  # dns name or compose service
    port: int = 0
    nameserver: str | None = None  # dns: "host:port"
    project: str | None = None  # docker
    network: str | None = None  # docker


def parse_port(text: str, what: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{what}: port must be a number from 1 to 65535, got {text!r}")
    return int(text)


def parse_address(text: str, what: str = "address") -> Address:
    """``host:port`` or ``[v6]:port``."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"{what}: expected host:port, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, parse_port(port, f"{what} {text!r}")


def parse_discovery_spec(spec: str) -> DiscoverySpec:
    """Check a spec's syntax without touching the network or the Docker engine."""
    kind, sep, rest = spec.strip().partition(":")
    if not sep or kind not in KINDS:
        raise ValueError(
            f"discovery spec {spec!r}: must start with one of {', '.join(k + ':' for k in KINDS)} "
            f"(e.g. static:127.0.0.1:8001, dns:api:8000, docker:api:8000)"
        )
    if kind == "static":
        items = [item for item in rest.split(",") if item.strip()]
        if not items:
            raise ValueError(f"discovery spec {spec!r}: static needs at least one host:port")
        return DiscoverySpec("static", addresses=tuple(parse_address(i, f"discovery spec {spec!r}") for i in items))
    if kind == "dns":
        target, _, nameserver = rest.partition("@")
        if nameserver:
            host, _ = parse_address(nameserver, f"discovery spec {spec!r}: nameserver")
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(
                    f"discovery spec {spec!r}: the nameserver must be an IP address, got {host!r}"
                ) from None
    else:
        target, _, options = rest.partition("?")
    name, sep, port = target.rpartition(":")
    if not sep or not name:
        raise ValueError(f"discovery spec {spec!r}: expected {kind}:NAME:PORT, e.g. {kind}:api:8000")
    port_number = parse_port(port, f"discovery spec {spec!r}")
    if kind == "dns":
        return DiscoverySpec("dns", name=name, port=port_number, nameserver=nameserver or None)
    params = {key: values[-1] for key, values in parse_qs(options, keep_blank_values=True).items()}
    unknown = set(params) - {"project", "network"}
    if unknown:
        raise ValueError(
            f"discovery spec {spec!r}: unknown docker option(s) {', '.join(sorted(unknown))} (known: project, network)"
        )
    return DiscoverySpec(
        "docker",
        name=name,
        port=port_number,
        project=params.get("project") or None,
        network=params.get("network") or None,
    )


def discovery_from_spec(spec: str, *, interval: float = 2.0, docker_client: Any = None) -> Discovery:
    parsed = parse_discovery_spec(spec)
    if parsed.kind == "static":
        return StaticDiscovery(parsed.addresses)
    if parsed.kind == "dns":
        return DnsDiscovery(parsed.name, parsed.port, interval=interval, nameserver=parsed.nameserver)
    return DockerDiscovery(
        parsed.name, parsed.port, project=parsed.project, network=parsed.network, client=docker_client
    )


# -- sources -------------------------------------------------------------------


class Discovery(abc.ABC):
    kind: str

    def __init__(self) -> None:
        self.addresses: list[Address] = []  # the last list handed to the pool
        self.updated_at: float | None = None  # wall clock of the last successful look-up
        self.error: str | None = None  # set during an outage (last set kept), None when fine
        self.failures = 0

    @abc.abstractmethod
    async def run(self, pool: Pool) -> None:
        """Keep ``pool`` current until cancelled."""

    @abc.abstractmethod
    def source(self) -> dict[str, object]:
        """Where the addresses come from, for ``describe``."""

    def describe(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            **self.source(),
            "addresses": [f"{h}:{p}" for h, p in self.addresses],
            "updated_at": self.updated_at,
            "error": self.error,
            "failures": self.failures,
        }

    def _apply(self, pool: Pool, addresses: Iterable[Address]) -> None:
        self.addresses = sorted(set(addresses))
        self.updated_at = time.time()
        if self.error is not None:
            log.info("%s: %s discovery works again (%d backends)", pool.name, self.kind, len(self.addresses))
            self.error = None
        pool.set_addresses(self.addresses)  # every round: also forgets removed backends that have drained

    def _failed(self, pool: Pool, why: str) -> None:
        self.failures += 1
        if self.error is None:  # once per outage, not once per round
            log.warning(
                "%s: %s discovery failed, keeping the last %d backends: %s",
                pool.name,
                self.kind,
                len(self.addresses),
                why,
            )
        self.error = why


class StaticDiscovery(Discovery):
    kind = "static"

    def __init__(self, addresses: Iterable[Address]) -> None:
        super().__init__()
        self.fixed = [(str(host), int(port)) for host, port in addresses]

    async def run(self, pool: Pool) -> None:
        self._apply(pool, self.fixed)
        await asyncio.Event().wait()  # nothing more to do; cancelled with the others

    def source(self) -> dict[str, object]:
        return {}


class DnsDiscovery(Discovery):
    kind = "dns"

    def __init__(
        self, name: str, port: int, *, interval: float = 2.0, nameserver: str | None = None, timeout: float = 2.0
    ) -> None:
        super().__init__()
        self.name, self.port, self.interval, self.nameserver = name, port, interval, nameserver
        # With no nameserver, resolv.conf's: in a compose container that is Docker's DNS (127.0.0.11).
        self.resolver = dns.asyncresolver.Resolver(configure=nameserver is None)
        if nameserver:
            host, ns_port = parse_address(nameserver, "nameserver")
            self.resolver.nameservers, self.resolver.port = [host], ns_port
        self.resolver.cache = None  # each round must see the current replicas
        self.resolver.lifetime = timeout

    async def refresh(self, pool: Pool) -> None:
        """One look-up. NXDOMAIN (or no A record) means no backends; any other failure keeps the last set."""
        try:
            answer = await self.resolver.resolve(self.name, "A")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            self._apply(pool, [])
        except (dns.exception.DNSException, OSError) as exc:
            self._failed(pool, f"{type(exc).__name__}: {exc}")
        else:
            self._apply(pool, [(record.address, self.port) for record in answer])

    async def run(self, pool: Pool) -> None:
        while True:
            started = time.monotonic()
            await self.refresh(pool)
            # dnspython waits with asyncio.wait_for, which before Python 3.12 returns the look-up's answer and drops a
            # cancellation that lands as the answer does (python/cpython#86296): the stop's one cancel() would be
            # lost and this loop never end (ci22: a test waited 180 s on it). The task still counts the request.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    def source(self) -> dict[str, object]:
        return {
            "name": self.name,
            "port": self.port,
            "interval": self.interval,
            "nameserver": self.nameserver or ",".join(map(str, self.resolver.nameservers)) or None,
        }


def container_address(attrs: dict[str, Any], network: str | None = None, project: str | None = None) -> str | None:
    """A container's IP, from ``docker ps``-style attributes: on ``network``, or on its first network with one."""
    networks: dict[str, Any] = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    if network:
        # Compose names networks "<project>_<name>": accept either spelling.
        wanted = [network] + ([f"{project}_{network}"] if project else [])
        candidates = [networks[name] for name in wanted if name in networks]
    else:
        candidates = list(networks.values())
    return next((n["IPAddress"] for n in candidates if n and n.get("IPAddress")), None)


class DockerDiscovery(Discovery):
    kind = "docker"

    def __init__(
        self,
        service: str,
        port: int,
        *,
        project: str | None = None,
        network: str | None = None,
        client: Any = None,
        retry_delay: float = 2.0,
    ) -> None:
        super().__init__()
        self.service, self.port, self.project, self.network = service, port, project, network
        self.client = client
        self.retry_delay = retry_delay

    def labels(self) -> list[str]:
        return [f"{SERVICE_LABEL}={self.service}"] + ([f"{PROJECT_LABEL}={self.project}"] if self.project else [])

    def connect(self) -> Any:
        """The client, checked with a ping (blocking). Raises ``DockerUnavailable`` saying where it looked."""
        import docker  # here, not at import: only docker discovery needs the SDK loaded
        import requests

        try:
            client = self.client or docker.from_env()
            client.ping()
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
            raise DockerUnavailable(
                f"docker discovery of service {self.service!r}: no Docker engine reachable at "
                f"{where} ({exc}); use dns: or static: discovery instead"
            ) from exc
        self.client = client
        return client

    def list_addresses(self, client: Any) -> list[Address]:
        """Running containers of the service (blocking). ``sparse``: the list call alone carries their IPs."""
        containers = client.containers.list(sparse=True, filters={"label": self.labels(), "status": "running"})
        addresses = (container_address(c.attrs, self.network, self.project) for c in containers)
        return [(ip, self.port) for ip in addresses if ip]

    async def run(self, pool: Pool) -> None:
        own_client = self.client is None
        client = await asyncio.to_thread(self.connect)  # fails loudly at start when there is no engine
        try:
            while True:
                try:
                    await self._follow(client, pool)
                    why = "the engine closed the events stream"
                except Exception as exc:  # the engine restarting, a socket error...: keep the last set, try again
                    why = f"{type(exc).__name__}: {exc}"
                self._failed(pool, why)
                await asyncio.sleep(self.retry_delay)
        finally:
            if own_client:
                client.close()
                self.client = None

    async def _follow(self, client: Any, pool: Pool) -> None:
        """List, then re-list on every event, until the stream ends (returns) or we are cancelled."""
        loop = asyncio.get_running_loop()
        filters = {"type": "container", "event": list(CONTAINER_EVENTS), "label": self.labels()}
        # Subscribe before listing, so a container starting in between is not missed.
        events = await asyncio.to_thread(client.events, decode=True, filters=filters)
        stop = threading.Event()
        try:
            self._apply(pool, await asyncio.to_thread(self.list_addresses, client))
            ended: asyncio.Future[None] = loop.create_future()
            # A daemon thread of our own, not the default executor: the blocking read must never hold up loop shutdown.
            threading.Thread(
                target=self._watch,
                args=(events, client, pool, loop, ended, stop),
                name=f"docker-events-{self.service}",
                daemon=True,
            ).start()
            await ended
        finally:
            stop.set()
            try:
                events.close()  # shuts the socket down: the thread's blocking read returns
            except Exception as exc:  # already closed by the engine
                log.debug("closing the docker events stream: %s", exc)

    def _watch(
        self,
        events: Iterable[dict[str, Any]],
        client: Any,
        pool: Pool,
        loop: asyncio.AbstractEventLoop,
        ended: asyncio.Future[None],
        stop: threading.Event,
    ) -> None:
        error: BaseException | None = None
        try:
            for event in events:
                if stop.is_set():
                    return
                if event.get("Action", event.get("status")) in CONTAINER_EVENTS:
                    addresses = self.list_addresses(client)
                    self._to_loop(loop, stop, self._apply, pool, addresses)
        except Exception as exc:
            error = exc
        self._to_loop(loop, stop, _settle, ended, error)

    @staticmethod
    def _to_loop(loop: asyncio.AbstractEventLoop, stop: threading.Event, fn: Any, *args: Any) -> None:
        if stop.is_set():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed while we were reading: nobody listens any more
            loop.call_soon_threadsafe(fn, *args)

    def source(self) -> dict[str, object]:
        return {"service": self.service, "port": self.port, "project": self.project, "network": self.network}


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
