"""What auth keeps in its own Redis: credentials and login tokens (rate limits: ``shared_cache.ratelimit``).

    scalecube:auth:users             hash   username -> argon2id hash (HSETNX: registration is atomic)
    scalecube:auth:token:<sha256>    string username, expiring after TOKEN_TTL_SECONDS idle
    scalecube:auth:ratelimit:...     sorted sets of recent login attempts, expiring when idle

Tokens are stored by their SHA-256, never as given out: someone reading the
Redis (a dump, a replica, a MONITOR) cannot log in with what they find. A plain
hash is enough here: the token is 256 random bits, nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from shared_cache.connection import RedisConnector

PREFIX = "scalecube:auth:"
USERS_KEY = PREFIX + "users"
TOKEN_PREFIX = PREFIX + "token:"
RATE_LIMIT_PREFIX = PREFIX + "ratelimit:"

MAX_TOKEN_LENGTH = 128
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")  # token_urlsafe's alphabet

# Store the new hash only if the old one is still there: a password changed meanwhile wins.
_REPLACE_HASH = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""


def new_token() -> str:
    return secrets.token_urlsafe(32)


def is_plausible_token(token: object) -> bool:
    return isinstance(token, str) and 0 < len(token) <= MAX_TOKEN_LENGTH and _TOKEN.fullmatch(token) is not None


class CredentialStore:
    def __init__(self, connector: RedisConnector, *, token_ttl_seconds: int) -> None:
        self._redis = connector
        self._token_ttl_ms = token_ttl_seconds * 1000

    # -- users ---------------------------------------------------------------------

    async def exists(self, username: str) -> bool:
        async with self._redis.operation("check user"):
            return bool(await self._redis.client.hexists(USERS_KEY, username))

    async def create(self, username: str, password_hash: str) -> bool:
        """False if the name is taken (atomically: two registrations of one name, one wins)."""
        async with self._redis.operation("create user"):
            return bool(await self._redis.client.hsetnx(USERS_KEY, username, password_hash))

    async def password_hash(self, username: str) -> str | None:
        async with self._redis.operation("read credentials"):
            raw = await self._redis.client.hget(USERS_KEY, username)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def replace_hash(self, username: str, old_hash: str, new_hash: str) -> bool:
        async with self._redis.operation("rehash credentials"):
            return bool(await self._redis.client.eval(_REPLACE_HASH, 1, USERS_KEY, username, old_hash, new_hash))

    async def count(self) -> int:
        async with self._redis.operation("count users"):
            return int(await self._redis.client.hlen(USERS_KEY))

    # -- tokens --------------------------------------------------------------------

    async def issue_token(self, username: str) -> str:
        async with self._redis.operation("issue token"):
            while True:
                token = new_token()
                if await self._redis.client.set(_token_key(token), username, px=self._token_ttl_ms, nx=True):
                    return token

    async def token_user(self, token: str) -> str | None:
        """The token's user, or None; each use slides its expiry forward."""
        if not is_plausible_token(token):
            return None
        async with self._redis.operation("verify token"):
            raw = await self._redis.client.getex(_token_key(token), px=self._token_ttl_ms)
        return raw.decode() if isinstance(raw, bytes) else raw

    async def revoke(self, token: str) -> bool:
        if not is_plausible_token(token):
            return False
        async with self._redis.operation("revoke token"):
            return bool(await self._redis.client.delete(_token_key(token)))


def _token_key(token: str) -> str:
    return TOKEN_PREFIX + hashlib.sha256(token.encode()).hexdigest()
