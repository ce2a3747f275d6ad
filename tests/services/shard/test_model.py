"""What a user is: the country rule and the batch bound, the same in the code and the OpenAPI schema."""

from __future__ import annotations

import json

import pytest
from pydantic import TypeAdapter, ValidationError

from services.common.settings import DEFAULT_MAX_BODY_BYTES
from services.router.shards import batches_within
from services.shard.model import MAX_BATCH_USERS, Country, country_names

COUNTRY = TypeAdapter(Country)


def test_the_schemas_country_enum_is_exactly_what_validation_accepts() -> None:
    enum = COUNTRY.json_schema()["enum"]
    assert len(enum) == 2 * len(country_names()) == 2 * 249
    assert all(COUNTRY.validate_python(code) == code.upper() for code in enum)
    for refused in ("Fr", "fR", "UK", "EU", "XK", " FR", "FRA", ""):
        assert refused not in enum
        with pytest.raises(ValidationError):
            COUNTRY.validate_python(refused)


def test_the_batch_bound_is_the_most_of_the_smallest_users_the_body_limit_holds() -> None:
    smallest = {"id": "a", "name": "a", "country": "FR", "created_at": "t"}

    def size(n: int) -> int:
        return len(json.dumps({"users": [smallest] * n}, separators=(",", ":")))

    assert size(MAX_BATCH_USERS) <= DEFAULT_MAX_BODY_BYTES < size(MAX_BATCH_USERS + 1)


@pytest.mark.parametrize("name", ["ada", "x" * 100, "é" * 100, "😀" * 100])
def test_a_move_sends_batches_that_fit_the_shards_body_limit(name: str) -> None:
    users = [
        {"id": f"{n:032x}", "name": name, "country": "FR", "created_at": "2026-12-05T11:24:20.123Z"}
        for n in range(3000)
    ]
    batches = list(batches_within(users, DEFAULT_MAX_BODY_BYTES))
    assert [user for batch in batches for user in batch] == users  # all of them, in order, once
    assert all(0 < len(batch) <= MAX_BATCH_USERS for batch in batches)
    # As aiohttp's json= encodes it (json.dumps' defaults).
    assert all(len(json.dumps({"users": batch})) <= DEFAULT_MAX_BODY_BYTES for batch in batches)
    assert (
        len(json.dumps({"users": batches[0] + batches[1][:1]})) > DEFAULT_MAX_BODY_BYTES
        or len(batches[0]) == MAX_BATCH_USERS
    )
