"""The directory: which country every user belongs to, in the router's Redis (``router:directory``).

It stores the *country*, not the shard. The shard is the live map's owner of that country
(``services.router.shard_map``), so "user id -> shard" is one hash lookup plus one dictionary
lookup, and it is always the shard that holds the user: a move copies a country's users, then
flips the country's owner in the map — one write — instead of rewriting one directory entry per
user, which could not be done atomically with the copy and would leave entries and data
disagreeing while it ran. A user's country never changes, so an entry is written once, never updated.
"""

from __future__ import annotations

from shared_cache.connection import RedisConnector

DIRECTORY_KEY = "router:directory"


class Directory:
    def __init__(self, connector: RedisConnector) -> None:
        self.connector = connector

    async def record(self, user_id: str, country: str) -> bool:
        """Write the entry for a new id; False if the id is already taken (never overwritten)."""
        async with self.connector.operation("record user in directory"):
            return bool(await self.connector.client.hsetnx(DIRECTORY_KEY, user_id, country))

    async def country_of(self, user_id: str) -> str | None:
        async with self.connector.operation("look up user"):
            country = await self.connector.client.hget(DIRECTORY_KEY, user_id)
        return country.decode() if isinstance(country, bytes) else country

    async def count(self) -> int:
        async with self.connector.operation("count directory"):
            return int(await self.connector.client.hlen(DIRECTORY_KEY))
