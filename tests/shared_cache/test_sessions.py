import asyncio
import multiprocessing
import time

import pytest
import redis

from shared_cache import MemorySessionStore, RedisConnector, RedisSessionStore
from tests.support.child_processes import running

BAD_IDS = ["", "x" * 129, "../../etc", "has space", "*"]


@pytest.fixture(params=["redis", "memory"])
def make_store(request, redis_url):
    """Builds a store of each kind, so both honour the same contract."""

    def make(ttl_seconds: float = 1800):
        if request.param == "memory":
            return MemorySessionStore(ttl_seconds=ttl_seconds)
        return RedisSessionStore(RedisConnector(redis_url), ttl_seconds=ttl_seconds)

    return make


def test_create_then_get_returns_the_data_under_an_opaque_id(make_store):
    store = make_store()

    async def scenario():
        sid = await store.create({"user": "ada", "roles": ["admin"]})
        other = await store.create({"user": "ada", "roles": ["admin"]})
        return sid, other, await store.get(sid)

    sid, other, data = asyncio.run(scenario())

    assert data == {"user": "ada", "roles": ["admin"]}
    assert sid != other and len(sid) >= 43  # 32 random bytes, url-safe base64


def test_unknown_and_bad_ids_read_as_no_session(make_store):
    store = make_store()

    async def scenario():
        return [await store.get(sid) for sid in ["unknown", *BAD_IDS]] + [
            await store.regenerate(sid) for sid in ["unknown", *BAD_IDS]
        ]

    assert asyncio.run(scenario()) == [None] * (2 * (1 + len(BAD_IDS)))
    for sid in BAD_IDS:
        asyncio.run(store.delete(sid))  # no error either


def test_reads_slide_the_expiry_and_idle_sessions_expire(make_store):
    """Read every 0.2 s, a 1 s session outlives its first second by far; left alone, it goes.

    Reads 0.2 s apart leave a stalled step 0.8 s before the session would lapse between two reads;
    how long it lived is measured, not assumed."""
    ttl = 1.0
    store = make_store(ttl_seconds=ttl)

    async def scenario():
        sid = await store.create({"user": "ada"})
        created = time.monotonic()
        while time.monotonic() - created < 1.5 * ttl:  # alive only thanks to the reads (each refreshes the TTL)
            await asyncio.sleep(0.2)
            assert await store.get(sid) == {"user": "ada"}, f"lost {time.monotonic() - created:.2f}s after creation"
        await asyncio.sleep(ttl + 0.3)
        assert await store.get(sid) is None

    asyncio.run(scenario())


def test_regenerate_moves_the_data_and_kills_the_old_id(make_store):
    store = make_store()

    async def scenario():
        old = await store.create({"user": "ada"})
        new = await store.regenerate(old)
        assert new is not None and new != old
        assert await store.get(old) is None
        assert await store.get(new) == {"user": "ada"}
        assert await store.regenerate(old) is None

    asyncio.run(scenario())


def test_delete_ends_the_session(make_store):
    store = make_store()

    async def scenario():
        sid = await store.create({"user": "ada"})
        await store.delete(sid)
        await store.delete(sid)
        assert await store.get(sid) is None

    asyncio.run(scenario())


def test_redis_sessions_are_stored_as_json_with_a_ttl_under_the_prefix(redis_url):
    store = RedisSessionStore(RedisConnector(redis_url), ttl_seconds=60, prefix="test:s:")
    sid = asyncio.run(store.create({"user": "ada"}))

    with redis.Redis.from_url(redis_url) as client:
        assert client.get(f"test:s:{sid}") == b'{"user": "ada"}'
        assert 0 < client.pttl(f"test:s:{sid}") <= 60_000


# -- a session created by one worker process, looked up by another ---------------


def _create_in_worker(store, results) -> None:
    async def work():
        sid = await store.create({"user": "ada"})
        results.put((sid, await store.get(sid)))

    asyncio.run(work())


def _get_in_worker(store, sid, results) -> None:
    results.put(asyncio.run(store.get(sid)))


@pytest.mark.parametrize("kind, seen_elsewhere", [("memory", None), ("redis", {"user": "ada"})])
def test_only_the_redis_store_is_shared_between_worker_processes(redis_url, kind, seen_elsewhere):
    # Fork, like a pre-fork server: the store object exists before the workers
    # do, the most favourable case for sharing; memory still is not shared.
    fork = multiprocessing.get_context("fork")
    store = MemorySessionStore() if kind == "memory" else RedisSessionStore(RedisConnector(redis_url))
    results = fork.Queue()

    first = fork.Process(target=_create_in_worker, args=(store, results))
    with running(first):
        sid, seen_by_creator = results.get(timeout=10)
        first.join(10)  # let it exit by itself: a kill could leave the queue's lock held
    second = fork.Process(target=_get_in_worker, args=(store, sid, results))
    with running(second):
        seen_by_other = results.get(timeout=10)
        second.join(10)

    assert (first.exitcode, second.exitcode) == (0, 0)

    assert seen_by_creator == {"user": "ada"}  # the store works inside a worker...
    assert seen_by_other == seen_elsewhere  # ...but only Redis crosses workers
