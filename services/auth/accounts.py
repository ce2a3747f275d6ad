"""Register, log in, verify, log out: auth's rules, apart from HTTP (``services.auth.routes``).

Login, in order:
1. the limits are checked, recording nothing: failed logins from the client's address (any
   username), and failed logins on this username from this address;
2. the password is checked with argon2 — against a dummy hash for an unknown user, so "no such
   user" and "wrong password" look and take the same;
3. a failure is recorded under both keys; a success records nothing and clears this username's
   failures from this address, upgrades the hash if the cost parameters changed, and issues a token.

Only failures count, so any number of successful logins from one address (a load test) never meets
a limit. Keying the per-account limit on username AND address means guessing from one address is
slowed (5 a minute on one account, 20 a minute in all), while the owner, from any other address,
still logs in: no one can lock anyone out. A guesser with many addresses is slowed per address,
by argon2's cost and by the password policy (``services.auth.policy``), not stopped: a per-account
limit across addresses would stop them only by locking the owner out too — the trade this design
refuses.

Check, verify and record are not one atomic step, so concurrent guesses could all pass the check
before any failure is recorded. They are bracketed by a semaphore the size of the hashing pool
(``HASH_THREADS``): a worker checks no more attempts than it can verify at once, so concurrent
guesses overshoot a limit by at most the number of argon2 checks that can run at the same time
across the deployment (threads × workers × replicas), however many requests are sent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass

from services.auth.passwords import Passwords
from services.auth.store import CredentialStore
from shared_cache.ratelimit import Decision, SlidingWindowLimiter

log = logging.getLogger("scalecube.auth")

MAX_CLIENT_KEY_LENGTH = 64


class UsernameTaken(Exception):
    pass


class InvalidCredentials(Exception):
    pass


class RateLimited(Exception):
    def __init__(self, scope: str, decision: Decision) -> None:
        super().__init__(f"rate limit per {scope}")
        self.scope = scope  # "username" (username + address) or "ip"
        self.decision = decision


@dataclass(frozen=True)
class LoginLimits:
    """Any limiter may be None: that limit is off. ``per_username`` counts per username + client address."""

    per_username: SlidingWindowLimiter | None
    per_ip: SlidingWindowLimiter | None
    registrations_per_ip: SlidingWindowLimiter | None = None


class Accounts:
    def __init__(self, store: CredentialStore, passwords: Passwords, limits: LoginLimits) -> None:
        self.store = store
        self.passwords = passwords
        self.limits = limits
        # Created unbound: it binds to the event loop of the worker that first uses it.
        self._verifying = asyncio.Semaphore(passwords.threads)

    async def register(self, username: str, password: str, client_ip: str | None = None) -> None:
        """Raises RateLimited (too many registrations from this address) or UsernameTaken."""
        if self.limits.registrations_per_ip is not None:
            decision = await self.limits.registrations_per_ip.hit(f"register:{client_key(client_ip)}")
            if not decision.allowed:
                raise RateLimited("ip", decision)
        if await self.store.exists(username):  # cheap refusal before the expensive hash
            raise UsernameTaken(username)
        if not await self.store.create(username, await self.passwords.hash(password)):
            raise UsernameTaken(username)  # taken between the check and now: HSETNX decided
        log.info("user registered: %s", username)

    async def login(self, username: str, password: str, client_ip: str | None) -> str:
        """A new token for ``username``; raises RateLimited or InvalidCredentials."""
        client = client_key(client_ip)
        counted = [
            (limiter, scope, key)
            for limiter, scope, key in (
                (self.limits.per_ip, "ip", f"ip:{client}"),
                (self.limits.per_username, "username", f"user:{username}@{client}"),
            )
            if limiter is not None
        ]
        async with self._verifying:
            for limiter, scope, key in counted:
                decision = await limiter.check(key)
                if not decision.allowed:
                    raise RateLimited(scope, decision)
            stored = await self.store.password_hash(username)
            if not await self.passwords.verify(stored, password) or stored is None:
                for limiter, _, key in counted:
                    await limiter.record(key)
                raise InvalidCredentials()
        if self.limits.per_username is not None:
            await self.limits.per_username.reset(f"user:{username}@{client}")
        if self.passwords.needs_rehash(stored):
            await self._upgrade_hash(username, stored, password)
        return await self.store.issue_token(username)

    async def verify(self, token: str) -> str | None:
        return await self.store.token_user(token)

    async def logout(self, token: str) -> bool:
        return await self.store.revoke(token)

    async def count(self) -> int:
        return await self.store.count()

    async def _upgrade_hash(self, username: str, old_hash: str, password: str) -> None:
        new_hash = await self.passwords.hash(password)
        if await self.store.replace_hash(username, old_hash, new_hash):
            log.info("password hash of %s upgraded to the current argon2 parameters", username)


def client_key(host: str | None) -> str:
    """What the per-IP limit counts: the address, or its /64 for IPv6 (one host holds a whole /64)."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:MAX_CLIENT_KEY_LENGTH]  # a unix socket peer, or an odd value from a trusted proxy
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is an IPv4 client on a dual-stack socket
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
