"""Redis-backed state shared by every worker of every container."""

from shared_cache.broadcast import RedisBroadcast
from shared_cache.cache import CacheTimeout, Lookup, MemoryReadThroughCache, ReadThroughCache
from shared_cache.connection import RedisConnector
from shared_cache.ratelimit import Decision, SlidingWindowLimiter
from shared_cache.sessions import MemorySessionStore, RedisSessionStore, SessionStore

__all__ = [
    "CacheTimeout",
    "Decision",
    "Lookup",
    "MemoryReadThroughCache",
    "MemorySessionStore",
    "ReadThroughCache",
    "RedisBroadcast",
    "RedisConnector",
    "RedisSessionStore",
    "SessionStore",
    "SlidingWindowLimiter",
]
