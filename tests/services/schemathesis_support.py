"""Schemathesis against a service's real running cluster: every check, bounded and reproducible.

Each service's ``test_schemathesis.py`` loads the schema its cluster serves and runs every
operation through ``case.call_and_validate()``: all of schemathesis's checks (no server error,
status codes and bodies as documented, invalid data refused, valid data accepted, 405 with a
full ``Allow`` for undeclared methods, ...), over the examples, coverage and fuzzing phases.
Bounded: ``MAX_EXAMPLES`` generated cases per operation in the fuzzing phase (the coverage
phase adds its own, a fixed set), derandomized and without Hypothesis's example database,
so a run sends the same requests every time. Stateful runs (links between operations) are off.
"""

from __future__ import annotations

import schemathesis
from schemathesis.schemas import BaseSchema

MAX_EXAMPLES = 5
REQUEST_TIMEOUT_SECONDS = 10
# Invalid data must be refused with one of these: schemathesis's defaults, plus 413 (a batch over its
# maxItems is over the body limit too, and the body limit answers first).
REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
CONFIG = {
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "checks": {"enabled": True, "negative_data_rejection": {"expected-statuses": REFUSALS}},
    "phases": {"stateful": {"enabled": False}},
    "request-timeout": REQUEST_TIMEOUT_SECONDS,
}


def load_schema(base_url: str) -> BaseSchema:
    """The OpenAPI schema the service at ``base_url`` serves, with the bounded configuration above
    (never a ``schemathesis.toml`` found on disk)."""
    return schemathesis.openapi.from_url(base_url + "/openapi.json", config=schemathesis.Config.from_dict(CONFIG))
