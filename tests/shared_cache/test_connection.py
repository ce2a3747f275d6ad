import asyncio
import os
import signal
import time

import pytest

from kit.errors import DependencyUnavailable
from shared_cache import RedisConnector, RedisSessionStore
from shared_cache.connection import attempt_share


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


class Relay:
    """A TCP relay in front of a real Redis whose open connections can go silent at once (``vanish()``): the
    bytes sent on them are swallowed and nothing comes back, no reset either — what a pooled connection sees when
    its peer's machine is gone. Connections made after ``vanish()`` are relayed as before (the new primary)."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("redis://").split("/")[0].rsplit(":", 1)
        self.target = (host, int(port))
        self.silent: set[asyncio.StreamWriter] = set()
        self.open: list[asyncio.StreamWriter] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> "Relay":
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.url = f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self.open:
            writer.close()
        await self._server.wait_closed()

    def vanish(self) -> int:
        """Silence every connection open now; how many there were."""
        self.silent.update(self.open)
        return len(self.open) // 2

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.open += [writer, upstream_writer]
        await asyncio.gather(self._pump(reader, upstream_writer, writer), self._pump(upstream_reader, writer, writer))

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, client: asyncio.StreamWriter):
        while data := await source.read(65536):
            if client in self.silent:
                continue  # the peer is gone: what is sent is lost, nothing answers
            sink.write(data)
            await sink.drain()


def test_an_attempt_leaves_a_retry_room_in_the_operation() -> None:
    assert attempt_share(2.0) == 1.0
    # the services' defaults: a WAIT of up to 1 s is never cut, and the retry still has 0.75 s
    assert attempt_share(2.0, 1.0) == 1.25
    assert attempt_share(2.0, 1.9) == 2.0  # never longer than the operation
    assert (
        RedisConnector("redis://127.0.0.1:1/0", op_timeout=2.0, wait_replicas=1, wait_timeout=1.0).attempt_timeout
        == 1.25
    )


def test_pooled_connections_whose_peer_vanished_cost_a_retry_not_a_503(redis_url):
    """Each pooled connection to a peer that is gone fails only when next used, after its attempt's wait; the
    retry dials again within the same operation, so every call still answers (with the whole operation's deadline
    spent on that one wait, each of them would have been a 503)."""

    async def scenario():
        async with Relay(redis_url) as relay:
            connector = RedisConnector(relay.url, op_timeout=1.0)
            sessions = RedisSessionStore(connector)
            sid = await sessions.create({"user": "ada"})
            # Concurrent calls leave several connections in the pool.
            assert await asyncio.gather(*(sessions.get(sid) for _ in range(4))) == [{"user": "ada"}] * 4
            stale = relay.vanish()
            assert stale >= 2
            took = []
            for _ in range(stale + 1):  # every stale connection is reached once, then a fresh one
                started = time.monotonic()
                assert await sessions.get(sid) == {"user": "ada"}
                took.append(time.monotonic() - started)
            # the stale ones waited their attempt (0.5 s) and no longer than the operation (1 s), a busy machine
            # given room; at least one of them was reached
            assert max(took) >= connector.attempt_timeout * 0.9, took
            assert max(took) < 3, took
            await connector.close()

    asyncio.run(scenario())
