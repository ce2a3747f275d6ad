"""Redis that fails over: a primary, a replica and three Sentinels (Redis's own HA engine), as local processes.

The numbers Sentinel decides by, in one place (the local stack, the tests and the failover demo use them;
compose and k8s write the same ones into their sentinel.conf):

- quorum 2 of 3: two Sentinels must agree the primary is down before one of them fails over, so one
  Sentinel down (or cut off) changes nothing — the other two still make the quorum and the majority that
  elects the leader;
- ``down-after-milliseconds`` 2000: a primary silent for 2 s is down in a Sentinel's eyes. Not 1 s: a
  Sentinel pings every second, so at 1 s one late answer is a death, and on a loaded 2-core machine the
  newly promoted primary was seen down 1.1 s after the switch (its fresh link not yet answered) and failed
  back at once — a second failover, both nodes primaries for 10 s (``demo all --docker`` in CI). Redis's
  own Sentinel suite runs with 2000;
- ``failover-timeout`` 2000: a failover that stalls (a split vote: likelier with one Sentinel down) is retried after 2x this, and replicas are given this
  long to follow the new primary. Together with the election (a random wait under 1 s) a killed primary is
  replaced in about 3-5 s on this machine.

A node that dies is started again the way a Sentinel-managed node must be: never as a primary on its
own say. ``SentinelGroup.primary_for_restart`` waits (bounded) until the Sentinels name a primary other
than the node, then the node starts as its replica (``--replicaof``) — so the old primary, back with its
AOF, cannot race the Sentinels and stays a replica of the one they promoted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from infra.local.redis_server import RedisServer, find_redis_server
from services.common.settings import ServiceSettings

# The one default name of the monitored primary (REDIS_SENTINEL_MASTER), read from the settings.
MASTER_NAME: str = ServiceSettings.model_fields["redis_sentinel_master"].default
QUORUM = 2
SENTINELS = 3
DOWN_AFTER_MS = 2000
FAILOVER_TIMEOUT_MS = 2000
# How long a restarted node waits for the Sentinels to name another primary before it starts anyway
# (as whatever they name: e.g. itself, when no replica was there to promote).
RESTART_WAIT = (DOWN_AFTER_MS + FAILOVER_TIMEOUT_MS) / 1000 + 4.0
CONFIG_NAME = "sentinel.conf"
Address = tuple[str, int]


def sentinel_config(master: Address, *, name: str = MASTER_NAME, quorum: int = QUORUM) -> str:
    """The ``sentinel.conf`` of one Sentinel watching ``master`` (it rewrites the file as it learns)."""
    host, port = master
    return "\n".join(
        [
            f"sentinel monitor {name} {host} {port} {quorum}",
            f"sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {name} 1",
            "",
        ]
    )


class SentinelServer(RedisServer):
    """``redis-server sentinel.conf --sentinel``: the file is written at the first start only, then kept
    (Sentinel rewrites it with the current primary and epoch, which a restarted Sentinel must remember)."""

    def __init__(
        self,
        master: Address,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        data_dir: Path | None = None,
        name: str = MASTER_NAME,
        executable: str | None = None,
        new_session: bool = False,
    ) -> None:
        super().__init__(port, host=host, data_dir=data_dir, executable=executable, new_session=new_session)
        self.master = master
        self.name = name
        self._config_written = False

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    def clear_data(self) -> None:
        super().clear_data()
        if self.data_dir is not None:
            (self.data_dir / CONFIG_NAME).unlink(missing_ok=True)
        self._config_written = False

    def _command(self, data_dir: Path) -> list[str]:
        config = data_dir / CONFIG_NAME
        if not self._config_written or not config.exists():
            config.write_text(sentinel_config(self.master, name=self.name))
            self._config_written = True
        return [
            self._executable,
            str(config),
            "--sentinel",
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(data_dir),
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--logfile",
            "",
        ]


def _client(address: Address, timeout: float, password: str | None) -> redis.Redis:
    """One short-lived connection to a Sentinel or a data node: no retry (a node that does not answer in
    ``timeout`` is down, as far as the caller is concerned); ``password``: where every node requires one
    (compose's REDIS_PASSWORD), the same for the Sentinels and the data nodes."""
    return redis.Redis(
        host=address[0],
        port=address[1],
        password=password,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def ask_sentinels(
    sentinels: Sequence[Address], name: str = MASTER_NAME, timeout: float = 0.5, *, password: str | None = None
) -> Address | None:
    """The primary the first answering Sentinel names and does not think down (None: none does). Its host is
    what the Sentinel announces: an address here, a hostname in compose (``announce-hostnames``)."""
    for sentinel in sentinels:
        try:
            with _client(sentinel, timeout, password) as client:
                state = client.sentinel_master(name)
        except redis.RedisError:
            continue
        if state.get("is_master") and not state.get("is_sdown") and not state.get("is_odown"):
            return (str(state["ip"]), int(state["port"]))
    return None


def agreed_primary(
    sentinels: Sequence[Address], name: str = MASTER_NAME, *, password: str | None = None
) -> Address | None:
    """The primary every Sentinel names, when they all answer and agree (None otherwise): a Sentinel just
    back from being down may still name the old one until it hears the new epoch from the others."""
    named = {ask_sentinels([sentinel], name, password=password) for sentinel in sentinels}
    return named.pop() if len(named) == 1 else None


def failover_epoch(sentinels: Sequence[Address], name: str = MASTER_NAME, *, password: str | None = None) -> int | None:
    """The highest configuration epoch the answering Sentinels know (None: none answers). Each leader election a
    Sentinel starts takes a new one, so its growth across a kill counts the elections tried: 1 for a clean
    failover; more for a split vote tried again, or a second failover."""
    epochs = []
    for sentinel in sentinels:
        try:
            with _client(sentinel, 0.5, password) as client:
                epochs.append(int(client.sentinel_master(name).get("config-epoch", 0)))
        except (redis.RedisError, ValueError):
            continue
    return max(epochs) if epochs else None


def sentinels_ready(
    sentinels: Sequence[Address], name: str = MASTER_NAME, replicas: int = 1, *, password: str | None = None
) -> bool:
    """Whether every Sentinel answers, knows the others and at least ``replicas`` replicas — what a failover
    needs. Sentinels learn replicas from the primary's INFO (every 10 s), so a group that just started is not
    ready for a few seconds even though every process answers."""
    for sentinel in sentinels:
        try:
            with _client(sentinel, 0.5, password) as client:
                state = client.sentinel_master(name)
        except redis.RedisError:
            return False
        if int(state.get("num-slaves", 0)) < replicas or int(state.get("num-other-sentinels", 0)) < len(sentinels) - 1:
            return False
    return True


def role_of(address: Address, timeout: float = 0.5, *, password: str | None = None) -> dict[str, object] | None:
    """``INFO replication`` of a data node (role, master_host, master_port, master_link_status, ...); None if
    it does not answer."""
    try:
        with _client(address, timeout, password) as client:
            return dict(client.info("replication"))
    except redis.RedisError:
        return None


def primary_for_restart(
    me: Address, sentinels: Sequence[Address], *, name: str = MASTER_NAME, wait: float = RESTART_WAIT
) -> Address | None:
    """Whom a restarted node should replicate: the primary the Sentinels name once it is not ``me``, waiting
    up to ``wait`` for their failover; past it, whatever they name (``None`` when that is ``me`` or nobody:
    it starts as a primary, which the Sentinels turn into a replica if they chose another one meanwhile)."""
    deadline = time.monotonic() + wait
    named = None
    while True:
        named = ask_sentinels(sentinels, name) or named
        if named is not None and named != me:
            return named
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


class SentinelGroup:
    """A primary, its replica and three Sentinels (quorum 2) on loopback, for the tests and the failover demo.

    ``nodes`` are the two data nodes (AOF everysec), ``sentinels`` the three Sentinels; ``node.kill()``
    SIGKILLs one, ``restart(node)`` starts it again the Sentinel-managed way (``primary_for_restart``).
    """

    def __init__(self, workdir: Path, *, host: str = "127.0.0.1", name: str = MASTER_NAME) -> None:
        executable = find_redis_server()
        self.name = name
        self.host = host
        self.nodes = [
            RedisServer(host=host, data_dir=workdir / f"redis-{n}", appendonly=True, executable=executable)
            for n in (1, 2)
        ]
        primary = (host, self.nodes[0].port)
        self.nodes[1].replicaof = primary
        self.sentinels = [
            SentinelServer(primary, host=host, data_dir=workdir / f"sentinel-{n}", name=name, executable=executable)
            for n in range(1, SENTINELS + 1)
        ]

    @property
    def sentinel_addresses(self) -> list[Address]:
        return [s.address for s in self.sentinels]

    @property
    def sentinels_setting(self) -> str:
        """REDIS_SENTINELS for the services."""
        return ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)

    @property
    def url(self) -> str:
        """REDIS_URL beside REDIS_SENTINELS: the first primary's (the clients take only its db from it)."""
        return self.nodes[0].url

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.url, "REDIS_SENTINELS": self.sentinels_setting, "REDIS_SENTINEL_MASTER": self.name}

    def start(self, timeout: float = 30.0) -> None:
        try:
            for server in (*self.nodes, *self.sentinels):
                server.start()
            self.wait_settled(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for server in (*self.sentinels, *self.nodes):
            server.stop()

    def __enter__(self) -> SentinelGroup:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def primary(self) -> Address | None:
        return ask_sentinels(self.sentinel_addresses, self.name)

    def node_at(self, address: Address) -> RedisServer:
        return next(node for node in self.nodes if (node.host, node.port) == address)

    def restart(self, node: RedisServer, wait: float = RESTART_WAIT) -> None:
        node.replicaof = primary_for_restart((node.host, node.port), self.sentinel_addresses, name=self.name, wait=wait)
        node.start()

    def wait_settled(self, timeout: float = 30.0) -> Address:
        """Until every Sentinel names one primary that has a replica with its link up and knows the other
        Sentinels (their hello messages), so the group can fail over; returns the primary."""
        deadline = time.monotonic() + timeout
        while True:
            primary = self.primary()
            if primary is not None and self._healthy(primary):
                return primary
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the sentinel group did not settle within {timeout:g}s (primary {primary})")
            time.sleep(0.1)

    def _healthy(self, primary: Address) -> bool:
        replicas = [node for node in self.nodes if (node.host, node.port) != primary]
        for node in replicas:
            info = role_of((node.host, node.port))
            if not info or info.get("role") != "slave" or info.get("master_link_status") != "up":
                return False
            if int(str(info.get("master_port"))) != primary[1]:
                return False
        for sentinel in self.sentinels:
            try:
                with redis.Redis(host=sentinel.host, port=sentinel.port, socket_timeout=0.5) as client:
                    state = client.sentinel_master(self.name)
            except redis.RedisError:
                return False
            if (str(state["ip"]), int(state["port"])) != primary or int(state["num-other-sentinels"]) < SENTINELS - 1:
                return False
            if int(state["num-slaves"]) < len(replicas):
                return False
        return True
