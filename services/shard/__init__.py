"""A shard: the users store for some countries, its own deployment with its own Redis (``services.shard.app:app``)."""
