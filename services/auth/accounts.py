"""Register, log in, verify, log out: auth's rules, apart from HTTP (``services.auth.routes``).

Login, in order:
1. the client IP's limiter counts the attempt (every attempt, right or wrong);
2. the username's limiter counts it too, and is reset by a success, so what it
   really counts is consecutive failures (plus attempts still in flight, which is
   what keeps concurrent guesses from slipping past the limit);
3. the password is checked with argon2 — against a dummy hash for an unknown
   user, so "no such user" and "wrong password" look and take the same;
4. on success: the hash is upgraded if the cost parameters changed, and a token
   is issued.

Locking by username lets anyone lock a known user out for a window (by failing
on purpose): the classic trade-off, kept short (60 s) so it throttles guessing
without being a lasting denial of service.
"""

from __future__ import annotations

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
        super().__init__(f"login rate limit per {scope}")
        self.scope = scope  # "username" or "ip"
        self.decision = decision


@dataclass(frozen=True)
class LoginLimits:
    """Either limiter may be None: that limit is off."""

    per_username: SlidingWindowLimiter | None
    per_ip: SlidingWindowLimiter | None


class Accounts:
    def __init__(self, store: CredentialStore, passwords: Passwords, limits: LoginLimits) -> None:
        self.store = store
        self.passwords = passwords
        self.limits = limits

    async def register(self, username: str, password: str) -> None:
        if await self.store.exists(username):  # cheap refusal before the expensive hash
            raise UsernameTaken(username)
        if not await self.store.create(username, await self.passwords.hash(password)):
            raise UsernameTaken(username)  # taken between the check and now: HSETNX decided
        log.info("user registered: %s", username)

    async def login(self, username: str, password: str, client_ip: str | None) -> str:
        """A new token for ``username``; raises RateLimited or InvalidCredentials."""
        await self._count_attempt(self.limits.per_ip, "ip", f"ip:{client_key(client_ip)}")
        await self._count_attempt(self.limits.per_username, "username", f"user:{username}")
        stored = await self.store.password_hash(username)
        if not await self.passwords.verify(stored, password) or stored is None:
            raise InvalidCredentials()
        if self.limits.per_username is not None:
            await self.limits.per_username.reset(f"user:{username}")
        if self.passwords.needs_rehash(stored):
            await self._upgrade_hash(username, stored, password)
        return await self.store.issue_token(username)

    async def verify(self, token: str) -> str | None:
        return await self.store.token_user(token)

    async def logout(self, token: str) -> bool:
        return await self.store.revoke(token)

    async def count(self) -> int:
        return await self.store.count()

    async def _count_attempt(self, limiter: SlidingWindowLimiter | None, scope: str, key: str) -> None:
        if limiter is None:
            return
        decision = await limiter.hit(key)
        if not decision.allowed:
            raise RateLimited(scope, decision)

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
