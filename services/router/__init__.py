"""The router: splitting users by country over shards (``services.router.app:app``)."""
