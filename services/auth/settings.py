"""The auth service's environment (on top of every service's: LOG_LEVEL, MAX_BODY_BYTES, ...).

Auth keeps its state in its own Redis, ``AUTH_REDIS_URL``: it never reads ``REDIS_URL``
(the sessions and cache Redis of the api), and it has no default, so a deployment that
forgets it fails at start with a clear message instead of writing credentials into
whatever Redis happens to answer on localhost.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, field_validator

from services.common.settings import REDIS_SCHEMES, ServiceSettings


class AuthSettings(ServiceSettings):
    auth_redis_url: str = Field(default="", validate_default=True)  # AUTH_REDIS_URL, required
    token_ttl_seconds: PositiveInt = 1800  # TOKEN_TTL_SECONDS: idle lifetime of a login token (sliding)
    cookie_secure: bool = False  # COOKIE_SECURE=1 behind TLS

    # Rate limits, sliding windows in auth's Redis; a limit of 0 turns that limit off. Logins count
    # FAILURES only (a successful login never uses up a limit, so load tests that log in from one
    # address never meet them): per client address, failures against any username; per username AND
    # client address, failures against that account from there (reset by a success from there), so
    # an attacker slows down on an account without locking its owner out from anywhere else.
    login_ip_limit: NonNegativeInt = 20  # LOGIN_IP_LIMIT: failed logins per client address
    login_ip_window_seconds: PositiveFloat = 60.0  # LOGIN_IP_WINDOW_SECONDS
    login_user_limit: NonNegativeInt = 5  # LOGIN_USER_LIMIT: failed logins per username + client address
    login_user_window_seconds: PositiveFloat = 60.0  # LOGIN_USER_WINDOW_SECONDS
    # Registrations per client address, every attempt counted (201, 409 alike): slows username
    # enumeration through 409 and hash-cost abuse. Generous for a demo: Locust's users all come from
    # one address; a few registrations per second, sustained, pass.
    register_ip_limit: NonNegativeInt = 300  # REGISTER_IP_LIMIT
    register_ip_window_seconds: PositiveFloat = 60.0  # REGISTER_IP_WINDOW_SECONDS

    # argon2id cost. The defaults are OWASP's minimum for argon2id (19 MiB, 2 passes, 1 lane):
    # ~20 ms per hash on this project's machines, so a 2-core container still serves ~100 logins/s.
    # Raise them in production (argon2-cffi's default is 64 MiB, 3 passes, 4 lanes: ~100 ms here);
    # stored hashes are upgraded at each user's next successful login.
    argon2_time_cost: PositiveInt = 2  # ARGON2_TIME_COST
    argon2_memory_kib: int = Field(default=19456, ge=8)  # ARGON2_MEMORY_KIB
    argon2_parallelism: PositiveInt = 1  # ARGON2_PARALLELISM
    # Threads per worker that hash off the event loop; peak memory is about threads × ARGON2_MEMORY_KIB.
    hash_threads: PositiveInt = 2  # HASH_THREADS

    @field_validator("auth_redis_url")
    @classmethod
    def _auth_redis_url_is_set(cls, value: str) -> str:
        if not value:
            raise ValueError(
                "required: the URL of auth's own Redis (credentials, tokens, rate limits), "
                "not the sessions Redis of REDIS_URL"
            )
        if urlsplit(value).scheme not in REDIS_SCHEMES:
            raise ValueError(f"must be a redis URL ({', '.join(s + '://' for s in REDIS_SCHEMES)}...)")
        return value
