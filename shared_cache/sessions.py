"""Session stores: one shared by every worker (Redis), one that is not (memory)."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from typing import Any, Protocol

from shared_cache.connection import RedisConnector

log = logging.getLogger(__name__)

MAX_SESSION_ID_LENGTH = 128
# token_urlsafe's alphabet; anything else came from somewhere other than create().
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]+")


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def is_plausible_session_id(sid: object) -> bool:
    """Cheap sanity check of a client-supplied id before it becomes a Redis key."""
    return isinstance(sid, str) and 0 < len(sid) <= MAX_SESSION_ID_LENGTH and _SESSION_ID.fullmatch(sid) is not None


class SessionStore(Protocol):
    async def create(self, data: dict) -> str:
        """Store ``data`` under a new random opaque id and return the id."""
        ...

    async def get(self, sid: str) -> dict | None:
        """The session's data, or None; a read slides the expiry forward."""
        ...

    async def regenerate(self, sid: str) -> str | None:
        """Move the data to a new id (e.g. at login); the old id stops working."""
        ...

    async def delete(self, sid: str) -> None: ...


# Rename and refresh the TTL in one step, so no reader ever sees both ids or neither.
_REGENERATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
"""


class RedisSessionStore:
    """Sessions every worker of every container can read: JSON values in Redis.

    A new or moved session is written with ``RedisConnector.replicated``: behind a primary with a replica
    (``REDIS_WAIT_REPLICAS=1``) the login is answered only when the replica holds the session too, so a
    failover never loses a session a client was given; when the replica does not confirm in time the login
    is a 503 naming redis (Retry-After), not a session that may vanish with the primary.
    """

    def __init__(
        self,
        connector: RedisConnector,
        *,
        ttl_seconds: float = 1800,
        prefix: str = "scalecube:session:",
    ) -> None:
        self._redis = connector
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self._prefix = prefix

    async def create(self, data: dict) -> str:
        payload = json.dumps(data)
        async with self._redis.operation("create session"):
            while True:
                sid = new_session_id()
                # NX: a (astronomically unlikely) clash must not hijack a session. ``replicated``: with a replica
                # configured (REDIS_WAIT_REPLICAS), the id is answered only once the replica holds it too.
                pipeline = self._redis.client.pipeline(transaction=False)
                pipeline.set(self._key(sid), payload, px=self._ttl_ms, nx=True)
                [stored] = await self._redis.replicated("create session", pipeline)
                if stored:
                    return sid

    async def get(self, sid: str) -> dict | None:
        if not is_plausible_session_id(sid):
            return None
        async with self._redis.operation("read session"):
            raw = await self._redis.client.getex(self._key(sid), px=self._ttl_ms)
        return _decode(raw, sid)

    async def regenerate(self, sid: str) -> str | None:
        if not is_plausible_session_id(sid):
            return None
        new_sid = new_session_id()
        async with self._redis.operation("regenerate session"):
            pipeline = self._redis.client.pipeline(transaction=False)
            pipeline.eval(_REGENERATE, 2, self._key(sid), self._key(new_sid), self._ttl_ms)
            [moved] = await self._redis.replicated("regenerate session", pipeline)
        return new_sid if moved else None

    async def delete(self, sid: str) -> None:
        if not is_plausible_session_id(sid):
            return
        async with self._redis.operation("delete session"):
            await self._redis.client.delete(self._key(sid))

    def _key(self, sid: str) -> str:
        return self._prefix + sid


class MemorySessionStore:
    """Sessions in this process's memory, with expiry.

    Deliberately NOT shared: behind a per-core worker cluster, a request that lands
    on another worker does not find the session. It exists to demonstrate that.
    """

    _SWEEP_EVERY = 60.0  # seconds between purges of sessions nobody reads again

    def __init__(self, *, ttl_seconds: float = 1800) -> None:
        self._ttl = ttl_seconds
        self._sessions: dict[str, tuple[float, str]] = {}  # sid -> (expires_at, json)
        self._next_sweep = time.monotonic() + self._SWEEP_EVERY

    async def create(self, data: dict) -> str:
        self._sweep_if_due()
        sid = new_session_id()
        # Stored as JSON, like Redis: callers get copies, never our live object.
        self._sessions[sid] = (time.monotonic() + self._ttl, json.dumps(data))
        return sid

    async def get(self, sid: str) -> dict | None:
        payload = self._take_live(sid)
        if payload is None:
            return None
        self._sessions[sid] = (time.monotonic() + self._ttl, payload)
        return _decode(payload, sid)

    async def regenerate(self, sid: str) -> str | None:
        payload = self._take_live(sid)
        if payload is None:
            return None
        del self._sessions[sid]
        new_sid = new_session_id()
        self._sessions[new_sid] = (time.monotonic() + self._ttl, payload)
        return new_sid

    async def delete(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    def _take_live(self, sid: str) -> str | None:
        if not is_plausible_session_id(sid):
            return None
        entry = self._sessions.get(sid)
        if entry is None:
            return None
        expires_at, payload = entry
        if expires_at <= time.monotonic():
            del self._sessions[sid]
            return None
        return payload

    def _sweep_if_due(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._SWEEP_EVERY
        for sid in [s for s, (expires_at, _) in self._sessions.items() if expires_at <= now]:
            del self._sessions[sid]


def _decode(raw: str | bytes | None, sid: str) -> dict | None:
    if raw is None:
        return None
    try:
        data: Any = json.loads(raw)
    except ValueError:
        log.warning("ignoring undecodable session %.8s...", sid)
        return None
    return data if isinstance(data, dict) else None
