"""The splitting users' country mix: only codes the shards accept, spread over both shards' regions."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import services.router
from loadtests.locust.countries import COUNTRY_WEIGHTS, pick_country
from services.router.shard_map import load_base_map
from services.shard.model import is_country


def test_every_country_in_the_mix_is_an_assigned_iso_code():
    assert [code for code in COUNTRY_WEIGHTS if not is_country(code)] == []


def test_the_mix_is_weighted_and_reaches_every_shard():
    rng = random.Random(7)
    picks = Counter(pick_country(rng) for _ in range(5000))
    assert picks["US"] > picks["FR"] > picks["KE"]  # weights, not a uniform draw
    shard_map = load_base_map(Path(services.router.__file__).with_name("shard_map.toml"))  # the shipped map
    shards = Counter(shard_map.owner(code) for code in picks.elements())
    assert len(shards) >= 2 and min(shards.values()) > 1000, shards
