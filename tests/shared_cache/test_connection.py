import asyncio
import os
import signal
import time

import pytest

from kit.errors import DependencyUnavailable
from shared_cache import RedisConnector, RedisSessionStore


def test_ping_answers_true_when_redis_is_up(redis_url):
    async def scenario():
        connector = RedisConnector(redis_url)
        try:
            return await connector.ping()
        finally:
            await connector.close()

    assert asyncio.run(scenario()) is True


def test_outage_fails_fast_naming_redis_then_recovers_with_the_same_connector(own_redis):
    async def scenario():
        connector = RedisConnector(own_redis.url)
        sessions = RedisSessionStore(connector)
        sid = await sessions.create({"user": "ada"})

        await asyncio.to_thread(own_redis.stop)
        assert await connector.ping() is False
        started = time.monotonic()
        with pytest.raises(DependencyUnavailable) as caught:
            await sessions.get(sid)
        # Fails fast: a refused connection is immediate; the bound is op_timeout (2 s) with room for a busy machine.
        assert time.monotonic() - started < 5
        assert caught.value.dependency == "redis"

        await asyncio.to_thread(own_redis.start)
        assert await connector.ping() is True
        fresh = await sessions.create({"user": "grace"})
        assert await sessions.get(fresh) == {"user": "grace"}
        await connector.close()

    asyncio.run(scenario())


def test_pooled_connections_survive_a_restart_without_an_error(own_redis):
    async def scenario():
        connector = RedisConnector(own_redis.url)
        sessions = RedisSessionStore(connector)
        # Several concurrent calls leave several open connections in the pool,
        # all of which the restart kills.
        sids = await asyncio.gather(*(sessions.create({"n": n}) for n in range(5)))
        await asyncio.gather(*(sessions.get(sid) for sid in sids))

        await asyncio.to_thread(own_redis.restart)

        # Data is gone (no persistence) but every call succeeds: dead pooled
        # connections are re-dialled, not reported as an outage.
        assert await asyncio.gather(*(sessions.get(sid) for sid in sids)) == [None] * 5
        await connector.close()

    asyncio.run(scenario())


def test_frozen_redis_gets_a_timely_error_not_a_hang(own_redis):
    async def scenario():
        connector = RedisConnector(own_redis.url, op_timeout=0.5)
        sessions = RedisSessionStore(connector)
        sid = await sessions.create({"user": "ada"})

        os.kill(own_redis.pid, signal.SIGSTOP)  # accepts connections, never answers
        try:
            started = time.monotonic()
            with pytest.raises(DependencyUnavailable) as caught:
                await sessions.get(sid)
            # op_timeout (0.5 s) ends the wait; 3 s leaves a busy machine room and still tells it from a hang.
            assert time.monotonic() - started < 3
            assert caught.value.dependency == "redis"
            assert await connector.ping() is False
        finally:
            os.kill(own_redis.pid, signal.SIGCONT)

        assert await sessions.get(sid) == {"user": "ada"}
        await connector.close()

    asyncio.run(scenario())


def test_one_connector_serves_successive_event_loops(redis_url):
    connector = RedisConnector(redis_url)
    sessions = RedisSessionStore(connector)

    sid = asyncio.run(sessions.create({"loop": 1}))
    # A client is bound to the loop that made it; a new loop must get its own.
    assert asyncio.run(sessions.get(sid)) == {"loop": 1}
    assert asyncio.run(connector.ping()) is True
