import asyncio
import contextlib
import logging
import multiprocessing
import os

import pytest
import redis

from kit.errors import DependencyUnavailable
from shared_cache import RedisBroadcast, RedisConnector
from tests.support.child_processes import running

CHANNEL = "test:broadcast"


async def _wait_for_subscribers(broadcast: RedisBroadcast, count: int, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while True:
            with contextlib.suppress(DependencyUnavailable):
                if await broadcast.subscribers() == count:
                    return
            await asyncio.sleep(0.02)


async def _wait_for(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def _listening(broadcast: RedisBroadcast, handler):
    task = asyncio.create_task(broadcast.listen(handler))
    try:
        await _wait_for_subscribers(broadcast, 1)
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- every worker process receives ------------------------------------------------


def _listener_process(url, received) -> None:
    broadcast = RedisBroadcast(RedisConnector(url), CHANNEL)
    asyncio.run(broadcast.listen(lambda message: received.put((os.getpid(), message))))


def test_every_subscriber_in_every_process_receives_a_message(redis_url):
    spawn = multiprocessing.get_context("spawn")
    received = spawn.Queue()
    listeners = [spawn.Process(target=_listener_process, args=(redis_url, received)) for _ in range(3)]
    broadcast = RedisBroadcast(RedisConnector(redis_url), CHANNEL)

    with running(*listeners):
        asyncio.run(_wait_for_subscribers(broadcast, 3))
        receivers = asyncio.run(broadcast.publish({"event": "config-changed", "version": 7}))
        deliveries = [received.get(timeout=10) for _ in listeners]

    assert receivers == 3
    assert {pid for pid, _ in deliveries} == {listener.pid for listener in listeners}
    assert all(message == {"event": "config-changed", "version": 7} for _, message in deliveries)


# -- one listener, in this process ----------------------------------------------------


def test_async_handlers_get_messages_and_bad_ones_are_skipped(redis_url, caplog):
    broadcast = RedisBroadcast(RedisConnector(redis_url), CHANNEL)
    received = []

    async def handler(message):
        if message == "boom":
            raise RuntimeError("handler bug")
        received.append(message)

    async def scenario():
        async with _listening(broadcast, handler):
            with redis.Redis.from_url(redis_url) as raw:
                raw.publish(CHANNEL, b"\xff not json")
            await broadcast.publish("boom")
            await broadcast.publish({"n": 1})
            await _wait_for(lambda: received)

    with caplog.at_level(logging.WARNING, logger="shared_cache.broadcast"):
        asyncio.run(scenario())

    assert received == [{"n": 1}]  # the listener outlived both bad messages
    assert "undecodable" in caplog.text
    assert "handler failed" in caplog.text


def test_a_listener_survives_a_redis_restart(own_redis):
    broadcast = RedisBroadcast(RedisConnector(own_redis.url), CHANNEL, reconnect_cap=0.5)
    received = []

    async def scenario():
        async with _listening(broadcast, received.append):
            await broadcast.publish("before")
            await _wait_for(lambda: "before" in received)

            await asyncio.to_thread(own_redis.restart)
            await _wait_for_subscribers(broadcast, 1)
            assert await broadcast.publish("after") == 1
            await _wait_for(lambda: "after" in received)

    asyncio.run(scenario())

    assert received == ["before", "after"]


def test_a_long_outage_is_warned_about_once(own_redis, caplog):
    broadcast = RedisBroadcast(RedisConnector(own_redis.url), CHANNEL, reconnect_cap=0.1)
    received = []

    async def scenario():
        async with _listening(broadcast, received.append):
            await asyncio.to_thread(own_redis.stop)
            await asyncio.sleep(1.0)  # ~10 failed reconnection attempts
            await asyncio.to_thread(own_redis.start)
            await _wait_for_subscribers(broadcast, 1)
            await broadcast.publish("back")
            await _wait_for(lambda: received)

    with caplog.at_level(logging.INFO, logger="shared_cache.broadcast"):
        asyncio.run(scenario())

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "lost redis" in warnings[0].getMessage()
    assert "reconnected" in caplog.text
    assert received == ["back"]


def test_publish_with_redis_down_names_redis(own_redis):
    broadcast = RedisBroadcast(RedisConnector(own_redis.url), CHANNEL)
    own_redis.stop()

    with pytest.raises(DependencyUnavailable) as caught:
        asyncio.run(broadcast.publish("anyone?"))

    assert caught.value.dependency == "redis"
