"""Schemathesis against a service's real running cluster: every check, bounded and reproducible.

``find_failures(url)`` loads the schema the service serves and runs schemathesis's engine on it,
the same run as ``st run --checks all URL/openapi.json``: all of its checks (no server error, status
codes, headers and bodies as documented, invalid data refused, valid data accepted, 405 with a full
``Allow`` for undeclared methods, ...) over the examples, coverage and fuzzing phases. Bounded:
``MAX_EXAMPLES`` generated cases per operation in the fuzzing phase (the coverage phase adds its own,
a fixed set), derandomized and without Hypothesis's example database, so a run sends the same
requests every time. Stateful runs (links between operations) are off.

(The engine rather than schemathesis's pytest plugin: its lazy ``from_fixture`` loader sets
``request.node._nodeid``, which pytest 9 no longer has.)
"""

from __future__ import annotations

from collections.abc import Iterable

import schemathesis
from schemathesis.engine import Status, events, from_schema
from schemathesis.schemas import BaseSchema

MAX_EXAMPLES = 5
REQUEST_TIMEOUT_SECONDS = 10
# Invalid data must be refused with one of these: schemathesis's defaults, plus 413 (a batch over its
# maxItems is over the body limit too, and the body limit answers first).
REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
# Valid data may still get these: schemathesis's defaults, plus 413. JSON Schema counts characters and
# items, not bytes: a schema-valid batch of long, non-ASCII users can be over the body limit (the 413
# every route documents); the limit on items (maxItems) is the most that can ever fit.
ACCEPTANCES = ["2xx", "3xx", "401", "403", "404", "409", "413", "429", "5xx"]
CONFIG = {
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "checks": {
        "enabled": True,
        "negative_data_rejection": {"expected-statuses": REFUSALS},
        "positive_data_acceptance": {"expected-statuses": ACCEPTANCES},
    },
    "phases": {"stateful": {"enabled": False}},
    "request-timeout": REQUEST_TIMEOUT_SECONDS,
}


def load_schema(base_url: str, **overrides: object) -> BaseSchema:
    """The OpenAPI schema the service at ``base_url`` serves, with the bounded configuration above
    (never a ``schemathesis.toml`` found on disk), plus ``overrides`` (top-level config keys)."""
    config = schemathesis.Config.from_dict({**CONFIG, "base-url": base_url, **overrides})
    return schemathesis.openapi.from_url(base_url + "/openapi.json", config=config)


def find_failures(base_url: str, *, skip: Iterable[tuple[str, str]] = ()) -> list[str]:
    """Every distinct failure schemathesis finds, one line each (empty: nothing found).

    ``skip``: (operation label, check name) pairs not judged, each with its reason where it is passed.
    """
    skipped = set(skip)
    found: set[str] = set()
    schema = load_schema(base_url)
    operations = {result.ok().label for result in schema.get_all_operations()}
    answered: dict[str, int] = dict.fromkeys(operations, 0)
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            answered[event.recorder.label] = answered.get(event.recorder.label, 0) + sum(
                1 for interaction in event.recorder.interactions.values() if interaction.response is not None
            )
        if isinstance(event, events.ScenarioFinished) and event.status in (Status.FAILURE, Status.ERROR):
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status != Status.FAILURE or (event.recorder.label, check.name) in skipped:
                        continue
                    failure = check.failure_info.failure if check.failure_info else None
                    case = event.recorder.cases.get(case_id)
                    request = f"{case.value.method} {case.value.formatted_path}" if case else "?"
                    interaction = event.recorder.interactions.get(case_id)
                    if interaction is not None and interaction.response is not None:
                        request += f" -> {interaction.response.status_code}"
                    found.add(
                        f"{event.recorder.label}: {check.name}: {getattr(failure, 'title', '')} "
                        f"({request}) {getattr(failure, 'message', '')}".replace("\n", " ")[:600]
                    )
        elif isinstance(event, events.NonFatalError):
            found.add(f"{event.label}: error: {type(event.value).__name__}: {event.value}"[:600])
        elif isinstance(event, events.FatalError):
            found.add(f"fatal: {type(event.exception).__name__}: {event.exception}"[:600])
        elif isinstance(event, events.EngineFinished):
            found.update(f"after the run: {failure.title}: {failure.message}"[:600] for failure in event.failures)
    # A run that sent nothing would find nothing: every operation must have been asked something.
    found.update(f"{label}: no request was answered" for label, count in answered.items() if count == 0)
    print(f"schemathesis: {sum(answered.values())} answers over {len(operations)} operations: {answered}")
    return sorted(found)
