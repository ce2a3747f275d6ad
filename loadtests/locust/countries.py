"""A realistic country mix for the splitting users (no Locust import here).

Weights follow, roughly, where a global web service's users come from (big online
populations first), so the shards see the uneven load real data brings: shard-a (Europe)
and shard-b (the Americas, Asia-Pacific) of ``services/router/shard_map.toml``, plus a tail
of countries no shard lists, which the router deals out by hash.
"""

from __future__ import annotations

import random

# ISO 3166-1 alpha-2 code -> relative weight (GB, never UK: UK is reserved, a 422).
COUNTRY_WEIGHTS: dict[str, int] = {
    "US": 16,
    "IN": 10,
    "BR": 7,
    "CN": 6,
    "JP": 5,
    "DE": 5,
    "GB": 5,
    "FR": 4,
    "MX": 3,
    "ID": 3,
    "IT": 3,
    "ES": 3,
    "CA": 3,
    "KR": 3,
    "NG": 2,
    "TR": 2,
    "PL": 2,
    "AU": 2,
    "NL": 2,
    "AR": 2,
    "VN": 2,
    "PH": 2,
    "EG": 1,
    "ZA": 1,
    "SE": 1,
    "CO": 1,
    "CL": 1,
    "BE": 1,
    "CH": 1,
    "PT": 1,
    "KE": 1,
    "SG": 1,
    "NZ": 1,
    "IE": 1,
}

_CODES = list(COUNTRY_WEIGHTS)
_WEIGHTS = list(COUNTRY_WEIGHTS.values())


def pick_country(rng: random.Random | None = None) -> str:
    return (rng or random).choices(_CODES, weights=_WEIGHTS)[0]
