"""auth's rules in-process, against a real Redis: hash upgrades, equal work, hashing off the event loop.

Equal timing and a free event loop are argued from what ran (argon2 checks and their parameters, loop
ticks), not from timings: on a shared 2-core machine two timings of the same work differ by more than
any margin a test could allow. The timings are printed, for a look.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
import redis
from argon2 import Parameters, extract_parameters

from services.auth.accounts import Accounts, InvalidCredentials, LoginLimits, client_key
from services.auth.passwords import Passwords
from services.auth.store import USERS_KEY, CredentialStore
from shared_cache import RedisConnector

PASSWORD = "correct horse battery staple"


class RecordingPasswords(Passwords):
    """Real argon2; each verification also records the parameters of the hash it was checked against
    (``_check`` is the one method that runs argon2's verify, on the hashing threads)."""

    def __init__(self, **options: int) -> None:
        super().__init__(**options)
        self.checked: list[Parameters] = []

    def _check(self, stored_hash: str, password: str) -> bool:
        self.checked.append(extract_parameters(stored_hash))
        return super()._check(stored_hash, password)


def accounts(url: str, *, time_cost: int = 1, memory_kib: int = 1024, threads: int = 2) -> Accounts:
    passwords = RecordingPasswords(time_cost=time_cost, memory_kib=memory_kib, parallelism=1, threads=threads)
    return Accounts(CredentialStore(RedisConnector(url), token_ttl_seconds=60), passwords, LoginLimits(None, None))


def test_a_login_upgrades_a_hash_made_with_older_parameters(redis_url):
    old, new = accounts(redis_url, time_cost=1, memory_kib=1024), accounts(redis_url, time_cost=2, memory_kib=2048)

    async def scenario():
        await old.register("ada", PASSWORD)
        before = await old.store.password_hash("ada")
        try:
            await new.login("ada", "wrong password", None)
        except InvalidCredentials:
            pass
        unchanged = await new.store.password_hash("ada")  # only a successful login knows the password
        assert await new.login("ada", PASSWORD, "127.0.0.1")
        return before, unchanged, await new.store.password_hash("ada")

    before, unchanged, after = asyncio.run(scenario())
    assert "$m=1024,t=1,p=1$" in before and unchanged == before
    assert "$m=2048,t=2,p=1$" in after
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        assert client.hget(USERS_KEY, "ada") == after
    assert asyncio.run(new.login("ada", PASSWORD, None))  # and the upgraded hash verifies


def test_an_unknown_user_costs_the_same_argon2_work_as_a_wrong_password(redis_url):
    """At the service's default cost: every failed login runs exactly one argon2 verification, and an
    unknown user's is against a hash with the very parameters of a real user's (time, memory, lanes,
    salt and digest lengths): the same work, so the same time, whatever the machine is doing."""
    service = accounts(redis_url, time_cost=2, memory_kib=19456)
    recorded = service.passwords
    assert isinstance(recorded, RecordingPasswords)

    async def failed_login(username: str) -> tuple[float, list[Parameters]]:
        before = len(recorded.checked)
        started = time.perf_counter()
        with pytest.raises(InvalidCredentials):
            await service.login(username, "not the password", None)
        return time.perf_counter() - started, recorded.checked[before:]

    async def scenario():
        await service.register("ada", PASSWORD)
        await service.passwords.warm_up()
        wrong, unknown = [], []
        for _ in range(5):  # interleaved
            wrong.append(await failed_login("ada"))
            unknown.append(await failed_login("nobody"))
        return await service.store.password_hash("ada"), wrong, unknown

    stored, wrong, unknown = asyncio.run(scenario())
    print(
        f"\nmedian 401: wrong password {statistics.median(t for t, _ in wrong) * 1000:.1f} ms, "
        f"unknown user {statistics.median(t for t, _ in unknown) * 1000:.1f} ms"
    )
    real = extract_parameters(stored)
    assert (real.time_cost, real.memory_cost, real.parallelism) == (2, 19456, 1)
    assert [checks for _, checks in wrong] == [[real]] * 5
    assert [checks for _, checks in unknown] == [[real]] * 5


def test_hashing_runs_off_the_event_loop(redis_url):
    """While passwords are checked, the loop keeps ticking.

    Counted, not timed: checks run on the loop would block it from the first one's start to the last
    one's end (the four tasks' first steps run back to back), leaving at most a tick or two; on the
    hashing threads the loop ticks all along, dozens of times."""
    passwords = Passwords(time_cost=3, memory_kib=32768, parallelism=1, threads=1)

    async def scenario():
        stored = await passwords.hash(PASSWORD)
        started = time.perf_counter()
        await passwords.verify(stored, PASSWORD)
        one_check = time.perf_counter() - started

        stalls: list[float] = []
        done = False

        async def ticker() -> None:
            last = time.perf_counter()
            while not done:
                await asyncio.sleep(0.002)
                now = time.perf_counter()
                stalls.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        await asyncio.gather(*(passwords.verify(stored, PASSWORD) for _ in range(4)))
        done = True
        await ticking
        return one_check, max(stalls), len(stalls)

    one_check, longest_stall, ticks = asyncio.run(scenario())
    passwords.close()
    print(
        f"\none check {one_check * 1000:.1f} ms; during 4 checks the loop ticked {ticks} times, "
        f"longest stall {longest_stall * 1000:.1f} ms"
    )
    assert ticks > 10


def test_client_keys():
    assert client_key("203.0.113.9") == "203.0.113.9"
    assert client_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert client_key("2001:db8::1") == client_key("2001:db8::abcd") == "2001:db8::/64"
    assert client_key(None) == "unknown"
    assert len(client_key("x" * 500)) == 64
