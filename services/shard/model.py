"""What a user is, for the shards that store users and the router in front of them.

A user is ``{id, name, country, created_at}``. ``country`` is an ISO 3166-1 alpha-2 code,
one of the 249 officially assigned ones (``iso3166_alpha2.txt``), in upper or lower case,
normalised to upper case (``"fr"`` is stored as ``"FR"``); anything else — reserved or
user-assigned codes (``UK``, ``EU``, ``XK``), mixed case (``Fr``), surrounding spaces, three
letters — is a 422. The OpenAPI schema lists the same codes (an enum built from the same file).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from services.common.settings import DEFAULT_MAX_BODY_BYTES

COUNTRIES_FILE = Path(__file__).with_name("iso3166_alpha2.txt")
# Ids are chosen by the router (32 hex characters); shards accept any id of this shape.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ID_RE = re.compile(ID_PATTERN)
MAX_NAME_LENGTH = 100


@functools.cache
def country_names() -> dict[str, str]:
    """Officially assigned alpha-2 code -> short name, read once from the data file."""
    names: dict[str, str] = {}
    for line in COUNTRIES_FILE.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            code, _, name = line.partition("\t")
            names[code] = name
    return names


def is_country(code: str) -> bool:
    return code in country_names()


def normalise_country(value: str) -> str:
    """``"fr"`` -> ``"FR"``; ValueError (never echoing the value) unless officially assigned."""
    code = value.upper()
    if code not in country_names() or value not in (code, code.lower()):
        raise ValueError(
            "must be an officially assigned ISO 3166-1 alpha-2 country code, in upper or lower case, like FR or fr"
        )
    return code


def country_json_schema() -> dict[str, object]:
    """What the OpenAPI schema says a country is: exactly what ``normalise_country`` accepts."""
    codes = sorted(country_names())
    return {
        "type": "string",
        "enum": codes + [code.lower() for code in codes],
        "description": "ISO 3166-1 alpha-2 country code, officially assigned; upper or lower case, "
        "stored in upper case",
    }


Country = Annotated[str, AfterValidator(normalise_country), WithJsonSchema(country_json_schema())]
UserId = Annotated[str, Field(pattern=ID_PATTERN)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]

# The most users one batch (``POST /admin/users``) can carry within the default body limit: as many as
# the smallest possible user takes, in compact JSON with its comma. A batch of bigger users meets the
# body limit first (413); the router's moves send batches sized to fit (``ShardClient.import_users``).
SMALLEST_USER_JSON_BYTES = (
    len(json.dumps({"id": "a", "name": "a", "country": "FR", "created_at": "a"}, separators=(",", ":"))) + 1
)
MAX_BATCH_USERS = DEFAULT_MAX_BODY_BYTES // SMALLEST_USER_JSON_BYTES


class NewUser(BaseModel):
    """``POST /users`` on the router: the router chooses the id."""

    model_config = ConfigDict(extra="forbid")
    name: Name
    country: Country


class UserFields(BaseModel):
    """``PUT /users/{id}`` on a shard: create, or overwrite the same id (idempotent)."""

    model_config = ConfigDict(extra="forbid")
    name: Name
    country: Country
    created_at: str = Field(min_length=1, max_length=40)


class User(UserFields):
    id: UserId
