"""RedisConnector behind Redis Sentinel: real redis-server processes (a primary, a replica, three Sentinels).

One group per module (``group``); the failover test kills whichever node is the primary, so every test asks
the Sentinels who it is now rather than assuming.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
import redis

from infra.local.sentinel import SentinelGroup, role_of
from kit.errors import DependencyUnavailable
from services.common.settings import InvalidSettings, ServiceSettings
from shared_cache.broadcast import RedisBroadcast
from shared_cache.connection import RedisConnector, parse_sentinels
from shared_cache.sessions import RedisSessionStore

# -- without servers ------------------------------------------------------------------------------


def test_sentinels_setting_is_parsed_and_bad_entries_are_named() -> None:
    assert parse_sentinels("10.0.0.1:26379, sentinel-2:26380,") == [("10.0.0.1", 26379), ("sentinel-2", 26380)]
    with pytest.raises(ValueError, match="'nohost'"):
        parse_sentinels("a:1,nohost")
    with pytest.raises(InvalidSettings, match="REDIS_SENTINELS"):
        ServiceSettings.load(redis_sentinels="a:99999")


def test_settings_build_a_sentinel_client_only_when_asked() -> None:
    single = ServiceSettings.load(redis_url="redis://10.1.2.3:6400/4").redis_connector()
    assert single.sentinels == [] and "10.1.2.3:6400/4" in single.where
    assert type(single.client).__name__ == "Redis"
    ha = ServiceSettings.load(redis_url="redis://x/3", redis_sentinels="s1:1,s2:2,s3:3").redis_connector()
    assert ha.sentinels == [("s1", 1), ("s2", 2), ("s3", 3)]
    assert ha.where == "sentinel scalecube via s1:1,s2:2,s3:3 db 3"
    assert "SentinelConnectionPool" in repr(ha.client.connection_pool)
    # WAIT for one replica by default behind Sentinels, none for one Redis; REDIS_WAIT_REPLICAS overrides.
    assert ServiceSettings.load(redis_sentinels="s:1").wait_replicas == 1
    assert ServiceSettings.load().wait_replicas == 0
    assert ServiceSettings.load(redis_sentinels="s:1", redis_wait_replicas=0).wait_replicas == 0


# -- a real group ----------------------------------------------------------------------------------


@pytest.fixture
def group(sentinel_group: SentinelGroup) -> SentinelGroup:
    return sentinel_group


def connector_for(group: SentinelGroup, **kwargs: object) -> RedisConnector:
    return RedisConnector(
        group.url, sentinels=group.sentinel_addresses, sentinel_master=group.name, wait_replicas=1, **kwargs
    )


def on_replica(group: SentinelGroup, key: str) -> bool:
    primary = group.wait_settled()
    [replica] = [node for node in group.nodes if (node.host, node.port) != primary]
    with redis.Redis(host=replica.host, port=replica.port) as client:
        return bool(client.exists(key))


def test_an_acknowledged_session_is_on_the_replica_already(group: SentinelGroup) -> None:
    async def scenario() -> str:
        connector = connector_for(group)
        try:
            return await RedisSessionStore(connector, prefix="t:").create({"user": "ann"})
        finally:
            await connector.close()

    sid = asyncio.run(scenario())
    # Read straight after the answer, without waiting: WAIT 1 made the replica hold it before the answer.
    assert on_replica(group, "t:" + sid)


def test_a_write_no_replica_confirms_is_a_503_naming_redis(group: SentinelGroup) -> None:
    async def scenario() -> None:
        connector = RedisConnector(
            group.url,
            sentinels=group.sentinel_addresses,
            sentinel_master=group.name,
            wait_replicas=2,  # there is one replica: two can never confirm
            wait_timeout=0.2,
        )
        try:
            await RedisSessionStore(connector).create({"user": "bob"})
        finally:
            await connector.close()

    with pytest.raises(DependencyUnavailable, match="on 1 of 2 replicas") as caught:
        asyncio.run(scenario())
    assert caught.value.dependency == "redis"


async def _create_until(store: RedisSessionStore, stop: asyncio.Event, acked: list[str], errors: list[str]) -> None:
    while not stop.is_set():
        try:
            acked.append(await store.create({"user": f"u{len(acked)}"}))
        except DependencyUnavailable as error:
            errors.append(error.dependency)
            await asyncio.sleep(0.05)


def test_failover_under_session_load_loses_no_acknowledged_session_and_pubsub_resubscribes(
    group: SentinelGroup,
) -> None:
    """Sessions created flat out while the primary is SIGKILLed (and restarted the Sentinel-managed way, as the
    local supervisor does): every acknowledged one is readable afterwards; only 503s naming redis meanwhile; the
    old primary is back as a replica; a broadcast listener hears a message published after the failover."""
    old_primary = group.node_at(group.wait_settled())
    heard: list[object] = []

    async def scenario() -> tuple[list[str], list[str], list[str], float]:
        connector = connector_for(group)
        store = RedisSessionStore(connector, prefix="f:")
        broadcast = RedisBroadcast(connector, channel="t:failover", reconnect_cap=0.5)
        listener = asyncio.create_task(broadcast.listen(heard.append))
        stop = asyncio.Event()
        acked: list[str] = []
        errors: list[str] = []
        try:
            while await broadcast.subscribers() < 1:
                await asyncio.sleep(0.05)
            writers = [asyncio.create_task(_create_until(store, stop, acked, errors)) for _ in range(4)]
            while len(acked) < 40:
                await asyncio.sleep(0.02)
            before_kill = list(acked)
            old_primary.kill()
            restart = asyncio.create_task(asyncio.to_thread(group.restart, old_primary))
            killed_at = time.monotonic()
            # Count events: writes succeeding again after some failed (no wall-clock window is judged here).
            while not (errors and len(acked) >= len(before_kill) + 20):
                assert time.monotonic() - killed_at < 60, f"no recovery: {len(errors)} errors, {len(acked)} acked"
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.gather(*writers)
            await restart
            # The listener resubscribed to the new primary: a message published now reaches it.
            for attempt in range(100):
                await broadcast.publish({"after": "failover", "attempt": attempt})
                await asyncio.sleep(0.1)
                if heard:
                    break
            missing = [sid for sid in acked if await store.get(sid) is None]
            return before_kill, missing, errors, time.monotonic() - killed_at
        finally:
            stop.set()
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await connector.close()

    before_kill, missing, errors, _ = asyncio.run(scenario())
    assert before_kill and missing == []
    assert errors and set(errors) == {"redis"}
    assert heard and isinstance(heard[0], dict) and heard[0]["after"] == "failover"
    new_primary = group.wait_settled()
    assert new_primary != (old_primary.host, old_primary.port)
    info = role_of((old_primary.host, old_primary.port))
    assert info is not None and info["role"] == "slave" and int(str(info["master_port"])) == new_primary[1]


def test_a_pooled_connection_to_a_vanished_primary_reaches_the_new_one_within_the_request(group: SentinelGroup) -> None:
    """The primary frozen (SIGSTOP: its sockets stay open and never answer, as when its machine is gone) and the
    Sentinels' failover over, every read through connections pooled before it still answers: each stale one costs
    its attempt's wait, and the retry dials the primary the Sentinels name now. redis-py alone redials the old
    address (redis/redis-py#3874): the first read was a 503 however long after the failover it came."""
    primary = group.wait_settled()
    frozen = group.node_at(primary)

    async def warm(store: RedisSessionStore) -> str:
        sid = await store.create({"user": "ada"})  # WAITed onto the replica: the new primary holds it
        assert await asyncio.gather(*(store.get(sid) for _ in range(4))) == [{"user": "ada"}] * 4
        return sid

    async def read_each(store: RedisSessionStore, sid: str) -> list[object]:
        answers: list[object] = []
        for _ in range(5):  # one at a time: more than one stale connection may be reached
            try:
                answers.append(await store.get(sid))
            except DependencyUnavailable as error:
                answers.append(str(error))
        return answers

    async def scenario() -> list[object]:
        connector = connector_for(group)
        store = RedisSessionStore(connector, prefix="v:")
        try:
            sid = await warm(store)
            assert frozen.pid is not None
            os.kill(frozen.pid, signal.SIGSTOP)
            try:
                deadline = time.monotonic() + 30
                while await asyncio.to_thread(group.primary) in (primary, None):
                    assert time.monotonic() < deadline, "no failover within 30 s"
                    await asyncio.sleep(0.1)
                return await read_each(store, sid)
            finally:
                os.kill(frozen.pid, signal.SIGCONT)
        finally:
            await connector.close()

    answers = asyncio.run(scenario())
    group.wait_settled()  # the old primary, answering again, is turned into the new one's replica
    assert answers == [{"user": "ada"}] * 5, answers


def test_one_sentinel_down_changes_nothing(group: SentinelGroup) -> None:
    """With one of three Sentinels gone the primary is still found and written through, WAIT included."""
    first = group.sentinels[0]
    first.kill()
    try:

        async def scenario() -> str:
            connector = connector_for(group)
            try:
                return await RedisSessionStore(connector, prefix="q:").create({"user": "quorum"})
            finally:
                await connector.close()

        sid = asyncio.run(scenario())
    finally:
        first.start()
    assert on_replica(group, "q:" + sid)
